"""Commands on partitions: create, refresh, move, drop, upload/download, the
pipeline's retention, checkpoint, and collecting the WAL after them.

The multi-step ones are generators (tasks.py) run under the PARTITIONS lock,
each claiming the partitions it works on (claims.py).
"""
from __future__ import annotations

import logging
import os
import time

from monotone import faults
from monotone.ddl import commands as cmd
from monotone.errors import MonotoneError, PartitionNotFound
from monotone.format.rows import MAX_ID
from monotone.jsonout import size_text
from monotone.shm.locks import SEQUENCE, Held
from monotone.shm.partition_map import ON_CLOUD, ON_STORAGE
from monotone.wal import files as wal_files
from monotone.wal import records as walfmt

from . import cloud_tier
from . import refresh as refresher
from .engine import Engine

log = logging.getLogger("monotone")


# partitions
def create_partition(engine: Engine, c: cmd.CreatePartition) -> None:
    hi = c.max if c.max is not None else min(c.min + engine.config.interval, MAX_ID)
    if c.min > hi:
        raise MonotoneError(f"fill: invalid partition interval [{c.min}, {hi}]")
    engine.fill(c.min, hi)


def _targets(engine: Engine, c: cmd.PartitionCommand, verb: str) -> list[int]:
    """The slots a partition command acts on (the original's single/range rules)."""
    if c.single:
        slot = engine.partitions.containing(c.min)
        if slot is None:
            if c.if_exists:
                return []
            raise PartitionNotFound(f"{verb}: partition '{c.min}' not found")
        return [slot]
    return engine.partitions.in_range(c.min, c.max)


def refresh_partitions(engine: Engine, c: cmd.Refresh):
    for slot in _targets(engine, c, "refresh"):
        yield from refresher.refresh(engine, slot)
    collect_wal(engine)


def move_partitions(engine: Engine, c: cmd.Move):
    target = engine.catalog.storage(c.into)
    if target is None:
        raise MonotoneError(f"move: storage '{c.into}' not found")
    for slot in _targets(engine, c, "move"):
        if engine.storage_of(slot).id != target.id:
            yield from refresher.refresh(engine, slot, target)
    collect_wal(engine)


def drop_partitions(engine: Engine, c: cmd.Drop):
    for slot in _targets(engine, c, "drop"):
        if c.on is None:
            yield from drop_partition(engine, slot)
        else:
            yield from engine.claims.claimed(slot, f"drop on {c.on}",
                                             lambda: drop_copy(engine, slot, c))
    collect_wal(engine)


def drop_copy(engine: Engine, slot: int, c: cmd.Drop):
    """DROP ... ON STORAGE | ON CLOUD: one copy of the partition's file goes. The
    only copy is never dropped this way (that would lose the partition's events
    with the partition still there): a single partition says so, a range skips it."""
    s = engine.partitions.slot(slot)
    this, other = (ON_CLOUD, ON_STORAGE) if c.on == "cloud" else (ON_STORAGE, ON_CLOUD)
    if s.places & this and not s.places & other:
        if c.single:
            where = "on cloud" if c.on == "cloud" else "on storage"
            missing = "storage" if c.on == "cloud" else "cloud"
            raise MonotoneError(f"drop: partition '{s.min}' has no copy on {missing}: "
                                f"cannot drop its only copy {where} (DROP PARTITION drops "
                                "the partition)")
        return
    if c.on == "cloud":
        yield from cloud_tier.drop_cloud_copy(engine, slot)
    elif s.places & ON_STORAGE:
        cloud_tier.drop_local_copy(engine, slot)


def drop_partition(engine: Engine, slot: int):
    """Drop a partition: a WAL record first (so recovery does not bring it back),
    then the slot, the memtables and the files (a cloud copy last: its object
    is removed by an upload worker): a task, on the partition claimed."""
    return engine.claims.claimed(slot, "drop", lambda: _drop(engine, slot))


def _drop(engine: Engine, slot: int):
    s = engine.partitions.slot(slot)
    storage, min_, places = engine.storage_of(slot), s.min, s.places
    log.info("drop partition %d: %d events in the file, %d in memory, %s, storage %s",
             min_, s.file_events, s.rows + s.frozen_rows, size_text(s.file_size),
             storage.name)
    _drop_claimed(engine, slot)  # the slot is free from here
    files = engine.files(storage)
    if places & ON_CLOUD:
        files.drop_stub(min_)
        faults.point("cloud.dropping")
        yield from cloud_tier.write_manifest(engine, storage)
    # its retired objects (a refresh may have kept one, too) go once they are due
    yield from cloud_tier.remove_retired(engine, storage, min_)


