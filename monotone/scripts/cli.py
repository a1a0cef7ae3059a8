"""The monotone command."""
from __future__ import annotations

import argparse
import os
import shlex
import sys

import monotone
from monotone import redact
from monotone.ddl import commands as cmd
from monotone.ddl import parse
from monotone.repository import holds_repository

from .prompt import Prompt
from .runner import Runner

USAGE = """\
monotone [options] PATH [COMMAND ...]      run commands (';' between them); SHOW prints JSON
monotone [options] PATH                    the prompt on a terminal, else a script on stdin
monotone serve PATH [--set NAME=VALUE]     run the repository's coordinator in the foreground
monotone bench [options]                   throughput, alone or beside lmdb and sqlite3"""

EPILOG = """\
Options go before or after PATH. A command that only reads (SHOW) never creates a
repository: on a path that holds none it says so; the first command that changes
something makes it.

Exit status: 0 when every command ran, 1 when one failed (or the repository did not
open), 2 for a wrong command line. Errors go to standard error. `monotone serve --help`
and `monotone bench --help` tell their options."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["bench"]:
        from .bench import main as bench
        return bench(args[1:])
    if args[:1] == ["serve"]:
        return serve(args[1:])
    ap = _parser()
    ns = ap.parse_intermixed_args(args)
    # the words after PATH are one text, a line each: a `--` comment in one ends with it
    commands = ns.commands + (["\n".join(ns.command)] if ns.command else [])
    for text in commands + ns.first:
        if redact.command(text) != text:
            print("monotone: warning: this command holds a secret, and other local users can "
                  "read command lines (/proc/PID/cmdline); put it in a file and pass that on "
                  f"standard input instead: monotone {shlex.quote(ns.path)} < create_cloud.sql",
                  file=sys.stderr)
            break
    db = monotone.Monotone()
    try:
        _settings(db, ns.set)
    except (monotone.MonotoneError, ValueError) as e:
        ap.error(str(e))
    repository = Repository(db, ns.path, persist=ns.persist)
    try:
        if repository.exists():
            repository.open()
    except monotone.MonotoneError as e:
        print(f"monotone: {e}", file=sys.stderr)
        return 1
    runner = Runner(repository, mode=ns.mode or "json")
    try:
        status = runner.script(ns.first, ns.keep_going, numbered=False) if ns.first else 0
        if status and not ns.keep_going:
            return status
        if commands:
            return runner.script(commands, ns.keep_going, numbered=False) or status
        if sys.stdin.isatty():
            if not repository.opened:
                print(f"monotone: no repository at {os.path.abspath(ns.path)} yet: the first "
                      "command that changes something makes one", file=sys.stderr)
            return Prompt(runner).loop() or status
        return runner.script(sys.stdin, ns.keep_going, numbered=True) or status
    except KeyboardInterrupt:
        print("monotone: interrupted", file=sys.stderr)
        return 130
    finally:
        repository.close()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="monotone", usage=USAGE, epilog=EPILOG,
                                 description=monotone.__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version",
                    version=f"monotone-py {monotone.__version__} (Python {sys.version.split()[0]})")
    ap.add_argument("-c", "--command", dest="commands", action="append", default=[],
                    metavar="COMMAND", help="run COMMAND and leave (repeat it for more; "
                                            "as the commands after PATH)")
    ap.add_argument("-cmd", "--cmd", dest="first", action="append", default=[],
                    metavar="COMMAND", help="run COMMAND first, then the prompt, the script "
                                            "or the commands")
    group = ap.add_mutually_exclusive_group()
    for mode, text in (("table", "SHOW as a table fitted to the terminal (records when it "
                                 "is too wide), times and sizes readable"),
                       ("csv", "SHOW as CSV with a header row"),
                       ("json", "SHOW as JSON (the default)"),
                       ("line", "SHOW as one 'name = value' line per field, times and "
                                "sizes readable")):
        group.add_argument(f"--{mode}", f"-{mode}", dest="mode", action="store_const",
                           const=mode, help=text)
    ap.add_argument("--keep-going", action="store_true",
                    help="in a script, go on after a command fails (the status is still 1)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="SET a variable before the repository opens, not written to its "
                         "config.json (e.g. workers=0; uuid and ssn always are)")
    ap.add_argument("--persist", action="store_true",
                    help="write the --set values to the repository's config.json, so later "
                         "opens have them too")
    ap.add_argument("path", metavar="PATH", help="the repository's directory")
    ap.add_argument("command", nargs="*", metavar="COMMAND",
                    help="commands to run, separated by ';' (quote them for the shell)")
    return ap


class Repository:
    """The repository at a path, opened when first needed: at once when it exists;
    when it does not, by the first command that changes something. A command that
    only reads is refused there rather than creating a repository a typo named."""

    def __init__(self, db, path: str, persist: bool) -> None:
        self.db = db
        self.path = path
        self.persist = persist
        self.opened = False

    def exists(self) -> bool:
        """A repository's files are there (or something the open should judge)."""
        return holds_repository(self.path)

    def open(self) -> None:
        self.db.open(self.path, persist=self.persist)
        self.opened = True

    def execute(self, command: str):
        if not self.opened:
            if self.exists() or not isinstance(parse(command), cmd.Show):
                self.open()
            else:
                self._missing()
        return self.db.execute(command)

    def show(self, what: str):
        if not self.opened:
            if not self.exists():
                self._missing()
            self.open()
        return self.db.show(what)

    def close(self) -> None:
        self.db.close()

    def _missing(self):
        raise monotone.MonotoneError(
            f"no repository at {os.path.abspath(self.path)}: nothing was created (the first "
            "command that changes something makes one, CREATE STORAGE say)")


def _settings(db, pairs: list[str]) -> None:
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"--set {pair}: NAME=VALUE expected")
        db.execute(f"SET {name.strip()} TO {value.strip() or repr('')}")


def serve(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="monotone serve",
        description="Run the coordinator of the repository at PATH in the foreground, until "
                    "Ctrl-C or SIGTERM. Processes that open the repository meanwhile use it. "
                    "A repository another coordinator serves is an error naming its process.")
    ap.add_argument("path", metavar="PATH")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="SET a variable first, for this run only (e.g. log_to_stdout=true, "
                         "workers=2)")
    ap.add_argument("--persist", action="store_true",
                    help="write the --set values to the repository's config.json")
    ns = ap.parse_intermixed_args(argv)
    env = monotone.Monotone()
    try:
        _settings(env, ns.set)
    except (monotone.MonotoneError, ValueError) as e:
        ap.error(str(e))
    if sys.platform != "linux":
        print(f"monotone: {monotone.errors.LINUX_ONLY}", file=sys.stderr)
        return 1
    from monotone.config import ONCE
    from monotone.workers.coordinator import serve as run_coordinator
    settings = dict(env._settings)
    if not ns.persist:
        settings[ONCE] = sorted(env._settings)

    def announce(line: str) -> None:
        if line == "ready":
            print(f"monotone: serving {os.path.realpath(ns.path)}", flush=True)
        print(f"monotone: {line}", file=sys.stdout if line == "ready" else sys.stderr,
              flush=True)

    return run_coordinator(ns.path, settings, embedded=False, announce=announce)


if __name__ == "__main__":
    sys.exit(main())
