"""Appending a batch to the memtables of its partitions, atomically; and
finishing, or undoing, what a writer that died left half done.

Protocol of append() (its process may be killed at any step):
  1. lock the batch's partitions in ascending order (no deadlocks); a locked
     partition still marked pending belongs to a writer that died holding the
     lock: finish its batch first (finish(), below)
  2. under SEQUENCE take the next lsn, and set the partitions' lsn_min, so
     WAL garbage collection never passes a record that is not yet in memory
  3. back the memtable space the batch needs (a full /dev/shm fails here)
  4. append rows past each memtable's published count, and mark each
     partition pending: lsn, row counts, stage APPENDED, where the WAL record
     goes (file and offset)
  5. write the WAL record (the caller's Log)
  6. mark each partition LOGGED: from here on the batch is decided
  7. publish: one store for one partition; for several, the stores under
     PUBLISH exclusive with the PUBLISHING word naming the batch
  8. clear the marks, unlock
finish(lsn) decides a dead writer's batch the same way for every partition:
if any partition says LOGGED, the WAL holds the whole record and the rows are
in every memtable, so it is published everywhere (rolled forward); otherwise
its WAL record, whole or torn, is cut off the dead writer's file and its rows
stay unpublished (rolled back). Either way a reader now and a replay later
agree: all of the batch or none of it.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .shm.catalog import (APPENDED, H_LSN, H_PUBLISHING, H_SSN, LIVE, LOGGED, S_ACTIVE, S_HEAP,
                         S_LSN_MIN, S_MAX, S_MIN, S_PENDING_END, S_PENDING_LSN,
                         S_PENDING_OFFSET, S_PENDING_STAGE, S_PENDING_START, S_PENDING_WAL,
                         S_ROWS, S_STATE, Catalog)
from .shm.locks import PARTITIONS, PUBLISH, SEQUENCE, Held, LockFile
from .shm.memtable import M_LSN_MAX, Memtable, MemtableCache

from . import faults
from .boundary import ShmError, translate
from .format.rows import U64, Rows
from .wal import cut_record


class Moved(Exception):
    """A partition was dropped (or its slot reused) between routing and locking."""


class Log(Protocol):
    """Where a batch is logged before it is published (the WAL), if anywhere."""

    def prepare(self, lsn: int) -> tuple[int, int]:
        """The WAL file (its first lsn) and offset the record will start at."""

    def write(self, lsn: int, ssn: int) -> None:
        """Write the record (all of it, or raise having written nothing)."""

    def cut(self, offset: int) -> None:
        """Take back the record just written (the batch failed after it)."""


@dataclass
class Shared:
    """One process's handles on a repository's shared memory."""
    catalog: Catalog
    locks: LockFile
    memtables: MemtableCache
    wal_dir: str

    @contextmanager
    def publishing(self):
        """PUBLISH exclusive, with a publish a dead writer left half done completed."""
        with Held(self.locks, PUBLISH):
            lsn = self.catalog.get(H_PUBLISHING)
            if lsn:
                finish(self, lsn)  # its publisher held PUBLISH: it is dead
            yield

    @contextmanager
    def locked(self, slots: list[int]):
        """Partition locks (slots ascending), with dead writers' batches in them decided."""
        self.lock(slots)
        try:
            yield
        finally:
            self.unlock(slots)

    def lock(self, slots: list[int]) -> None:
        """Take the partition locks (as locked(), without a context manager: the write
        path takes them once per batch)."""
        locks = self.locks
        for i, slot in enumerate(slots):
            try:
                locks.lock(PARTITIONS + slot)
            except BaseException:
                self.unlock(slots[:i])
                raise
        table = self.catalog.slots
        try:
            dead = [int(table[s, S_PENDING_LSN]) for s in slots if table[s, S_PENDING_LSN]]
            if dead:  # their writers held these locks: they are gone
                with self.publishing():
                    for lsn in sorted(set(dead)):
                        finish(self, lsn)
        except BaseException:
            self.unlock(slots)
            raise

    def unlock(self, slots: list[int]) -> None:
        for slot in reversed(slots):
            self.locks.unlock(PARTITIONS + slot)

    def finish_all(self) -> None:
        """Decide every batch left pending (the coordinator, once its clients are gone)."""
        with self.publishing():
            for lsn in sorted(set(self.catalog.slots[:, S_PENDING_LSN].tolist()) - {0}):
                finish(self, lsn)


def append(shared: Shared, parts: list[tuple[int, Rows]], log: Log | None = None,
           lsn: int | None = None) -> int:
    """Write sorted, de-duplicated rows per partition slot; return the batch lsn.

    With lsn given (replay), that lsn is used and nothing is logged."""
    try:
        return _append(shared, parts, log, lsn)
    except ShmError as e:  # nothing of the batch was published
        raise translate(e) from None