def _drop_claimed(engine: Engine, slot: int) -> None:
    s = engine.partitions.slot(slot)
    lo, hi, places = s.min, s.max, s.places
    with engine.shared.locked([slot]):
        if engine.config.wal:
            with Held(engine.locks, SEQUENCE):
                lsn = engine.pmap.bump("lsn")
            cfg = engine.config
            engine.wal.append_record(lsn, walfmt.encode_drop(lsn, engine.pmap.ssn, lo, hi),
                                     sync=True, rotate_wm=cfg.wal_rotate_wm,
                                     sync_on_rotate=cfg.wal_sync_on_rotate)
        faults.point("drop.logged")
        files = engine.files(engine.storage_of(slot))
        with engine.shared.publishing():
            engine.partitions.forget(slot)
    if places & ON_STORAGE:
        files.remove(lo)
    for storage in engine.catalog.storages:  # and what a refresh left half done
        engine.files(storage).discard(lo)


def transfer_targets(engine: Engine, c: cmd.Upload | cmd.Download, verb: str) -> list[int]:
    """The partitions an UPLOAD or DOWNLOAD (verb) acts on, checked (errors before any
    work)."""
    out = []
    for slot in _targets(engine, c, verb):
        s = engine.partitions.slot(slot)
        if not engine.storage_of(slot).cloud:
            if c.if_cloud:
                continue
            what = "storage has" if verb == "upload" else "has"  # the original's words
            raise MonotoneError(f"{verb}: partition '{s.min}' {what} no associated cloud")
        if verb == "upload" and not s.places:
            raise MonotoneError(f"upload: partition '{s.min}' file does not exist locally")
        out.append(slot)
    return out


def upload_one(engine: Engine, slot: int, offload: bool = False):
    """The upload of a partition (cloud_tier.upload), as a task claiming it."""
    return engine.claims.claimed(slot, "upload",
                                 lambda: cloud_tier.upload(engine, slot, offload))


def download_one(engine: Engine, slot: int):
    """The download of a partition, as a task claiming it."""
    return engine.claims.claimed(slot, "download", lambda: cloud_tier.download(engine, slot))


def upload_partitions(engine: Engine, c: cmd.Upload):
    """UPLOAD, run here (with upload workers the coordinator schedules each
    partition's upload instead, and answers at once)."""
    for slot in transfer_targets(engine, c, "upload"):
        yield from upload_one(engine, slot)


def download_partitions(engine: Engine, c: cmd.Download):
    """DOWNLOAD, run here (with upload workers: as UPLOAD)."""
    for slot in transfer_targets(engine, c, "download"):
        yield from download_one(engine, slot)


def rebalance_now(engine: Engine, c: cmd.Rebalance):
    yield from rebalance(engine)
    collect_wal(engine)


def rebalance(engine: Engine):
    """Apply the pipeline's retention until nothing more moves; return how many moved."""
    moved = 0
    while True:
        step = _rebalance_step(engine)
        if step is None:
            return moved
        yield from step
        moved += 1


def _rebalance_step(engine: Engine):
    """The next move or drop retention calls for (a task to run), or None."""
    pipeline = engine.catalog.pipeline
    now = int(time.time() * 1e6)
    for i, tier in enumerate(pipeline):
        storage = engine.catalog.need_storage(tier.name)
        slots = engine.partitions.in_storage(storage)
        if not slots:
            continue
        parts = [engine.partitions.slot(s) for s in slots]
        first = min(range(len(parts)), key=lambda j: (parts[j].created, parts[j].min))
        oldest = slots[first]
        over = ((tier.partitions >= 0 and len(parts) > tier.partitions)
                or (tier.size >= 0 and sum(p.file_size for p in parts) > tier.size)
                or (tier.events >= 0 and sum(p.file_events for p in parts) > tier.events)
                or (tier.duration >= 0 and now - parts[first].created >= tier.duration))
        if not over:
            continue
        if i + 1 < len(pipeline):
            return refresher.refresh(engine, oldest,
                                     engine.catalog.need_storage(pipeline[i + 1].name))
        return drop_partition(engine, oldest)
    return None


# checkpoint and WAL
def checkpoint(engine: Engine):
    """Refresh every partition with events in memory, one after another."""
    for slot in engine.partitions.in_memory():
        yield from refresher.refresh(engine, slot)
    collect_wal(engine)


def collect_wal(engine: Engine) -> int:
    """Delete WAL files whose events are all in partition files."""
    needed = engine.lsn_needed()
    engine.pmap.wal_needed = needed  # writers drop their own files below it
    if not os.path.isdir(engine.layout.wal):
        return 0
    return wal_files.gc(engine.layout.wal, needed)
