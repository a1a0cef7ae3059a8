"""Executing parsed commands in the coordinator: one handler per command type."""
from __future__ import annotations

import os
import time

from monotone import faults
from .catalog import (MAIN, Cloud, Storage, apply_cloud_options, apply_storage_options,
                              make_tier)
from monotone.ddl import commands as cmd
from monotone.errors import MonotoneError, PartitionNotFound
from monotone.format import wal as walfmt
from monotone.shm.locks import SEQUENCE, Held

from . import refresh as refresher
from . import wal_files
from .engine import Engine
from .show import show

CLOUD_LATER = ("cloud-backed storages are not available yet: clouds can be defined, but "
               "attaching one to a storage, UPLOAD and DOWNLOAD come in a later version")


# config
def _set(engine: Engine, c: cmd.Set) -> None:
    with engine.changing():
        engine.config.set(c.name, c.value, opened=True)
        if c.name == "ssn":
            engine.pmap.ssn = engine.config.ssn


# storages
def _storage_empty(engine: Engine, storage: Storage) -> bool:
    return not engine.slots_in(storage)


def _check_cloud(engine: Engine, storage: Storage) -> None:
    if storage.cloud:
        if engine.catalog.cloud(storage.cloud) is None:
            raise MonotoneError(f"storage '{storage.name}': cloud '{storage.cloud}' not exists")
        raise MonotoneError(f"storage '{storage.name}': {CLOUD_LATER}")


def _existing(found, kind: str, c):
    """A storage or cloud a command names; None (nothing to do) when it is not
    there and the command says IF EXISTS."""
    if found is None and not c.if_exists:
        raise MonotoneError(f"{kind} '{c.name}': not exists")
    return found


def _create_storage(engine: Engine, c: cmd.CreateStorage) -> None:
    catalog = engine.catalog
    if catalog.storage(c.name) is not None:
        if c.if_not_exists:
            return
        raise MonotoneError(f"storage '{c.name}': already exists")
    storage = catalog.new_storage(c.name)
    storage.compression = engine.config.compression
    storage.compression_level = engine.config.compression_level
    apply_storage_options(storage, c.options, "CREATE STORAGE", creating=True)
    _check_cloud(engine, storage)
    if any(s.uuid == storage.uuid for s in catalog.storages):
        raise MonotoneError(f"storage '{c.name}': uuid '{storage.uuid}' is used by another storage")
    with engine.changing():
        engine.catalog.storages.append(storage)


def _alter_storage(engine: Engine, c: cmd.AlterStorage) -> None:
    catalog = engine.catalog
    storage = _existing(catalog.storage(c.name), "storage", c)
    if storage is None:
        return
    if c.rename is not None:
        if storage.name == MAIN:
            raise MonotoneError(f"storage '{MAIN}': main storage cannot be renamed")
        if catalog.storage(c.rename) is not None:
            raise MonotoneError(f"storage '{c.rename}': already exists")
        with engine.changing():
            for tier in engine.catalog.pipeline:
                if tier.name == storage.name:
                    tier.name = c.rename
            engine.catalog.need_storage(storage.name).name = c.rename
        return
    updated = storage.__class__(**vars(storage))
    changed = apply_storage_options(updated, c.options, "ALTER STORAGE", creating=False)
    fixed = changed & {"crc", "path", "encryption", "encryption_key"}
    if fixed and not _storage_empty(engine, storage):
        raise MonotoneError(f"storage '{storage.name}': storage is not empty "
                            f"({', '.join(sorted(fixed))} can change only while it is)")
    if "cloud" in changed:
        _check_cloud(engine, updated)
    old_directory = engine.directory(storage)
    with engine.changing():
        vars(engine.catalog.need_storage(storage.name)).update(vars(updated))
    if engine.directory(updated) != old_directory:
        _remove_dir(old_directory)


def _drop_storage(engine: Engine, c: cmd.DropStorage) -> None:
    catalog = engine.catalog
    storage = _existing(catalog.storage(c.name), "storage", c)
    if storage is None:
        return
    if storage.name == MAIN:
        raise MonotoneError(f"storage '{MAIN}': main storage cannot be dropped")
    if any(t.name == storage.name for t in catalog.pipeline):
        raise MonotoneError(f"storage '{storage.name}': has dependencies (it is in the pipeline)")
    if not _storage_empty(engine, storage):
        raise MonotoneError(f"storage '{storage.name}': has partitions")
    with engine.changing():
        engine.catalog.storages = [s for s in engine.catalog.storages if s.name != storage.name]
    _remove_dir(engine.directory(storage))


