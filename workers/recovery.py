"""Open-time recovery: partition files first, then the WAL over them.

Partition files may be left in any state a refresh can crash in:
  <min>.incomplete          new file not finished: remove it (old file and WAL are intact)
  <min>.complete            new file finished, old one maybe still there:
                            remove <min> if present, rename <min>.complete to <min>
  <min>                     the partition file
Then every intact WAL record is replayed in lsn order into memtables, except
the part of it a partition file already holds (record lsn <= file lsn).
"""
from __future__ import annotations

import logging
import os
import re

from monotone import wal
from monotone.partfile import COMPLETE, INCOMPLETE, Reader, fsync_dir
from shm.catalog import (
    H_LSN,
    H_SSN,
    S_CREATED,
    S_FILE_EVENTS,
    S_FILE_LSN,
    S_GEN,
    S_REFRESHED,
    S_REFRESHES,
)

from .engine import Engine

log = logging.getLogger("monotone")
_NAME = re.compile(r"^(\d{1,20})(\.incomplete|\.complete)?$")


def recover(engine: Engine) -> None:
    lsn, ssn = recover_files(engine)
    lsn, ssn = max(lsn, engine.config.lsn), max(ssn, engine.config.ssn)
    engine.catalog.put(H_LSN, lsn)
    engine.catalog.put(H_SSN, ssn)
    if engine.config.wal:
        replay_wal(engine)
    engine.save_config()


def recover_files(engine: Engine) -> tuple[int, int]:
    path = engine.storage_path
    names = {}
    for name in os.listdir(path):
        m = _NAME.match(name)
        if m:
            names.setdefault(int(m.group(1)), set()).add(m.group(2) or "")
    changed = False
    for min_, kinds in names.items():
        base = engine.file_path(min_)
        if INCOMPLETE in kinds:
            os.unlink(base + INCOMPLETE)
            changed = True
        if COMPLETE in kinds:
            if "" in kinds:
                os.unlink(base)
            os.rename(base + COMPLETE, base)
            kinds.add("")
            changed = True
    if changed:
        fsync_dir(path)
    lsn = ssn = 0
    for min_ in sorted(m for m, kinds in names.items() if "" in kinds):
        with Reader(engine.file_path(min_)) as reader:
            meta = reader.meta
        slot = engine.new_slot(int(meta["min"]), int(meta["max"]), int(meta.get("created", 0)))
        s = engine.catalog.slots[slot]
        s[S_GEN] = 1
        s[S_FILE_LSN] = int(meta.get("lsn", 0))
        s[S_FILE_EVENTS] = int(meta["events"])
        s[S_CREATED] = int(meta.get("created", 0))
        s[S_REFRESHED] = int(meta.get("refreshed", 0))
        s[S_REFRESHES] = int(meta.get("refreshes", 0))
        lsn = max(lsn, int(meta.get("lsn", 0)))
        ssn = max(ssn, int(meta.get("ssn", 0)))
    return lsn, ssn


def replay_wal(engine: Engine) -> None:
    records = []
    for path in wal.wal_files(engine.layout.wal):
        wf = wal.read_file(path)
        if wal.cut_tail(wf):
            log.warning("wal file %s: damaged record at offset %d, tail cut (%d bytes)",
                        path, wf.good_size, wf.size - wf.good_size)
        records.extend(wf.records)
    records.sort(key=lambda r: r.lsn)
    cat = engine.catalog
    for rec in records:
        engine.apply(rec.rows, rec.lsn, lambda slot: int(cat.slots[slot, S_FILE_LSN]))
        cat.put(H_LSN, max(cat.get(H_LSN), rec.lsn))
        cat.put(H_SSN, max(cat.get(H_SSN), rec.ssn))
