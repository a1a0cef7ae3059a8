"""Progress of long commands on the command line.

On a terminal, with rich installed (pip install 'monotone-py[cli]'), a bar that
redraws in place; otherwise plain lines, at most one a second and one at the end,
so a log or a pipe gets a readable record. The Python API never shows progress.
"""
from __future__ import annotations

import sys
import time


def _rich():
    try:
        import rich.progress
        return rich.progress
    except ImportError:
        return None


class Progress:
    """progress.update(done) as work advances (total None: a spinner, no bar)."""

    def __init__(self, label: str, total: int | None = None, unit: str = "",
                 out=None, every: float = 1.0) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.out = out or sys.stderr
        self.every = every
        self.done = 0
        self.start = self.last = time.monotonic()
        self._bar = self._task = None
        rich = _rich() if self.out.isatty() else None
        if rich is not None:
            from rich.console import Console
            columns = [rich.SpinnerColumn(), rich.TextColumn("{task.description}")]
            if total is not None:
                columns += [rich.BarColumn(), rich.MofNCompleteColumn()]
            columns += [rich.TextColumn("{task.fields[unit]}"), rich.TimeElapsedColumn()]
            self._bar = rich.Progress(*columns, console=Console(file=self.out), transient=True)
            self._task = self._bar.add_task(label, total=total, unit=unit)
            self._bar.start()

    def update(self, done: int) -> None:
        self.done = done
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line()

    def close(self, failed: bool = False) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._line(" failed" if failed else " done")

    def _line(self, tag: str = "") -> None:
        count = "" if self.total is None else f" {self.done}/{self.total}"
        unit = f" {self.unit}" if self.unit and self.total is not None else ""
        print(f"{self.label}:{count}{unit}{tag} ({time.monotonic() - self.start:.1f} s)",
              file=self.out, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close(failed=kind is not None)
