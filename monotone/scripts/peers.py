"""What monotone bench --compare measures monotone against, on the same workload.

Each peer gets the same events (ascending ids, the same value bytes, the same
batches) and is timed only inside its own calls: the input of each batch is
built, untimed, in the form its API takes. A peer reports what it can of:

    write     events/s of the write calls (lmdb: putmulti with append, one
              transaction per batch, no sync until the end)
    durable   events/s of writing everything until it is on disk
    scan      events/s of the fastest full scan its API offers
    events    events/s of a per-event full scan (one Python object per event)
    range     seconds to read a range of RANGE events (median of RANGES reads)
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

RANGE = 10_000
RANGES = 21
POOL = 64  # distinct value batches, cycled: far apart, so values do not compress


class Workload:
    def __init__(self, n: int, batch: int, value_size: int, wal: bool) -> None:
        self.n, self.batch, self.value_size, self.wal = n, batch, value_size, wal
        rng = np.random.default_rng(7)
        self.pool = rng.integers(0, 256, (POOL, batch, value_size), dtype=np.uint8)
        starts = rng.integers(n // 10, max(n // 10 + 1, n - RANGE), RANGES)
        self.range_starts = sorted(int(s) for s in starts)

    def batches(self, first: int = 0, n: int | None = None):
        """(ids uint64, values uint8 [count, value_size]) per batch: n events (all of the
        workload's by default) from id first."""
        end = first + (self.n if n is None else n)
        for start in range(first, end, self.batch):
            count = min(self.batch, end - start)
            values = self.pool[(start // self.batch) % POOL][:count]
            yield np.arange(start, start + count, dtype=np.uint64), values


class Clock:
    """Sums the time spent inside `with clock:` blocks."""

    def __init__(self) -> None:
        self.total = 0.0

    def __enter__(self) -> Clock:
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.total += time.perf_counter() - self.t


def write_all(w: Workload, progress, prepare, write) -> Clock:
    """Every batch: prepare(ids, values) untimed, then write(prepared) timed."""
    clock = Clock()
    done = 0
    for ids, values in w.batches():
        item = prepare(ids, values)
        with clock:
            write(item)
        done += len(ids)
        progress(done)
    return clock


def median_time(fn, starts) -> float:
    times = []
    for s in starts:
        t = time.perf_counter()
        got = fn(s)
        times.append(time.perf_counter() - t)
        if got != RANGE:
            raise SystemExit(f"bench: a range read returned {got} events, not {RANGE}")
    return statistics.median(times)


def count_events(events, progress) -> int:
    """Scan an iterator of (key, value)-like items one at a time, as a user loop would."""
    n = 0
    for _ in events:
        n += 1
        if not n & 0xFFFF:
            progress(n)
    return n


# lmdb
def run_lmdb(w: Workload, path: str, progress) -> dict:
    import lmdb
    size = w.n * (w.value_size + 64) * 2 + (64 << 20)
    env = lmdb.open(path, map_size=size, sync=False, metasync=False, writemap=True,
                    readahead=False)

    def items(ids, values):
        keys, data, size = ids.astype(">u8").tobytes(), values.tobytes(), w.value_size
        return [(keys[8 * i:8 * i + 8], data[size * i:size * i + size]) for i in range(len(ids))]

    def put(batch):
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(batch, append=True)

    try:
        clock = write_all(w, progress, items, put)
        write = clock.total
        with clock:
            env.sync(True)
        result = {"write": w.n / write, "durable": w.n / clock.total}

        t = time.perf_counter()
        with env.begin(buffers=True) as txn:
            n = count_events(txn.cursor().iternext(), progress)
        result["scan"] = result["events"] = n / (time.perf_counter() - t)
        if n != w.n:
            raise SystemExit(f"bench: lmdb scanned {n} events, wrote {w.n}")

        def read_range(start: int) -> int:
            with env.begin(buffers=True) as txn:
                cur = txn.cursor()
                cur.set_range(start.to_bytes(8, "big"))
                got = 0
                for _ in cur.iternext():
                    got += 1
                    if got == RANGE:
                        break
                return got

        result["range"] = median_time(read_range, w.range_starts)
    finally:
        env.close()
    return result


# sqlite3
def run_sqlite(w: Workload, path: str, progress) -> dict:
    import sqlite3
    os.makedirs(path, exist_ok=True)
    con = sqlite3.connect(os.path.join(path, "events.db"), isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, value BLOB)")

        def rows(ids, values):
            data, size = values.tobytes(), w.value_size
            return list(zip(ids.tolist(), (data[j:j + size] for j in range(0, len(data), size))))

        def insert(batch):
            con.execute("BEGIN")
            con.executemany("INSERT INTO events VALUES (?, ?)", batch)
            con.execute("COMMIT")

        clock = write_all(w, progress, rows, insert)
        write = clock.total
        with clock:
            con.execute("PRAGMA wal_checkpoint(FULL)")  # everything into the database file
        result = {"write": w.n / write, "durable": w.n / clock.total}

        t = time.perf_counter()
        n = count_events(con.execute("SELECT id, value FROM events ORDER BY id"), progress)
        result["scan"] = result["events"] = n / (time.perf_counter() - t)

        def read_range(start: int) -> int:
            rows = con.execute("SELECT id, value FROM events WHERE id >= ? ORDER BY id LIMIT ?",
                               (start, RANGE))
            return sum(1 for _ in rows)

        result["range"] = median_time(read_range, w.range_starts)
    finally:
        con.close()
    return result


# the limit: the same bytes written to one file, read back with one call
def run_numpy(w: Workload, path: str, progress) -> dict:
    os.makedirs(path, exist_ok=True)
    file = os.path.join(path, "events.bin")
    with open(file, "wb") as f:
        clock = write_all(w, progress, lambda ids, values: (ids, values),
                          lambda batch: (f.write(batch[0].tobytes()), f.write(batch[1].tobytes())))
        write = clock.total
        with clock:
            f.flush()
            os.fsync(f.fileno())
    result = {"write": w.n / write, "durable": w.n / clock.total}
    t = time.perf_counter()
    data = np.fromfile(file, np.uint8)
    result["scan"] = w.n / (time.perf_counter() - t)
    if len(data) != w.n * (8 + w.value_size):
        raise SystemExit("bench: the numpy file did not read back whole")
    return result