def _append(shared: Shared, parts: list[tuple[int, Rows]], log: Log | None,
            lsn: int | None) -> int:
    catalog, table = shared.catalog, shared.catalog.slots
    slots = [slot for slot, _ in parts]
    shared.lock(slots)
    try:
        for slot, rows in parts:
            s = table[slot]
            if s[S_STATE] != LIVE or not s[S_MIN] <= rows.ids[0] or not rows.ids[-1] <= s[S_MAX]:
                raise Moved(slot)
        faults.point("write.locked")
        first = []  # partitions whose lsn_min this batch sets
        with Held(shared.locks, SEQUENCE):
            if lsn is None:
                lsn = catalog.bump(H_LSN)
            ssn = catalog.get(H_SSN)
            for slot in slots:
                if not table[slot, S_LSN_MIN]:
                    table[slot, S_LSN_MIN] = lsn
                    first.append(slot)
        written = False
        stage = 0
        try:
            faults.point("write.lsn")
            wal_file, offset = log.prepare(lsn) if log is not None else (0, 0)
            targets = []
            for slot, rows in parts:
                mt = shared.memtables.get(int(table[slot, S_ACTIVE]))
                n = int(table[slot, S_ROWS])
                mt.reserve(n, rows)
                targets.append((slot, rows, mt, n))
            for slot, rows, mt, n in targets:
                end = mt.append(n, rows)
                _mark(table[slot], lsn, n, end, wal_file, offset)
            stage = APPENDED
            faults.point("write.appended")
            if log is not None:
                log.write(lsn, ssn)
                written = True
            faults.point("write.logged")
            for slot in slots:
                table[slot, S_PENDING_STAGE] = LOGGED
            stage = LOGGED
            faults.point("write.marked")
            _publish(shared, lsn, targets)
        except BaseException:
            if stage == LOGGED:  # decided: make it visible, as a reader would
                with shared.publishing():
                    finish(shared, lsn)
            else:
                for slot in slots:
                    table[slot, S_PENDING_LSN] = 0
                if written:
                    log.cut(offset)
                for slot in first:
                    table[slot, S_LSN_MIN] = 0
            raise
    finally:
        shared.unlock(slots)
    return lsn


def _mark(s: np.ndarray, lsn: int, start: int, end: int, wal_file: int, offset: int) -> None:
    s[S_PENDING_START] = start
    s[S_PENDING_END] = end
    s[S_PENDING_STAGE] = APPENDED
    s[S_PENDING_WAL] = wal_file
    s[S_PENDING_OFFSET] = offset
    s[S_PENDING_LSN] = lsn  # last: the mark is valid from here


def _publish(shared: Shared, lsn: int, targets) -> None:
    """Steps 7 and 8."""
    catalog, table = shared.catalog, shared.catalog.slots
    if len(targets) == 1:
        slot = targets[0][0]
        table[slot, S_ROWS] = table[slot, S_PENDING_END]
    else:
        with shared.publishing():
            catalog.put(H_PUBLISHING, lsn)
            for i, (slot, _, _, _) in enumerate(targets):
                table[slot, S_ROWS] = table[slot, S_PENDING_END]
                if i == 0:
                    faults.point("write.publishing")
            catalog.put(H_PUBLISHING, 0)
    faults.point("write.published")
    for slot, rows, mt, n in targets:
        end = int(table[slot, S_ROWS])
        table[slot, S_PENDING_LSN] = 0
        mt.after_publish(n, end, lsn, _in_order(mt, n, rows))
        table[slot, S_HEAP] = mt.bytes_used(end)


def _in_order(mt: Memtable, n: int, rows: Rows) -> bool:
    """Whether rows (sorted, unique) all come after the memtable's first n rows."""
    if n == 0:
        return True
    last_id, last_key = mt.last(n)
    first_id = int(rows.ids[0])
    return first_id > last_id or (first_id == last_id and rows.key(0) > last_key)


def finish(shared: Shared, lsn: int) -> None:
    """Decide the batch lsn of a writer that died before publishing all of it
    (caller holds PUBLISH exclusive and knows the writer is dead)."""
    catalog, table = shared.catalog, shared.catalog.slots
    hit = np.flatnonzero(table[:, S_PENDING_LSN] == U64(lsn)).tolist()
    if hit and (table[hit, S_PENDING_STAGE] >= LOGGED).any():
        for slot in hit:  # roll forward
            end = int(table[slot, S_PENDING_END])
            table[slot, S_ROWS] = end
            mt = shared.memtables.get(int(table[slot, S_ACTIVE]))
            if int(mt.header[M_LSN_MAX]) < lsn:
                mt.header[M_LSN_MAX] = U64(lsn)
            table[slot, S_HEAP] = mt.bytes_used(end)
    elif hit:  # roll back: the record goes, whole or torn, before the marks do
        wal_file = int(table[hit[0], S_PENDING_WAL])
        if wal_file:
            cut_record(shared.wal_dir, wal_file, int(table[hit[0], S_PENDING_OFFSET]))
        for slot in hit:
            if int(table[slot, S_LSN_MIN]) == lsn:  # it set lsn_min: nothing else is there
                table[slot, S_LSN_MIN] = 0
    for slot in hit:
        table[slot, S_PENDING_LSN] = 0
    if catalog.get(H_PUBLISHING) == lsn:
        catalog.put(H_PUBLISHING, 0)

