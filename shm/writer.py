"""Appending a batch to the memtables of its partitions, atomically.

Protocol:
  1. lock the partitions of the batch, in ascending order (no deadlocks), and
     check they still hold its ids (a partition may have been dropped since)
  2. finish a publish a dead writer left in the journal, if any
  3. take the next lsn (and the current ssn) under the SEQUENCE lock
  4. back the memtable space the batch needs (a full /dev/shm fails here)
  5. log the batch (the caller's WAL append); a failure here writes nothing
  6. append rows past each memtable's published count
  7. publish: one store for one partition, the journal for several
  8. unlock
A process killed before step 7 leaves nothing visible; killed inside step 7
its journal is finished by the next writer or ignored by no reader.
"""
from __future__ import annotations

from typing import Callable

from monotone.rows import Rows

from .catalog import (H_JOURNAL, H_LSN, H_SSN, LIVE, S_ACTIVE, S_HEAP, S_LSN_MIN, S_MAX, S_MIN,
                      S_ROWS, S_STATE, Catalog)
from .locks import PARTITIONS, PUBLISH, SEQUENCE, Held, LockFile
from .memtable import Memtable, MemtableCache


class Moved(Exception):
    """A partition was dropped (or its slot reused) between routing and locking."""


def _in_order(mt: Memtable, n: int, rows: Rows) -> bool:
    """Whether rows (sorted, unique) all come after the memtable's last row."""
    if n == 0:
        return True
    last_id, last_key = mt.last(n)
    first_id = int(rows.ids[0])
    return first_id > last_id or (first_id == last_id and rows.key(0) > last_key)


def write_parts(catalog: Catalog, locks: LockFile, memtables: MemtableCache,
                parts: list[tuple[int, Rows]], log: Callable[[int, int], None] | None = None,
                lsn: int | None = None) -> int:
    """Write sorted, de-duplicated rows per partition slot; return the batch lsn."""
    slots = [slot for slot, _ in parts]
    for slot in slots:
        locks.lock(PARTITIONS + slot)
    try:
        for slot, rows in parts:
            s = catalog.slots[slot]
            if s[S_STATE] != LIVE or not s[S_MIN] <= rows.ids[0] or not rows.ids[-1] <= s[S_MAX]:
                raise Moved(slot)
        if catalog.get(H_JOURNAL):
            with Held(locks, PUBLISH):
                catalog.finish_journal()
        if lsn is None:
            with Held(locks, SEQUENCE):
                lsn = catalog.bump(H_LSN)
                ssn = catalog.get(H_SSN)
        else:
            ssn = catalog.get(H_SSN)
        targets = []
        for slot, rows in parts:
            mt = memtables.get(int(catalog.slots[slot, S_ACTIVE]))
            n = int(catalog.slots[slot, S_ROWS])
            mt.reserve(n, rows)
            targets.append((mt, n))
        if log is not None:
            log(lsn, ssn)
        appended = []
        for (slot, rows), (mt, n) in zip(parts, targets):
            end = mt.append(n, rows)
            appended.append((slot, mt, n, end, _in_order(mt, n, rows)))
        for slot, mt, n, end, _ in appended:
            if n == 0 or not catalog.slots[slot, S_LSN_MIN]:
                catalog.slots[slot, S_LSN_MIN] = lsn
        if len(appended) == 1:
            slot, _, _, end, _ = appended[0]
            catalog.slots[slot, S_ROWS] = end
        else:
            with Held(locks, PUBLISH):
                catalog.publish_many([(slot, end) for slot, _, _, end, _ in appended])
        for slot, mt, n, end, in_order in appended:
            mt.after_publish(n, end, lsn, in_order)
            catalog.slots[slot, S_HEAP] = mt.bytes_used(end)
    finally:
        for slot in reversed(slots):
            locks.unlock(PARTITIONS + slot)
    return lsn
