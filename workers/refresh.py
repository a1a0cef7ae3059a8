"""Refresh: merge a partition's memtable and its file into a new file.
Move is the same, with the new file written into another storage.

  step 1. under the partition lock, freeze the active memtable and give the
          partition a fresh one (writers go on at once)
  step 2. merge file + frozen memtable into <target>/<min>.incomplete, fsync
          -- crash point error_refresh_1
  step 3. rename it to <target>/<min>.complete
          -- crash point error_refresh_2
  step 4. under PUBLISH (no snapshot is taken meanwhile):
          rename <min>.complete over <target>/<min> (one atomic step)
          -- crash point error_refresh_3
          point the slot at the new file; on a move, remove the source file
  step 5. drop the frozen memtable
Recovery (recovery.py) finishes or discards each of these states. After a
failure the frozen memtable stays readable and the next refresh of the
partition merges it first.
"""
from __future__ import annotations

import os
import time

from monotone.catalog import Storage
from monotone.errors import InjectedError
from monotone.partfile import COMPLETE, INCOMPLETE, Reader, Writer, fsync_dir
from monotone.rows import Ordered, Rows, drop_deletes, merge
from shm import segment
from shm.catalog import (H_MAP_VERSION, H_SEGNO, H_SSN, S_ACTIVE, S_CREATED, S_FILE_LSN,
                         S_FROZEN, S_FROZEN_LSN_MIN, S_FROZEN_ROWS, S_GEN, S_LSN_MIN, S_MAX,
                         S_MIN, S_REFRESHES, S_ROWS, S_STORAGE)
from shm.locks import PARTITIONS, PUBLISH, Held
from shm.memtable import Memtable

from .engine import Engine
from .recovery import set_file


def refresh(engine: Engine, slot: int, target: Storage | None = None) -> None:
    """Rewrite one partition with its memtable merged in, into target (default: where it is)."""
    s = engine.slots.slots[slot]
    target = target or engine.storage_of(slot)
    resumed = bool(s[S_FROZEN])  # left by a refresh that failed
    _freeze(engine, slot)
    _merge_frozen(engine, slot, target)
    if resumed and s[S_ROWS]:
        _freeze(engine, slot)
        _merge_frozen(engine, slot, target)


def _freeze(engine: Engine, slot: int) -> None:
    """Step 1; a frozen memtable left by a failed refresh is merged first."""
    s = engine.slots.slots[slot]
    with Held(engine.locks, PARTITIONS + slot):
        if s[S_FROZEN]:
            return
        segno = engine.slots.bump(H_SEGNO)
        engine.memtables.add(Memtable.create(engine.layout.memtable(segno), segno))
        with Held(engine.locks, PUBLISH):
            s[S_FROZEN_ROWS] = s[S_ROWS]
            s[S_FROZEN_LSN_MIN] = s[S_LSN_MIN]
            s[S_FROZEN] = s[S_ACTIVE]
            s[S_ROWS] = 0
            s[S_LSN_MIN] = 0
            s[S_ACTIVE] = segno


def _merge_frozen(engine: Engine, slot: int, target: Storage) -> None:
    """Steps 2 to 5 for the partition's frozen memtable."""
    s = engine.slots.slots[slot]
    source = engine.storage_of(slot)
    frozen = engine.memtables.get(int(s[S_FROZEN]))
    rows = frozen.sorted_rows(int(s[S_FROZEN_ROWS]))
    old = engine.file_path(slot, source) if s[S_GEN] else None
    path = engine.file_path(slot, target)
    meta = {
        "min": int(s[S_MIN]), "max": int(s[S_MAX]),
        "lsn": max(int(s[S_FILE_LSN]), frozen.lsn_max),
        "ssn": engine.slots.get(H_SSN),
        "created": int(s[S_CREATED]), "refreshed": int(time.time() * 1e6),
        "refreshes": int(s[S_REFRESHES]) + 1,
    }
    # step 2
    writer = Writer(path + INCOMPLETE, target.compression, target.compression_level,
                    target.region_size, engine.cipher(target), target.crc)
    try:
        _merge_into(writer, old, engine.cipher(source), rows)
        meta = writer.finish(meta, target.sync)
    except BaseException:
        writer.abort()
        raise
    meta["file_size"] = os.path.getsize(path + INCOMPLETE)
    _crash_point(engine, 1)
    # step 3
    directory = os.path.dirname(path)
    os.rename(path + INCOMPLETE, path + COMPLETE)
    if target.sync:
        fsync_dir(directory)
    _crash_point(engine, 2)
    # step 4
    with Held(engine.locks, PUBLISH):
        os.replace(path + COMPLETE, path)
        if target.sync:
            fsync_dir(directory)
        _crash_point(engine, 3)
        segno = int(s[S_FROZEN])
        set_file(engine, slot, meta)
        s[S_STORAGE] = target.id
        s[S_FROZEN_ROWS] = 0
        s[S_FROZEN_LSN_MIN] = 0
        s[S_FROZEN] = 0
        engine.slots.bump(H_MAP_VERSION)  # clients unmap the frozen memtable
        if old is not None and old != path:
            os.unlink(old)
            if source.sync:
                fsync_dir(os.path.dirname(old))
    # step 5
    engine.memtables.forget(segno)
    segment.unlink(engine.layout.memtable(segno))


def _merge_into(writer: Writer, old: str | None, cipher, mem: Rows) -> None:
    """Stream the old file's regions merged with the sorted memtable rows."""
    ordered, pos = Ordered(mem), 0
    if old is not None:
        with Reader(old, cipher) as reader:
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
