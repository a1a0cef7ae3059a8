"""Appending a batch to the memtables of its partitions, atomically; and
finishing, or undoing, what a writer that died left half done.

Protocol of append() (its process may be killed at any step):
  1. lock the batch's partitions in ascending order (no deadlocks); a locked
     partition still marked pending belongs to a writer that died holding the
     lock: finish its batch first (finish(), below)
  2. under SEQUENCE take the next lsn, move ssn past the batch's ids, and set
     the partitions' lsn_min, so WAL garbage collection never passes a record
     that is not yet in memory
  3. back the memtable space the batch needs (a full /dev/shm fails here)
  4. append rows past each memtable's published count, and mark each
     partition pending: lsn, row counts, stage APPENDED, where the WAL record
     goes (file and offset)
  5. write the WAL record (the caller's Log)
  6. mark each partition LOGGED: from here on the batch is decided
  7. publish: one store for one partition; for several, the stores under
     PUBLISH exclusive with the map's publishing counter naming the batch
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

from . import faults
from .boundary import ShmError, translate
from .format.rows import Rows
from .shm.locks import PARTITIONS, PUBLISH, SEQUENCE, Held, LockFile
from .shm.memtable import Memtable, MemtableCache
from .shm.partition_map import LOGGED, PartitionMap
from .wal.writer import cut_record


class Moved(Exception):
    """A partition was dropped (or its slot reused) between routing and locking."""


class Log:
    """Where a batch is logged before it is published (the WAL), if anywhere."""

    def prepare(self, lsn: int) -> tuple[int, int]:
        """The WAL file (its first lsn) and offset the record will start at."""
        raise NotImplementedError

    def write(self, lsn: int, ssn: int) -> None:
        """Write the record (all of it, or raise having written nothing)."""
        raise NotImplementedError

    def cut(self, offset: int) -> None:
        """Take back the record just written (the batch failed after it)."""
        raise NotImplementedError


@dataclass
class Shared:
    """One process's handles on a repository's shared memory."""
    pmap: PartitionMap
    locks: LockFile
    memtables: MemtableCache
    wal_dir: str

    @contextmanager
    def publishing(self):
        """PUBLISH exclusive, with a publish a dead writer left half done completed."""
        with Held(self.locks, PUBLISH):
            lsn = self.pmap.publishing
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
        try:
            dead = self.pmap.pending_in(slots)
            if dead:  # their writers held these locks: they are gone
                with self.publishing():
                    for lsn in dead:
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
            for lsn in self.pmap.all_pending():
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
    pmap = shared.pmap
    slots = [slot for slot, _ in parts]
    shared.lock(slots)
    try:
        views = [pmap.slot(slot) for slot in slots]
        for view, (slot, rows) in zip(views, parts):
            if not view.holds(int(rows.ids[0]), int(rows.ids[-1])):
                raise Moved(slot)
        faults.point("write.locked")
        first = []  # partitions whose lsn_min this batch sets
        with Held(shared.locks, SEQUENCE):
            if lsn is None:
                lsn = pmap.bump("lsn")
            # ssn moves past the batch's largest id (the parts ascend), before the
            # batch is published: no serial id is then handed out on an id written,
            # here or in another process (with serial off too: it may be on at a
            # later open); the WAL record carries it for recovery
            past = int(parts[-1][1].ids[-1]) + 1
            if pmap.ssn < past:
                pmap.ssn = past
            ssn = pmap.ssn
            for view in views:
                if not view.lsn_min:
                    view.lsn_min = lsn
                    first.append(view)
        written = False
        stage = 0
        try:
            faults.point("write.lsn")
            wal_file, offset = log.prepare(lsn) if log is not None else (0, 0)
            targets = []
            for view, (slot, rows) in zip(views, parts):
                mt = shared.memtables.get(view.active)
                n = view.rows
                mt.reserve(n, rows)
                targets.append((view, rows, mt, n))
            for view, rows, mt, n in targets:
                view.mark(lsn, n, mt.append(n, rows), wal_file, offset)
            stage = 1
            faults.point("write.appended")
            if log is not None:
                log.write(lsn, ssn)
                written = True
            faults.point("write.logged")
            for view in views:
                view.pending_stage = LOGGED
            stage = LOGGED
            faults.point("write.marked")
            _publish(shared, lsn, targets)
        except BaseException:
            if stage == LOGGED:  # decided: make it visible, as a reader would
                with shared.publishing():
                    finish(shared, lsn)
            else:
                for view in views:
                    view.pending_lsn = 0
                if written:
                    log.cut(offset)
                for view in first:
                    view.lsn_min = 0
            raise
    finally:
        shared.unlock(slots)
    return lsn


def _publish(shared: Shared, lsn: int, targets) -> None:
    """Steps 7 and 8."""
    pmap = shared.pmap
    if len(targets) == 1:
        view = targets[0][0]
        view.rows = view.pending_end
    else:
        with shared.publishing():
            pmap.publishing = lsn
            for i, (view, _, _, _) in enumerate(targets):
                view.rows = view.pending_end
                if i == 0:
                    faults.point("write.publishing")
            pmap.publishing = 0
    faults.point("write.published")
    for view, rows, mt, n in targets:
        end = view.rows
        view.pending_lsn = 0
        mt.after_publish(n, end, lsn, _in_order(mt, n, rows))
        view.heap = mt.bytes_used(end)


def _in_order(mt: Memtable, n: int, rows: Rows) -> bool:
    """Whether rows (sorted, unique) all come after the memtable's first n rows."""
    if n == 0:
        return True
    last_id, first_id = int(mt.ids[n - 1]), int(rows.ids[0])
    if first_id != last_id:
        return first_id > last_id
    return rows.key(0) > mt.last(n)[1]


def finish(shared: Shared, lsn: int) -> None:
    """Decide the batch lsn of a writer that died before publishing all of it
    (caller holds PUBLISH exclusive and knows the writer is dead)."""
    pmap = shared.pmap
    hit = pmap.pending(lsn)
    views = [pmap.slot(slot) for slot in hit]
    if hit and pmap.logged(hit):
        for view in views:  # roll forward
            end = view.pending_end
            view.rows = end
            mt = shared.memtables.get(view.active)
            mt.raise_lsn_max(lsn)
            view.heap = mt.bytes_used(end)
    elif hit:  # roll back: the record goes, whole or torn, before the marks do
        if views[0].pending_wal:
            cut_record(shared.wal_dir, views[0].pending_wal, views[0].pending_offset)
        for view in views:
            if view.lsn_min == lsn:  # it set lsn_min: nothing else is there
                view.lsn_min = 0
    for view in views:
        view.pending_lsn = 0
    if pmap.publishing == lsn:
        pmap.publishing = 0
