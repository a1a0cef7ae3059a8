"""Refresh: merge a partition's memtable and its file into a new file.
Move is the same, with the new file written into another storage.

  step 1. under the partition lock, freeze the active memtable and give the
          partition a fresh one (writers go on at once)
          -- fault point refresh.frozen
  step 2. merge file + frozen memtable into <target>/<min>.incomplete, fsync
          -- crash point error_refresh_1
  step 3. rename it to <target>/<min>.complete
          -- crash point error_refresh_2
  step 4. under PUBLISH (no snapshot is taken meanwhile):
          rename <min>.complete over <target>/<min> (one atomic step)
          -- crash point error_refresh_3
          point the slot at the new file; on a move, remove the source file
  step 5. drop the frozen memtable
Steps 2 and 3 are a MergeJob (merge.py), run by a worker process; the
coordinator does the short steps around it. Recovery (recovery.py) finishes
or discards each of these states. After a failure the frozen memtable stays
readable and the next refresh of the partition merges it first.
"""
from __future__ import annotations

import os
import time

from monotone import faults
from monotone.catalog import Storage
from monotone.partfile import COMPLETE, fsync_dir
from monotone.shm import segment
from monotone.shm.catalog import (H_MAP_VERSION, H_SEGNO, H_SSN, LIVE, S_ACTIVE, S_CREATED, S_FILE_LSN,
                         S_FROZEN, S_FROZEN_HEAP, S_FROZEN_LSN_MIN, S_FROZEN_ROWS, S_GEN, S_HEAP,
                         S_HINTED, S_LSN_MIN,
                         S_MAX, S_MIN, S_REFRESHES, S_ROWS, S_STATE, S_STORAGE)
from monotone.shm.locks import SEQUENCE, Held
from monotone.shm.memtable import Memtable

from .engine import Engine
from .merge import MergeJob
from .recovery import set_file
from .tasks import WaitSlot


def claim(engine: Engine, slot: int):
    """Wait until no other task works on the partition, then take it.

    Returns False when the partition went away (dropped) meanwhile."""
    min_ = int(engine.slots.slots[slot, S_MIN])
    while slot in engine.busy:
        yield WaitSlot(slot)
    s = engine.slots.slots[slot]
    if s[S_STATE] != LIVE or int(s[S_MIN]) != min_:
        return False
    engine.busy.add(slot)
    return True


def refresh(engine: Engine, slot: int, target: Storage | None = None):
    """Rewrite one partition with its memtable merged in, into target (default: where it is)."""
    if not (yield from claim(engine, slot)):
        return
    try:
        s = engine.slots.slots[slot]
        target = target or engine.storage_of(slot)
        resumed = bool(s[S_FROZEN])  # left by a refresh that failed
        yield from _refresh_once(engine, slot, target)
        if resumed and s[S_ROWS]:
            yield from _refresh_once(engine, slot, target)
    finally:
        engine.busy.discard(slot)


def _refresh_once(engine: Engine, slot: int, target: Storage):
    _freeze(engine, slot)
    job = _job(engine, slot, target)
    meta = yield job
    _switch(engine, slot, target, job, meta)


def _freeze(engine: Engine, slot: int) -> None:
    """Step 1; a frozen memtable left by a failed refresh is merged first.

    Under the partition lock (a writer that died in it has its batch decided
    first, so no pending batch is frozen), PUBLISH (no snapshot sees half of
    the switch) and SEQUENCE (WAL gc never sees the partition's lsn_min gone)."""
    s = engine.slots.slots[slot]
    with engine.shared.locked([slot]):
        if s[S_FROZEN]:
            return
        segno = engine.slots.bump(H_SEGNO)
        engine.memtables.add(Memtable.create(engine.layout.memtable(segno), segno))
        with engine.shared.publishing(), Held(engine.locks, SEQUENCE):
            s[S_FROZEN_ROWS] = s[S_ROWS]
            s[S_FROZEN_LSN_MIN] = s[S_LSN_MIN]
            s[S_FROZEN_HEAP] = s[S_HEAP]
            s[S_FROZEN] = s[S_ACTIVE]
            s[S_ROWS] = 0
            s[S_LSN_MIN] = 0
            s[S_HEAP] = 0
            s[S_HINTED] = 0
            s[S_ACTIVE] = segno
    faults.point("refresh.frozen")


def _job(engine: Engine, slot: int, target: Storage) -> MergeJob:
    """Steps 2 and 3, described for whoever runs them."""
    s = engine.slots.slots[slot]
    source = engine.storage_of(slot)
    cfg = engine.config.values
    return MergeJob(
        slot=slot, frozen=int(s[S_FROZEN]), frozen_rows=int(s[S_FROZEN_ROWS]),
        old=engine.file_path(slot, source) if s[S_GEN] else None,
        old_key=source.encryption_key if source.encryption else "",
        path=engine.file_path(slot, target),
        compression=target.compression, compression_level=target.compression_level,
        region_size=target.region_size,
        key=target.encryption_key if target.encryption else "",
        crc=target.crc, sync=target.sync,
        meta={"min": int(s[S_MIN]), "max": int(s[S_MAX]), "lsn": int(s[S_FILE_LSN]),
              "ssn": engine.slots.get(H_SSN), "created": int(s[S_CREATED]),
              "refreshed": int(time.time() * 1e6), "refreshes": int(s[S_REFRESHES]) + 1},
        switches=sorted(faults.switched(cfg)),
        wal_dir=engine.layout.wal if target.sync and cfg["wal"] and
        not cfg["wal_sync_on_write"] else "")


def _switch(engine: Engine, slot: int, target: Storage, job: MergeJob, meta: dict) -> None:
    """Steps 4 and 5."""
    s = engine.slots.slots[slot]
    source = engine.storage_of(slot)
    directory = os.path.dirname(job.path)
    with engine.shared.publishing():
        os.replace(job.path + COMPLETE, job.path)
        if target.sync:
            fsync_dir(directory)
        faults.point("refresh_3", faults.switched(engine.config.values))
        segno = int(s[S_FROZEN])
        set_file(engine, slot, meta)
        s[S_STORAGE] = target.id
        s[S_FROZEN_ROWS] = 0
        s[S_FROZEN_LSN_MIN] = 0
        s[S_FROZEN_HEAP] = 0
        s[S_FROZEN] = 0
        engine.slots.bump(H_MAP_VERSION)  # clients unmap the frozen memtable
        if job.old is not None and job.old != job.path:
            os.unlink(job.old)
            if source.sync:
                fsync_dir(os.path.dirname(job.old))
    engine.memtables.forget(segno)
    segment.unlink(engine.layout.memtable(segno))
