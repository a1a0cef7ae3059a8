"""Executing parsed commands in the coordinator: one handler per command type."""
from __future__ import annotations

import json
import os

from monotone import wal
from monotone.config import HIDDEN, TABLE
from monotone.ddl import commands as cmd
from monotone.ddl import parse
from monotone.errors import MonotoneError, PartitionNotFound
from monotone.partfile import Reader
from shm.catalog import (
    H_LSN,
    H_SSN,
    H_WAL_NEEDED,
    S_ACTIVE,
    S_CREATED,
    S_FILE_EVENTS,
    S_FROZEN,
    S_FROZEN_ROWS,
    S_GEN,
    S_MAX,
    S_MIN,
    S_REFRESHED,
    S_REFRESHES,
    S_ROWS,
    lsn_needed,
)

from . import refresh as refresher
from .engine import Engine


def execute(engine: Engine, text: str) -> str | None:
    command = parse(text)
    return HANDLERS[type(command)](engine, command)


def _set(engine: Engine, c: cmd.Set) -> None:
    engine.config.set(c.name, c.value, opened=True)
    if c.name == "ssn":
        engine.catalog.put(H_SSN, engine.config.ssn)
    engine.config_changed()


def config_value(engine: Engine, name: str):
    var = TABLE.get(name)
    if var is None:
        raise MonotoneError(f"config variable '{name}' does not exist")
    if name == "ssn":
        return engine.catalog.get(H_SSN)
    if name == "lsn":
        return engine.catalog.get(H_LSN)
    return engine.config.values[name]


def _show(engine: Engine, c: cmd.Show) -> str:
    if c.what == "var":
        return json.dumps(config_value(engine, c.names[0]))
    if c.what == "list":
        return json.dumps([config_value(engine, n) for n in c.names])
    if c.what in ("config", "all"):
        return json.dumps({n: config_value(engine, n) for n, v in TABLE.items()
                           if not v.flags & HIDDEN}, indent=2)
    if c.what == "partitions":
        return json.dumps([partition_json(engine, int(s), c.debug) for s in engine.live_slots()],
                          indent=2)
    if c.what == "partition":
        slot = engine.partition_of(c.id)
        if slot is None:
            raise PartitionNotFound(f"partition {c.id} does not exist")
        return json.dumps(partition_json(engine, slot, c.debug), indent=2)
    if c.what == "wal":
        files = wal.wal_files(engine.layout.wal)
        cfg = engine.config
        return json.dumps({
            "active": cfg.wal, "rotate_wm": cfg.wal_rotate_wm,
            "sync_on_rotate": cfg.wal_sync_on_rotate, "sync_on_write": cfg.wal_sync_on_write,
            "crc": cfg.wal_crc, "lsn": engine.catalog.get(H_LSN),
            "lsn_min": lsn_needed(engine.catalog), "files": len(files)}, indent=2)
    raise MonotoneError(f"SHOW {c.what} is not supported")


def partition_json(engine: Engine, slot: int, debug: bool = False) -> dict:
    s = engine.catalog.slots[slot]
    heap = 0
    for col, rows_col in ((S_ACTIVE, S_ROWS), (S_FROZEN, S_FROZEN_ROWS)):
        if s[col] and s[rows_col]:
            heap += engine.memtables.get(int(s[col])).bytes_used(int(s[rows_col]))
    out = {
        "min": int(s[S_MIN]), "max": int(s[S_MAX]),
        "events": int(s[S_FILE_EVENTS]), "events_heap": int(s[S_ROWS] + s[S_FROZEN_ROWS]),
        "regions": 0, "size": 0, "size_uncompressed": 0, "size_heap": heap,
        "created": int(s[S_CREATED]), "refreshed": int(s[S_REFRESHED]),
        "refreshes": int(s[S_REFRESHES]),
        "on_storage": bool(s[S_GEN]), "on_cloud": False, "storage": "main",
    }
    if s[S_GEN]:
        path = engine.file_path(int(s[S_MIN]))
        with Reader(path) as r:
            out["regions"] = r.index.regions
            out["size"] = r.file_size
            out["size_uncompressed"] = int(r.meta["size_uncompressed"])
            if debug:
                out["index"] = {"size": r.file_size - int(r.meta["size"]),
                                "lsn": int(r.meta["lsn"]),
                                "compression": r.meta["compression"]}
    return out


def refresh_range(engine: Engine, lo: int, hi: int) -> int:
    done = 0
    for slot in engine.live_slots():
        if lo <= int(engine.catalog.slots[slot, S_MIN]) <= hi:
            done += refresher.refresh(engine, int(slot))
    return done


def collect_wal(engine: Engine) -> int:
    """Delete WAL files whose events are all in partition files."""
    needed = lsn_needed(engine.catalog)
    engine.catalog.put(H_WAL_NEEDED, needed)  # writers drop their own files below it
    if not os.path.isdir(engine.layout.wal):
        return 0
    return wal.gc(engine.layout.wal, needed)


def _refresh(engine: Engine, c: cmd.Refresh) -> None:
    if c.max is None:
        slot = engine.partition_of(c.min)
        if slot is None:
            if c.if_exists:
                return None
            raise PartitionNotFound(f"refresh: partition {c.min} does not exist")
        refresher.refresh(engine, slot)
    else:
        refresh_range(engine, c.min, c.max)
    collect_wal(engine)
    return None


def _checkpoint(engine: Engine, c: cmd.Checkpoint) -> None:
    refresh_range(engine, 0, 2**64 - 1)
    collect_wal(engine)


HANDLERS = {cmd.Set: _set, cmd.Show: _show, cmd.Refresh: _refresh, cmd.Checkpoint: _checkpoint}
