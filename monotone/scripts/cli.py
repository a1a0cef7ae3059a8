"""The monotone command."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys

import monotone
from monotone import redact
from monotone.ddl import commands as cmd
from monotone.ddl import help as language
from monotone.ddl import parse
from monotone.ddl.lexer import split_statements
from monotone.shm.private import open_own

from .progress import Progress

USAGE = """\
monotone [options] PATH                    the prompt: help, completion, history
monotone [options] PATH COMMAND [; ...]    run commands; SHOW prints JSON
monotone [options] PATH < SCRIPT           run a script (';' or a line ends a command)
monotone serve PATH [--set NAME=VALUE]     run the repository's coordinator in the foreground
monotone bench [options]                   throughput, alone or beside lmdb and sqlite3"""

EPILOG = """\
Exit status: 0 when every command ran, 1 when one failed (or the repository did not
open), 2 for a wrong command line. Errors go to standard error. `monotone serve --help`
and `monotone bench --help` tell their options."""

QUIT = ("quit", "exit", "\\q")


class Failed(Exception):
    """A command failed; its message is already printed."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["bench"]:
        from .bench import main as bench
        return bench(args[1:])
    if args[:1] == ["serve"]:
        return serve(args[1:])
    ap = argparse.ArgumentParser(prog="monotone", usage=USAGE, epilog=EPILOG,
                                 description=monotone.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version",
                    version=f"monotone-py {monotone.__version__} (Python {sys.version.split()[0]})")
    ap.add_argument("--table", action="store_true",
                    help="print SHOW PARTITIONS, STORAGES and CLOUDS as tables (needs rich: "
                         "pip install 'monotone-py[cli]')")
    ap.add_argument("--keep-going", action="store_true",
                    help="in a script, go on after a command fails (the status is still 1)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="SET a variable before the repository opens (e.g. workers=0)")
    ap.add_argument("path", metavar="PATH", help="the repository's directory (made if absent)")
    ap.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                    help="commands to run, separated by ';' (quote them for the shell)")
    ns = ap.parse_args(args)
    if ns.table and _rich_console() is None:
        ap.error("--table needs rich: pip install 'monotone-py[cli]'")
    command = " ".join(ns.command)
    if command and redact.command(command) != command:
        print("monotone: warning: this command holds a secret, and other local users can read "
              "command lines (/proc/PID/cmdline); put it in a file and pass that on standard "
              f"input instead: monotone {shlex.quote(ns.path)} < create_cloud.sql",
              file=sys.stderr)
    db = monotone.Monotone()
    try:
        _settings(db, ns.set)
    except (monotone.MonotoneError, ValueError) as e:
        ap.error(str(e))
    try:
        db.open(ns.path)
    except monotone.MonotoneError as e:
        print(f"monotone: {e}", file=sys.stderr)
        return 1
    runner = Runner(db, table=ns.table)
    try:
        if ns.command:
            return runner.script([command], ns.keep_going, numbered=False)
        if sys.stdin.isatty():
            return Prompt(runner).loop()
        return runner.script(sys.stdin, ns.keep_going, numbered=True)
    except KeyboardInterrupt:
        print("monotone: interrupted", file=sys.stderr)
        return 130
    finally:
        db.close()


def _settings(db, pairs: list[str]) -> None:
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"--set {pair}: NAME=VALUE expected")
        db.execute(f"SET {name.strip()} TO {value.strip() or repr('')}")


