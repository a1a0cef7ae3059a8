"""The monotone command."""
from __future__ import annotations

import argparse
import os
import shlex
import sys

import monotone
from monotone import redact

from .prompt import Prompt
from .runner import Runner, rich_console

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
    if ns.table and rich_console() is None:
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
