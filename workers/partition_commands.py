"""Commands on partitions: create, refresh, move, drop, upload/download, the
pipeline's retention, checkpoint, and collecting the WAL after them.

The multi-step ones are generators (tasks.py) run under the PARTITIONS lock,
each claiming the partitions it works on.
"""
from __future__ import annotations

import os
import time

from monotone import faults
from monotone.ddl import commands as cmd
from monotone.errors import MonotoneError, PartitionNotFound
from monotone.format import wal as walfmt
from monotone.shm.locks import SEQUENCE, Held

from . import refresh as refresher
from . import wal_files
from .catalog_commands import CLOUD_LATER
from .engine import Engine


# partitions
def create_partition(engine: Engine, c: cmd.CreatePartition) -> None:
    hi = c.max if c.max is not None else min(c.min + engine.config.interval, 2**64 - 1)
    if c.min > hi:
        raise MonotoneError(f"fill: invalid partition interval [{c.min}, {hi}]")
    engine.fill(c.min, hi)


def _targets(engine: Engine, c: cmd.PartitionCommand, verb: str) -> list[int]:
    """The slots a partition command acts on (the original's single/range rules)."""
    if c.single:
        slot = engine.partition_of(c.min)
        if slot is None:
            if c.if_exists:
                return []
            raise PartitionNotFound(f"{verb}: partition '{c.min}' not found")
        return [slot]
    return engine.range_slots(c.min, c.max)


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
        elif c.single:  # nothing is on a cloud yet: either copy would be the only one
            where = "cloud" if c.on == "cloud" else "storage (its only copy)"
            raise MonotoneError(f"drop: partition '{c.min}' has no copy on cloud: "
                                f"cannot drop it on {where}")
    collect_wal(engine)


def drop_partition(engine: Engine, slot: int):
    """Drop a partition: a WAL record first (so recovery does not bring it back),
    then the slot, the memtables and the files."""
    if not (yield from refresher.claim(engine, slot)):
        return
    try:
        _drop_claimed(engine, slot)
    finally:
        engine.busy.discard(slot)


def _drop_claimed(engine: Engine, slot: int) -> None:
    s = engine.pmap.slot(slot)
    lo, hi = s.min, s.max
    with engine.shared.locked([slot]):
        if engine.config.wal:
            with Held(engine.locks, SEQUENCE):
                lsn = engine.pmap.bump("lsn")
            cfg = engine.config
            engine.wal.append_record(lsn, walfmt.encode_drop(lsn, engine.pmap.ssn, lo, hi),
                                     sync=True, rotate_wm=cfg.wal_rotate_wm,
                                     sync_on_rotate=cfg.wal_sync_on_rotate)
        faults.point("drop.logged")
        files = engine.files(engine.storage_of(slot)) if s.gen else None
        with engine.shared.publishing():
            engine.forget_partition(slot)
    if files is not None:
        files.remove(lo)
    for storage in engine.catalog.storages:  # and what a refresh left half done
        engine.files(storage).discard(lo)


def transfer(engine: Engine, c) -> None:
    verb = "upload" if isinstance(c, cmd.Upload) else "download"
    for slot in _targets(engine, c, verb):
        if not c.if_cloud:
            raise MonotoneError(f"{verb}: partition '{engine.pmap.slot(slot).min}' "
                                f"storage has no associated cloud ({CLOUD_LATER})")


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
        slots = engine.slots_in(storage)
        if not slots:
            continue
        parts = [engine.pmap.slot(s) for s in slots]
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
def checkpoint_now(engine: Engine, c: cmd.Checkpoint):
    return checkpoint(engine)


def in_memory(engine: Engine) -> list[int]:
    """The partitions with events in memtables."""
    pmap = engine.pmap
    return [slot for slot in pmap.live().tolist()
            if (s := pmap.slot(slot)).rows or s.frozen or s.lsn_min]


def checkpoint(engine: Engine):
    """Refresh every partition with events in memory, one after another."""
    for slot in in_memory(engine):
        yield from refresher.refresh(engine, slot)
    collect_wal(engine)


def collect_wal(engine: Engine) -> int:
    """Delete WAL files whose events are all in partition files."""
    needed = engine.lsn_needed()
    engine.pmap.wal_needed = needed  # writers drop their own files below it
    if not os.path.isdir(engine.layout.wal):
        return 0
    return wal_files.gc(engine.layout.wal, needed)
