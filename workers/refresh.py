"""Refresh: merge a partition's memtable and its file into a new file.

  step 1. under the partition lock, freeze the active memtable and give the
          partition a fresh one (writers go on at once)
  step 2. merge file + frozen memtable into <min>.incomplete, fsync
          -- crash point error_refresh_1
  step 3. rename <min>.incomplete -> <min>.complete
          -- crash point error_refresh_2
  step 4. under PUBLISH (no snapshot is taken meanwhile):
          rename <min>.complete over the old <min> (one atomic step)
          -- crash point error_refresh_3
          point the slot at the new file
  step 5. drop the frozen memtable
Recovery (recovery.py) finishes or discards each of these states. After a
failure the frozen memtable stays readable and the next refresh of the
partition merges it first.
"""
from __future__ import annotations

import os
import time

from monotone.errors import InjectedError
from monotone.partfile import COMPLETE, INCOMPLETE, Reader, Writer, fsync_dir
from monotone.rows import Ordered, Rows, drop_deletes, merge
from shm import segment
from shm.catalog import (
    H_MAP_VERSION,
    H_SEGNO,
    H_SSN,
    S_ACTIVE,
    S_CREATED,
    S_FILE_EVENTS,
    S_FILE_LSN,
    S_FROZEN,
    S_FROZEN_LSN_MIN,
    S_FROZEN_ROWS,
    S_GEN,
    S_LSN_MIN,
    S_MAX,
    S_MIN,
    S_REFRESHED,
    S_REFRESHES,
    S_ROWS,
)
from shm.locks import PARTITIONS, PUBLISH, Held
from shm.memtable import Memtable

from .engine import Engine


def refresh(engine: Engine, slot: int) -> bool:
    """Refresh one partition; False when it had nothing in memory."""
    s = engine.catalog.slots[slot]
    resumed = bool(s[S_FROZEN])  # left by a refresh that failed
    if not _freeze(engine, slot):
        return False
    _merge_frozen(engine, slot)
    if resumed and s[S_ROWS]:
        _freeze(engine, slot)
        _merge_frozen(engine, slot)
    return True


def _merge_frozen(engine: Engine, slot: int) -> None:
    """Steps 2 to 5 for the partition's frozen memtable."""
    s = engine.catalog.slots[slot]
    frozen = engine.memtables.get(int(s[S_FROZEN]))
    rows = frozen.sorted_rows(int(s[S_FROZEN_ROWS]))
    path = engine.file_path(int(s[S_MIN]))
    cfg = engine.config
    meta = {
        "min": int(s[S_MIN]), "max": int(s[S_MAX]),
        "lsn": max(int(s[S_FILE_LSN]), frozen.lsn_max),
        "ssn": engine.catalog.get(H_SSN),
        "created": int(s[S_CREATED]), "refreshed": int(time.time() * 1e6),
        "refreshes": int(s[S_REFRESHES]) + 1,
    }
    # step 2
    writer = Writer(path + INCOMPLETE, cfg.compression, cfg.compression_level, cfg.region_size)
    try:
        _merge_into(writer, path if s[S_GEN] else None, rows)
        meta = writer.finish(meta, cfg.sync)
    except BaseException:
        writer.abort()
        raise
    _crash_point(engine, 1)
    # step 3
    os.rename(path + INCOMPLETE, path + COMPLETE)
    if cfg.sync:
        fsync_dir(engine.storage_path)
    _crash_point(engine, 2)
    # step 4
    with Held(engine.locks, PUBLISH):
        os.replace(path + COMPLETE, path)
        if cfg.sync:
            fsync_dir(engine.storage_path)
        _crash_point(engine, 3)
        segno = int(s[S_FROZEN])
        s[S_GEN] += 1
        s[S_FILE_LSN] = meta["lsn"]
        s[S_FILE_EVENTS] = meta["events"]
        s[S_REFRESHED] = meta["refreshed"]
        s[S_REFRESHES] = meta["refreshes"]
        s[S_FROZEN_ROWS] = 0
        s[S_FROZEN_LSN_MIN] = 0
        s[S_FROZEN] = 0
        engine.catalog.bump(H_MAP_VERSION)  # clients unmap the frozen memtable
    # step 5
    engine.memtables.forget(segno)
    segment.unlink(engine.layout.memtable(segno))


def _freeze(engine: Engine, slot: int) -> bool:
    """Step 1; a frozen memtable left by a failed refresh is merged first."""
    s = engine.catalog.slots[slot]
    with Held(engine.locks, PARTITIONS + slot):
        if s[S_FROZEN]:
            return True
        if not s[S_ROWS]:
            return False
        segno = engine.catalog.bump(H_SEGNO)
        engine.memtables.add(Memtable.create(engine.layout.memtable(segno), segno))
        with Held(engine.locks, PUBLISH):
            s[S_FROZEN_ROWS] = s[S_ROWS]
            s[S_FROZEN_LSN_MIN] = s[S_LSN_MIN]
            s[S_FROZEN] = s[S_ACTIVE]
            s[S_ROWS] = 0
            s[S_LSN_MIN] = 0
            s[S_ACTIVE] = segno
    return True


def _merge_into(writer: Writer, old: str | None, mem: Rows) -> None:
    """Stream the old file's regions merged with the sorted memtable rows."""
    ordered, pos = Ordered(mem), 0
    if old is not None:
        with Reader(old) as reader:
            index = reader.index
            for i in range(index.regions):
                region = reader.read_region(i)
                upper = ordered.bound(int(index.entries["max_id"][i]), index.max_key(i), "right")
                writer.add(drop_deletes(merge([region, mem.slice(pos, upper)])))
                pos = upper
    writer.add(drop_deletes(mem.slice(pos, len(mem))))


def _crash_point(engine: Engine, n: int) -> None:
    if engine.config.values[f"error_refresh_{n}"]:
        raise InjectedError(f"refresh failed at crash point {n} (error_refresh_{n} is set)")
