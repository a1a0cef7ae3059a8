"""The interactive prompt and its history file."""
from __future__ import annotations

import datetime
import os
import sys

import monotone
from monotone import redact
from monotone.ddl import help as language
from monotone.ddl.lexer import split_statements
from monotone.shm.private import open_own

from .runner import QUIT, Failed, Runner


class Prompt:
    """The interactive prompt: prompt_toolkit when installed (completion as you type,
    history), else readline (Tab completion, history), else input()."""

    HISTORY = os.path.expanduser("~/.monotone_history")

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.words: list[str] = []
        self._names()

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
            for statement in split_statements(line):
                if statement.lower() in QUIT:
                    return 0
                try:
                    self.runner.run(statement)
                except Failed as e:
                    print(e, file=sys.stderr)
                except KeyboardInterrupt:
                    print("interrupted", file=sys.stderr)
                if statement.split()[0].upper() in ("CREATE", "ALTER", "DROP", "SET"):
                    self._names()

    def _names(self) -> None:
        """What completion offers: keywords, variables, storages, clouds, options."""
        db = self.runner.db
        try:
            storages, clouds = list(db.show("STORAGES")), list(db.show("CLOUDS"))
            variables = list(db.show("ALL"))
        except monotone.MonotoneError:
            storages, clouds, variables = [], [], []
        options = {*language.STORAGE_OPTION_NAMES, *language.CLOUD_OPTION_NAMES,
                   *language.RETENTION_NAMES}
        self.words = sorted(set(language.KEYWORDS) | {"HELP"} | set(variables) | set(storages)
                            | set(clouds) | options)

    def complete(self, prefix: str) -> list[str]:
        low = prefix.lower()
        return [w for w in self.words if w.lower().startswith(low)]

    def _reader(self):
        try:
            from prompt_toolkit import PromptSession
            from prompt_toolkit.completion import Completer, Completion
            from prompt_toolkit.history import FileHistory
        except ImportError:
            return self._readline()
        prompt = self
        history = History(self.HISTORY)

        class Words(Completer):
            def get_completions(self, document, complete_event):
                word = document.get_word_before_cursor()
                for w in prompt.complete(word):
                    yield Completion(w, start_position=-len(word))

        class Private(FileHistory):
            """FileHistory's file and format, read and written through History."""

            def load_history_strings(self):
                return reversed(history.entries())

            def store_string(self, string: str) -> None:
                history.append(string)

        session = PromptSession(history=Private(self.HISTORY), completer=Words(),
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
        readline.set_completer_delims(" \t\n(),;'\"")
        readline.set_completer(lambda text, state: (self.complete(text) + [None])[state])
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
