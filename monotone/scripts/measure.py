"""What the benchmarks share: a progress meter, and the writer-processes run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import monotone
from monotone import process

MiB = 1024 * 1024


class Meter:
    """Counts events and bytes. On a terminal with rich, a live line of the count and
    rate; otherwise a progress line at most once a second. A final line either way."""

    def __init__(self, label: str, out=sys.stdout) -> None:
        self.label, self.out = label, out
        self.events = self.bytes = 0
        self.start = self.last = time.perf_counter()
        self.live = _live(label, out)

    def add(self, events: int, nbytes: int) -> None:
        self.events += events
        self.bytes += nbytes
        self.tick()

    def at(self, events: int) -> None:
        """Progress given as a running total."""
        self.events = events
        self.tick()

    def tick(self) -> None:
        now = time.perf_counter()
        if self.live is not None:
            if now - self.last >= 0.1:
                self.last = now
                rate = self.events / max(now - self.start, 1e-9)
                self.live[0].update(self.live[1], description=f"{self.label:<22} "
                                    f"{self.events:>10,} events  {rate:>12,.0f} events/s")
        elif now - self.last >= 1.0:
            self.last = now
            self._line("  ...")

    def done(self) -> dict:
        self.elapsed = time.perf_counter() - self.start
        self.close()
        self._line("")
        return {"events": self.events, "seconds": self.elapsed,
                "events_s": self.events / self.elapsed, "mib_s": self.bytes / MiB / self.elapsed}

    def close(self) -> None:
        if self.live is not None:
            self.live[0].stop()
            self.live = None

    def _line(self, tag: str) -> None:
        dt = max(time.perf_counter() - self.start, 1e-9)
        rate = f"  {self.bytes / MiB / dt:>8.1f} MiB/s" if self.bytes else ""
        print(f"{self.label:<22} {self.events:>10,} events  {self.events / dt:>12,.0f} events/s"
              f"{rate}{tag}", file=self.out, flush=True)


def _live(label: str, out):
    """(rich Progress, task) showing a spinner and the count, or None (not a terminal)."""
    if not out.isatty():
        return None
    try:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    except ImportError:
        return None
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                   console=Console(file=out), transient=True)
    task = bar.add_task(label, total=None)
    bar.start()
    return bar, task


CHILD = r"""
import sys, time
import numpy as np
import monotone
path, first, n, batch, size = sys.argv[1], *map(int, sys.argv[2:6])
db = monotone.Monotone()
db.open(path)
values = np.random.default_rng(first).integers(0, 256, (batch, size), dtype=np.uint8)
print("ready", flush=True)
sys.stdin.readline()
cpu = time.process_time()
for start in range(first, first + n, batch):
    count = min(batch, first + n - start)
    db.write_batch(np.arange(start, start + count, dtype=np.uint64), values[:count])
print("done", time.process_time() - cpu, flush=True)
db.close()
"""


def busy_cores() -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU of the machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


def run_writers(root: str, n: int, batch: int, value_size: int, writers: int) -> dict:
    """Aggregate write throughput of 1..writers processes, background refresh on:
    {k: (events/s, CPU-seconds the writer processes spent per million events,
    cores of the machine busy meanwhile: writers, workers, the kernel, and anything else)}."""
    env = dict(os.environ)
    env["PYTHONPATH"] = process.HOME + os.pathsep + env.get("PYTHONPATH", "")
    results = {}
    for k in range(1, writers + 1):
        path = os.path.join(root, f"writers{k}")
        shutil.rmtree(path, ignore_errors=True)
        holder = monotone.Monotone()   # opens it with the default worker pool
        holder.open(path)
        per = n // k
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, path, str(i * 10**12), str(per),
                                   str(batch), str(value_size)], env=env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                 for i in range(k)]
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        start, ticks = time.perf_counter(), busy_cores()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        cpu = 0.0
        for p in procs:
            word, seconds = p.stdout.readline().split()
            assert word == "done"
            cpu += float(seconds)
        dt = time.perf_counter() - start
        busy, every = (b - a for a, b in zip(ticks, busy_cores()))
        busy = busy / max(every, 1) * (os.cpu_count() or 1)
        for p in procs:
            p.wait()
        holder.close()
        shutil.rmtree(path, ignore_errors=True)
        total = per * k
        results[k] = (total / dt, cpu / total * 1e6, busy)
        print(f"{'write, ' + str(k) + ' writer' + ('s' if k > 1 else ''):<22} {total:>10,} events"
              f"  {total / dt:>12,.0f} events/s  {total * value_size / MiB / dt:>8.1f} MiB/s"
              f"  x{results[k][0] / results[1][0]:.2f}"
              f"  {results[k][1]:.2f} CPU-s per million events"
              f"  {busy:.1f} of {os.cpu_count()} cores busy", flush=True)
    return results