class Runner:
    """Runs statements against an open repository and prints what they return."""

    def __init__(self, db, table: bool = False, out=None, err=None) -> None:
        self.db = db
        self.table = table
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def script(self, lines, keep_going: bool, numbered: bool) -> int:
        """Every statement of the lines; 1 if one failed (stopping there unless keep_going).
        numbered: errors say which line (a script's)."""
        failed = False
        for number, line in enumerate(lines, 1):
            for statement in split_statements(line):
                if statement.lower() in QUIT:
                    return 1 if failed else 0
                try:
                    self.run(statement)
                except Failed as e:
                    where = f"line {number}: " if numbered else ""
                    print(f"monotone: {where}{e}", file=self.err, flush=True)
                    failed = True
                    if not keep_going:
                        return 1
        return 1 if failed else 0

    def run(self, statement: str) -> None:
        words = statement.split(None, 1)
        if words and words[0].lower() == "help":
            print(self.help(words[1] if len(words) > 1 else ""), file=self.out)
            return
        try:
            command = parse(statement)
            if isinstance(command, (cmd.Refresh, cmd.Move, cmd.Upload, cmd.Download)) \
                    and not command.single:
                return self._each_partition(statement, command)
            if isinstance(command, cmd.Checkpoint):
                return self._checkpoint()
            if isinstance(command, cmd.Rebalance):
                with Progress("rebalance", out=self.err):
                    return self._print(statement, self.db.execute(statement))
            self._print(statement, self.db.execute(statement))
        except monotone.MonotoneError as e:
            raise Failed(f"error: {e}") from None

    def help(self, topic: str) -> str:
        if not topic:
            return language.overview()
        if topic.strip().upper() == "SET":
            values = self.db.show("ALL")
            width = max(len(n) for n in values)
            return language.describe("SET") + "\n\nVariables:\n" + "\n".join(
                f"  {n:<{width}}  {json.dumps(v)}" for n, v in values.items())
        name = language.topic(topic)
        if name is None:
            return f"no help for '{topic}': `help` lists the commands"
        return language.describe(name)

    # long commands, a partition at a time so their progress shows
    def _each_partition(self, statement: str, c) -> None:
        partitions = sorted(self.db.show("PARTITIONS"), key=lambda p: p["min"])
        chosen = [partitions[i]["min"] for i in
                  cmd.range_members([(p["min"], p["max"]) for p in partitions], c.min, c.max)]
        if not chosen:  # nothing in range: the command as given (it checks its names)
            return self._print(statement, self.db.execute(statement))
        verb = type(c).__name__.upper()  # REFRESH, MOVE, UPLOAD, DOWNLOAD
        tail = ""
        if isinstance(c, cmd.Move):
            tail = f" INTO {c.into}"
        elif isinstance(c, (cmd.Upload, cmd.Download)) and c.if_cloud:
            tail = " IF CLOUD"
        self._partitions(verb.lower(), [f"{verb} PARTITION IF EXISTS {m}{tail}" for m in chosen])

    def _checkpoint(self) -> None:
        """CHECKPOINT queues a refresh of every partition with events in memory; here the
        same refreshes run one by one, so the command line can wait for them and show how
        far they got."""
        held = [p["min"] for p in self.db.show("PARTITIONS") if p["events_heap"]]
        self._partitions("checkpoint", [f"REFRESH PARTITION IF EXISTS {m}" for m in held])

    def _partitions(self, label: str, statements: list[str]) -> None:
        with Progress(label, total=len(statements), unit="partitions", out=self.err) as bar:
            for done, statement in enumerate(statements, 1):
                self.db.execute(statement)
                bar.update(done)

    # output
    def _print(self, statement: str, result: str | None) -> None:
        if result is None:
            return
        if self.table:
            rows = json.loads(result)
            if isinstance(rows, dict) and rows and all(isinstance(r, dict) for r in rows.values()):
                # STORAGES (a storage's figures; its options read better as JSON), CLOUDS
                rows = [{"name": name, **row.get("stats", row)} for name, row in rows.items()]
            if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
                return self._table(rows)
        print(result, file=self.out)

    def _table(self, rows: list[dict]) -> None:
        """One row per item, one column per field: cells are never cut short (a terminal
        narrower than the table wraps its lines instead)."""
        from rich.table import Table
        columns = list(dict.fromkeys(k for row in rows for k, v in row.items()
                                     if not isinstance(v, (dict, list))))
        cells = [[_cell(row.get(k)) for k in columns] for row in rows]
        widths = [max(len(k), *(len(r[i]) for r in cells)) for i, k in enumerate(columns)]
        table = Table()
        for name, width in zip(columns, widths):
            table.add_column(name, min_width=width, no_wrap=True)
        for row in cells:
            table.add_row(*row)
        console = _rich_console(self.out)
        console.width = max(console.width, sum(widths) + 3 * len(widths) + 1)
        console.print(table)


def _cell(value) -> str:
    return "" if value is None else json.dumps(value) if isinstance(value, bool) else str(value)


def _rich_console(out=None):
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=out or sys.stdout)


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


def serve(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="monotone serve",
        description="Run the coordinator of the repository at PATH in the foreground, until "
                    "Ctrl-C or SIGTERM. Processes that open the repository meanwhile use it.")
    ap.add_argument("path", metavar="PATH")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="SET a variable first (e.g. log_to_stdout=true, workers=2)")
    ns = ap.parse_args(argv)
    env = monotone.Monotone()
    try:
        _settings(env, ns.set)
    except (monotone.MonotoneError, ValueError) as e:
        ap.error(str(e))
    if sys.platform != "linux":
        print(f"monotone: {monotone.errors.LINUX_ONLY}", file=sys.stderr)
        return 1
    from monotone.workers.coordinator import serve as run_coordinator
    print(f"monotone: serving {os.path.realpath(ns.path)}", flush=True)
    return run_coordinator(ns.path, env._settings, embedded=False,
                           announce=lambda line: print(f"monotone: {line}", flush=True))


if __name__ == "__main__":
    sys.exit(main())
