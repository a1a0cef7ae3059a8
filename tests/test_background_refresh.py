"""Background refreshes started by writers (refresh_wm), with the worker pool on."""
from __future__ import annotations

import json
import time

import numpy as np

import monotone

WM = 1 << 20
VALUE = 100


def memtables_past_wm(db) -> list[tuple[int, int]]:
    """(min, events in memory) of each partition whose memtables hold refresh_wm or more."""
    return [(p["min"], p["events_heap"]) for p in json.loads(db.execute("SHOW PARTITIONS"))
            if p["events_heap"] * VALUE >= WM]


def test_partition_written_while_it_refreshes_is_refreshed_again(repo):
    """A writer asks once per memtable for a background refresh; the asks that come while
    that partition is being refreshed are not lost: once writes to it stop, no memtable
    is left holding refresh_wm or more (before, it stayed in memory, and its WAL files
    on disk, until a CHECKPOINT or the close)."""
    db = monotone.Monotone()  # the default worker pool
    db.execute("SET interval TO 100000")
    db.open(repo)
    try:
        db.execute(f"ALTER STORAGE main SET (refresh_wm {WM})")
        values = np.random.default_rng(3).integers(0, 256, (1000, VALUE), np.uint8)
        n = 300_000  # three partitions, each refreshed several times while written
        for start in range(0, n, 1000):
            db.write_batch(np.arange(start, start + 1000, dtype=np.uint64), values)
        deadline = time.monotonic() + 60
        while (left := memtables_past_wm(db)) and time.monotonic() < deadline:
            time.sleep(0.05)  # polled: background refreshes end when they end
        assert left == []
        with db.cursor() as cur:
            assert sum(len(b) for b in cur.batches()) == n
    finally:
        db.close()
