"""What a refresh of the same new events costs as the partition under it grows.

Each engine gets one partition of SIZE events (ids 0..SIZE-1, the workload's
values), refreshed to its file; then, ROUNDS times, NEW events past its end are
written and the partition refreshed, timed. Sequential data arrives so: a
refresh should cost what arrived, not what was there.
"""
from __future__ import annotations

import shutil
import statistics
import time

import monotone
from monotone.scripts.peers import Workload

NEW = 10_000
ROUNDS = 3    # the median is taken; the C original's refresh rewrites the file, one round
SIZES = (1_000_000, 5_000_000, 20_000_000)
CHUNK = 1_000_000  # events written between the refreshes that build a partition
WIDE = 1 << 40     # a partition interval that holds every size in one partition


def _timed_rounds(size: int, w: Workload, write, refresh, rounds: int = ROUNDS) -> float:
    times = []
    for r in range(rounds):
        for ids, values in w.batches(size + r * NEW, NEW):
            write(ids, values)
        t = time.perf_counter()
        refresh()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def monotone_cost(path: str, size: int, w: Workload) -> float:
    """Median seconds of refreshing NEW events into a partition of size events."""
    db = monotone.Monotone()
    db.execute("SET wal TO false")
    db.execute("SET workers TO 0")  # every refresh here is the one being asked for
    db.execute(f"SET interval TO {WIDE}")
    db.open(path)
    try:
        refresh = "REFRESH PARTITION 0"
        for first in range(0, size, CHUNK):  # a memtable holds a chunk, not 20 M events
            for ids, values in w.batches(first, min(CHUNK, size - first)):
                db.write_batch(ids, values)
            db.execute(refresh)
        return _timed_rounds(size, w, db.write_batch, lambda: db.execute(refresh))
    finally:
        db.close()
        shutil.rmtree(path, ignore_errors=True)


def c_cost(lib_path: str, path: str, size: int, w: Workload) -> float:
    """The same for the C original. Its memtable is its own process memory, so the
    partition is written whole and refreshed once (each refresh rewrites the file)."""
    from monotone.scripts.c_peer import CMonotone, configure, event_batch

    db = CMonotone(lib_path)
    try:
        configure(db, False)
        db.execute("SET workers TO 0")
        db.execute(f"SET interval TO {WIDE}")
        db.open(path)
        db.execute("ALTER STORAGE main SET (crc true)")
        write = db.writer()

        def write_c(ids, values):
            batch = event_batch(ids, values)
            write(batch[2], batch[3])

        for ids, values in w.batches(0, size):
            write_c(ids, values)
        db.execute("REFRESH PARTITION 0")
        return _timed_rounds(size, w, write_c, lambda: db.execute("REFRESH PARTITION 0"), 1)
    finally:
        db.close()
        shutil.rmtree(path, ignore_errors=True)


def measure(root: str, w: Workload, sizes=SIZES, c_lib: str | None = None,
            progress=print) -> dict[str, dict[int, float]]:
    """{engine: {size: median seconds}}."""
    out: dict[str, dict[int, float]] = {"monotone": {}}
    if c_lib:
        out["C monotone"] = {}
    for size in sizes:
        progress(f"refresh cost: {NEW:,} new events into {size:,} (monotone)")
        out["monotone"][size] = monotone_cost(f"{root}/refresh-{size}", size, w)
        if c_lib:
            progress(f"refresh cost: {NEW:,} new events into {size:,} (C monotone)")
            out["C monotone"][size] = c_cost(c_lib, f"{root}/refresh-c-{size}", size, w)
    return out


def table(costs: dict[str, dict[int, float]]) -> str:
    """One row per partition size; the goal: the 5 M row at most 1.5x the 1 M row."""
    names = list(costs)
    sizes = list(costs["monotone"])
    head = f"{f'refresh of {NEW:,} new events':<34}" + "".join(f"{n:>14}" for n in names)
    lines = [head, "-" * len(head)]
    for size in sizes:
        lines.append(f"{f'into a partition of {size:,}':<34}" +
                     "".join(f"{costs[n][size] * 1000:>11.1f} ms" for n in names))
    ours = costs["monotone"]
    if 1_000_000 in ours and 5_000_000 in ours:
        growth = ours[5_000_000] / ours[1_000_000]
        lines.append(f"monotone: 5 M costs {growth:.2f}x of 1 M (goal <= 1.50x)" +
                     ("" if growth <= 1.5 else "  (missed)"))
    return "\n".join(lines)
