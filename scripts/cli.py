"""The monotone command.

    monotone PATH "COMMAND"     run one command against the repository at PATH
    monotone PATH               interactive prompt (history in ~/.monotone_history)
    monotone serve PATH         run the repository's coordinator in the foreground
    monotone bench [options]    write/read throughput (see monotone bench --help)
"""
from __future__ import annotations

import os
import sys

import monotone


def run_command(path: str, command: str) -> int:
    db = monotone.Monotone()
    try:
        db.open(path)
        result = db.execute(command)
    except monotone.MonotoneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        db.close()
    if result is not None:
        print(result)
    return 0


def prompt(path: str) -> int:
    try:
        import readline
        history = os.path.expanduser("~/.monotone_history")
        try:
            readline.read_history_file(history)
        except OSError:
            pass
    except ImportError:
        readline = None
    db = monotone.Monotone()
    try:
        db.open(path)
    except monotone.MonotoneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        while True:
            try:
                line = input("monotone> ").strip()
            except EOFError:
                print()
                break
            except KeyboardInterrupt:
                print()
                continue
            if not line:
                continue
            if line.lower() in ("quit", "exit", "\\q"):
                break
            try:
                result = db.execute(line)
            except monotone.MonotoneError as e:
                print(f"error: {e}")
                continue
            if result is not None:
                print(result)
    finally:
        db.close()
        if readline is not None:
            try:
                readline.write_history_file(history)
            except OSError:
                pass
    return 0


def serve(path: str) -> int:
    from monotone.workers.coordinator import serve as run_coordinator
    print(f"monotone: serving {os.path.realpath(path)}", flush=True)
    return run_coordinator(path, {}, embedded=False,
                           announce=lambda line: print(f"monotone: {line}", flush=True))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    if args[0] == "bench":
        from .bench import main as bench
        return bench(args[1:])
    if args[0] == "serve":
        if len(args) != 2:
            print("usage: monotone serve PATH", file=sys.stderr)
            return 2
        return serve(args[1])
    if len(args) == 1:
        return prompt(args[0])
    if len(args) == 2:
        return run_command(args[0], args[1])
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
