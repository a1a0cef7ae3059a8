"""The interactive prompt and its history file."""
from __future__ import annotations

import datetime
import os
import sys

import monotone
from monotone import redact
from monotone.ddl.complete import Names, complete
from monotone.ddl.lexer import split_statements
from monotone.shm.private import open_own

from .runner import QUIT, Failed, Runner

# the statements that change none of the names completion offers
_KEEP_NAMES = ("SHOW", "SET", "HELP")


class Prompt:
    """The interactive prompt: prompt_toolkit when installed (completion as you type,
    history), else readline (Tab completion, history), else input()."""

    HISTORY = os.path.expanduser("~/.monotone_history")

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.names = Names()
        self._fetch_names()

    def loop(self) -> int:
        read = self._reader()
        print(f"monotone-py {monotone.__version__}: `help` lists the commands, "
              "quit or Ctrl-D leaves.")
        while True:
            try:
                line = read("monotone> ")
            except EOFError:
                print()
                return 0
            except KeyboardInterrupt:
                continue
            changed = False
            for statement in split_statements(line):
                if statement.lower() in QUIT:
                    return 0
                try:
                    self.runner.run(statement)
                except Failed as e:
                    print(e, file=sys.stderr)
                except KeyboardInterrupt:
                    print("interrupted", file=sys.stderr)
                changed = changed or statement.split()[0].upper() not in _KEEP_NAMES
            if changed:
                self._fetch_names()

    def _fetch_names(self) -> None:
        """The names completion offers (ddl.complete), fetched anew: when the prompt
        starts and after a line that may have changed them. A name that cannot be
        fetched (the repository not open, say) is only not offered."""
        self.names = Names(storages=tuple(self._show("STORAGES")),
                           clouds=tuple(self._show("CLOUDS")),
                           partitions=tuple(p["min"] for p in self._show("PARTITIONS")),
                           variables=tuple(self._show("ALL")))

    def _show(self, what: str):
        try:
            return self.runner.db.show(what)
        except (monotone.MonotoneError, OSError):
            return ()

    def _reader(self):
        try:
            from prompt_toolkit import PromptSession
            from prompt_toolkit.completion import Completer, Completion
            from prompt_toolkit.history import FileHistory
        except ImportError:
            return self._readline()
        prompt = self
        history = History(self.HISTORY)

        class Grammar(Completer):
            def get_completions(self, document, complete_event):
                before = document.text_before_cursor
                found = complete(before, prompt.names)
                for word in found.words:
                    yield Completion(word, start_position=found.start - len(before))

        class Private(FileHistory):
            """FileHistory's file and format, read and written through History."""

            def load_history_strings(self):
                return reversed(history.entries())

            def store_string(self, string: str) -> None:
                history.append(string)

        session = PromptSession(history=Private(self.HISTORY), completer=Grammar(),
                                complete_while_typing=False)
        return session.prompt

    def _readline(self):
        try:
            import readline
        except ImportError:
            return input
        history = History(self.HISTORY)
        for entry in history.entries():
            readline.add_history(entry)
        readline.set_completer_delims(" \t\n(),;=")
        matches: list[str] = []

        def completer(text: str, state: int) -> str | None:
            if state == 0:  # readline asks again for each next match
                before = readline.get_line_buffer()[:readline.get_endidx()]
                matches[:] = readline_matches(before, readline.get_begidx(), self.names)
            return matches[state] if state < len(matches) else None
        readline.set_completer(completer)
        readline.parse_and_bind("tab: complete")

        def read(prompt: str) -> str:
            line = input(prompt)
            # input() put the line in readline's history as typed: the redacted
            # line replaces it (replace_history_item counts from 0, the other from 1)
            last = readline.get_current_history_length()
            if last and readline.get_history_item(last) == line:
                readline.replace_history_item(last - 1, redact.command(line))
            if line.strip():
                history.append(line)
            return line
        return read


def readline_matches(before: str, begin: int, names: Names) -> list[str]:
    """The completions of before (the line up to the cursor) for readline, which
    replaces the text from begin, its own idea of where the word starts: each is
    cut or lengthened to start there."""
    found = complete(before, names)
    if found.start >= begin:
        return [before[begin:found.start] + word for word in found.words]
    typed = before[found.start:begin]
    return [word[len(typed):] for word in found.words if word.lower().startswith(typed.lower())]


class History:
    """The prompt's history file, in prompt_toolkit's format whichever front end
    reads it. Commands are stored with their secrets replaced (redact.command);
    the file is 0600 and opened without following a link (shm.private.open_own),
    so a link put in its place is never written through. When it cannot be used
    safely, history is kept for this session only, and the prompt says so once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.usable = True
        try:
            os.close(open_own(path, os.O_RDONLY, create=True))  # made 0600 if it was not
        except OSError as e:  # shm.errors.Untrusted included: a link, another's file
            self._refuse(e)

    def entries(self) -> list[str]:
        """The commands in the file, oldest first (a line older versions wrote plainly,
        through readline, is a command of its own)."""
        if not self.usable:
            return []
        try:
            with os.fdopen(open_own(self.path), "rb") as f:
                text = f.read().decode("utf-8", errors="replace")
        except OSError as e:  # replaced by a link meanwhile, unreadable...
            self._refuse(e)
            return []
        found: list[str] = []
        lines: list[str] = []
        for line in [*text.splitlines(), ""]:
            if line.startswith("+"):
                lines.append(line[1:])
                continue
            if lines:
                found.append("\n".join(lines))
                lines = []
            if line and not line.startswith("#"):
                found.append(line)
        return found

    def append(self, command: str) -> None:
        """Add a command, its secrets replaced before it reaches the file."""
        if not self.usable:
            return
        lines = "".join(f"+{line}\n" for line in redact.command(command).split("\n"))
        entry = f"\n# {datetime.datetime.now()}\n{lines}".encode("utf-8", errors="replace")
        try:
            with os.fdopen(open_own(self.path, os.O_WRONLY | os.O_APPEND, create=True),
                           "ab") as f:
                f.write(entry)
        except OSError as e:
            self._refuse(e)

    def _refuse(self, error: OSError) -> None:
        self.usable = False
        print(f"monotone: history is not saved: {error}", file=sys.stderr)