def _remove_dir(directory: str) -> None:
    try:
        os.rmdir(directory)
    except OSError:
        pass  # not empty (files a user put there) or already gone


# clouds
def _create_cloud(engine: Engine, c: cmd.CreateCloud) -> None:
    catalog = engine.catalog
    if catalog.cloud(c.name) is not None:
        if c.if_not_exists:
            return
        raise MonotoneError(f"cloud '{c.name}': already exists")
    cloud = Cloud(c.name)
    apply_cloud_options(cloud, c.options, "CREATE CLOUD", creating=True)
    with engine.changing():
        engine.catalog.clouds.append(cloud)


def _alter_cloud(engine: Engine, c: cmd.AlterCloud) -> None:
    catalog = engine.catalog
    cloud = _existing(catalog.cloud(c.name), "cloud", c)
    if cloud is None:
        return
    if c.rename is not None:
        if catalog.cloud(c.rename) is not None:
            raise MonotoneError(f"cloud '{c.rename}': already exists")
        with engine.changing():
            for storage in engine.catalog.storages:
                if storage.cloud == cloud.name:
                    storage.cloud = c.rename
            engine.catalog.cloud(cloud.name).name = c.rename
        return
    updated = Cloud(**vars(cloud))
    apply_cloud_options(updated, c.options, "ALTER CLOUD", creating=False)
    with engine.changing():
        vars(engine.catalog.cloud(cloud.name)).update(vars(updated))


def _drop_cloud(engine: Engine, c: cmd.DropCloud) -> None:
    catalog = engine.catalog
    cloud = _existing(catalog.cloud(c.name), "cloud", c)
    if cloud is None:
        return
    if any(s.cloud == cloud.name for s in catalog.storages):
        raise MonotoneError(f"cloud '{cloud.name}': has dependencies (a storage uses it)")
    with engine.changing():
        engine.catalog.clouds = [x for x in engine.catalog.clouds if x.name != cloud.name]


# partitions
def _create_partition(engine: Engine, c: cmd.CreatePartition) -> None:
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


def _refresh(engine: Engine, c: cmd.Refresh):
    for slot in _targets(engine, c, "refresh"):
        yield from refresher.refresh(engine, slot)
    collect_wal(engine)


def _move(engine: Engine, c: cmd.Move):
    target = engine.catalog.storage(c.into)
    if target is None:
        raise MonotoneError(f"move: storage '{c.into}' not found")
    for slot in _targets(engine, c, "move"):
        if engine.storage_of(slot).id != target.id:
            yield from refresher.refresh(engine, slot, target)
    collect_wal(engine)


def _drop(engine: Engine, c: cmd.Drop):
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


def _upload_download(engine: Engine, c) -> None:
    verb = "upload" if isinstance(c, cmd.Upload) else "download"
    for slot in _targets(engine, c, verb):
        if not c.if_cloud:
            raise MonotoneError(f"{verb}: partition '{engine.pmap.slot(slot).min}' "
                                f"storage has no associated cloud ({CLOUD_LATER})")


# pipeline
def _alter_pipeline(engine: Engine, c: cmd.AlterPipeline) -> None:
    tiers = []
    for t in c.tiers:
        engine.catalog.need_storage(t.storage)
        if any(x.name == t.storage for x in tiers):
            raise MonotoneError(f"ALTER PIPELINE: storage '{t.storage}' is named twice")
        tiers.append(make_tier(t.storage, t.options))
    with engine.changing():
        engine.catalog.pipeline = tiers


def _rebalance(engine: Engine, c: cmd.Rebalance):
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
def _checkpoint(engine: Engine, c: cmd.Checkpoint):
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


HANDLERS = {
    cmd.Set: _set, cmd.Show: show,
    cmd.CreateStorage: _create_storage, cmd.AlterStorage: _alter_storage,
    cmd.DropStorage: _drop_storage,
    cmd.CreateCloud: _create_cloud, cmd.AlterCloud: _alter_cloud, cmd.DropCloud: _drop_cloud,
    cmd.CreatePartition: _create_partition, cmd.Refresh: _refresh, cmd.Move: _move,
    cmd.Drop: _drop, cmd.Upload: _upload_download, cmd.Download: _upload_download,
    cmd.AlterPipeline: _alter_pipeline, cmd.Rebalance: _rebalance, cmd.Checkpoint: _checkpoint,
}
