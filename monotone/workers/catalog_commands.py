"""Commands that change the catalog: config, storages, clouds, the pipeline.

Each runs under the CATALOG lock (no partition work runs meanwhile) and goes
through Engine.changing(): checked, applied (directories made), then persisted.
What needs the cloud (a storage's bucket made or removed) is a transfer
(transfer.py: in an upload worker), during which the lock is not held: the
command checks again after it that what it changes is as it was.

Partition work whose cloud transfer is in flight holds no lock either (tasks.py),
only its claims; a change that would take its storage's cloud, or its cloud's
address, from under it is refused while those are held.
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace

from monotone.cloud import Cloud, objects_of
from monotone.ddl import commands as cmd
from monotone.errors import MonotoneError
from monotone.settings import CloudSettings, Place, Storage
from monotone.shm.partition_map import ON_CLOUD

from . import cloud_tier
from .catalog import (
    MAIN,
    apply_cloud_options,
    apply_storage_options,
    check_pipeline,
    make_tier,
)
from .engine import Engine
from .transfer import ATTACH, DETACH, TransferJob

log = logging.getLogger("monotone")


# config
def set_config(engine: Engine, c: cmd.Set) -> None:
    with engine.changing():
        engine.set(c.name, c.value, opened=True)
        if c.name == "ssn":
            engine.pmap.ssn = engine.config.ssn


# storages
def _storage_empty(engine: Engine, storage: Storage) -> bool:
    return not engine.partitions.in_storage(storage)


def _objects(engine: Engine, storage: Storage) -> Cloud | None:
    """The storage's objects in its cloud (None: it has none, or its cloud is gone)."""
    if not storage.cloud or engine.catalog.cloud(storage.cloud) is None:
        return None
    return objects_of(engine.catalog.place(storage, engine.layout.base))


def _attach_cloud(engine: Engine, storage: Storage):
    """A task step: the storage's place in its cloud (bucket) is made, with its
    first manifest, when the cloud is attached; refused after when the cloud was
    changed meanwhile (the bucket was made where it no longer points)."""
    if storage.cloud:
        if _objects(engine, storage) is None:
            raise MonotoneError(f"storage '{storage.name}': cloud '{storage.cloud}' not exists")
        place = engine.store(storage)
        yield TransferJob(ATTACH, 0, place, engine.syncs(storage),
                          content=cloud_tier.manifest_of(engine, storage).decode())
        if engine.catalog.cloud(storage.cloud) != place.cloud:
            raise MonotoneError(f"cloud '{storage.cloud}': changed by another command "
                                "meanwhile: try again")


def _detach_cloud(engine: Engine, storage: Storage, place: Place | None):
    """A task step: the storage's place in its cloud goes, if empty (best effort, as
    the original; place: where it was, None without a cloud)."""
    if place is None or place.cloud is None:
        return
    try:
        yield TransferJob(DETACH, 0, place, engine.syncs(storage))
    except MonotoneError as e:
        log.warning("storage '%s': its place in cloud '%s' stays: %s", storage.name,
                    place.cloud.name, e)


def _idle(engine: Engine, storage: Storage) -> None:
    """Refuse while a task works on the storage's partitions, objects or manifest
    (a cloud transfer in flight: it holds claims, not the lock)."""
    why = engine.claims.of_storage(storage.id, engine.partitions.in_storage(storage))
    if why is not None:
        raise MonotoneError(f"storage '{storage.name}': busy ({why} under way): "
                            "try again when it ends")


def _unchanged(engine: Engine, storage: Storage) -> None:
    """After a step without the lock: the storage is still as the command found it."""
    if engine.catalog.storage(storage.name) != storage:
        raise MonotoneError(f"storage '{storage.name}': changed by another command "
                            "meanwhile: try again")


def _existing(found, kind: str, c):
    """A storage or cloud a command names; None (nothing to do) when it is not
    there and the command says IF EXISTS."""
    if found is None and not c.if_exists:
        raise MonotoneError(f"{kind} '{c.name}': not exists")
    return found


def create_storage(engine: Engine, c: cmd.CreateStorage) -> None:
    catalog = engine.catalog
    if catalog.storage(c.name) is not None:
        if c.if_not_exists:
            return
        raise MonotoneError(f"storage '{c.name}': already exists")
    storage = replace(catalog.new_storage(c.name), compression=engine.config.compression,
                      compression_level=engine.config.compression_level)
    storage, _ = apply_storage_options(storage, c.options, "CREATE STORAGE", creating=True)
    if any(s.uuid == storage.uuid for s in catalog.storages):
        raise MonotoneError(f"storage '{c.name}': uuid '{storage.uuid}' is used by another storage")
    yield from _attach_cloud(engine, storage)
    if engine.catalog.storage(c.name) is not None or \
            any(s.uuid == storage.uuid for s in engine.catalog.storages):
        raise MonotoneError(f"storage '{c.name}': created by another command meanwhile")
    with engine.changing():
        engine.catalog.storages.append(storage)


def alter_storage(engine: Engine, c: cmd.AlterStorage) -> None:
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
            engine.catalog.pipeline = [replace(t, name=c.rename) if t.name == storage.name
                                       else t for t in engine.catalog.pipeline]
            engine.catalog.put_storage(replace(storage, name=c.rename))
        return
    updated, changed = apply_storage_options(storage, c.options, "ALTER STORAGE",
                                             creating=False)
    _may_alter(engine, storage, updated, changed)
    if updated.cloud != storage.cloud:
        yield from _attach_cloud(engine, updated)
        _unchanged(engine, storage)
        _may_alter(engine, storage, updated, changed)  # partitions may have come meanwhile
    old_directory = engine.directory(storage)
    old_place = engine.store(storage) if storage.cloud else None
    with engine.changing():
        engine.catalog.put_storage(updated)
    if updated.cloud != storage.cloud:
        yield from _detach_cloud(engine, storage, old_place)
    if engine.directory(updated) != old_directory:
        _remove_dir(old_directory)


def _may_alter(engine: Engine, storage: Storage, updated: Storage, changed: set) -> None:
    """What ALTER STORAGE may not change while the storage holds what it holds."""
    if updated.cloud != storage.cloud:
        if any(engine.partitions.slot(s).places & ON_CLOUD
               for s in engine.partitions.in_storage(storage)):
            raise MonotoneError(f"storage '{storage.name}': some partitions are still on the "
                                "cloud (DROP PARTITIONS ... ON CLOUD first)")
        _idle(engine, storage)
    if changed & {"crc", "path", "encryption", "encryption_key"} and \
            not _storage_empty(engine, storage):
        # crc, path, encryption and its key change only while the storage is empty
        raise MonotoneError(f"storage '{storage.name}': storage is not empty")


def drop_storage(engine: Engine, c: cmd.DropStorage) -> None:
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
    _idle(engine, storage)
    objects = _objects(engine, storage)
    place = engine.store(storage) if objects is not None else None
    directory = engine.directory(storage)
    with engine.changing():
        engine.catalog.storages = [s for s in engine.catalog.storages if s.name != storage.name]
    if objects is not None:
        yield from _detach_cloud(engine, storage, place)
        if objects.local_directory:  # inside the storage's own directory
            _remove_dir(objects.root)
    _remove_dir(directory)


def _remove_dir(directory: str) -> None:
    try:
        os.rmdir(directory)
    except OSError:
        pass  # not empty (files a user put there) or already gone


# clouds
def create_cloud(engine: Engine, c: cmd.CreateCloud) -> None:
    catalog = engine.catalog
    if catalog.cloud(c.name) is not None:
        if c.if_not_exists:
            return
        raise MonotoneError(f"cloud '{c.name}': already exists")
    cloud = apply_cloud_options(CloudSettings(c.name), c.options, "CREATE CLOUD", creating=True)
    with engine.changing():
        engine.catalog.clouds.append(cloud)


def alter_cloud(engine: Engine, c: cmd.AlterCloud) -> None:
    catalog = engine.catalog
    cloud = _existing(catalog.cloud(c.name), "cloud", c)
    if cloud is None:
        return
    if c.rename is not None:
        if catalog.cloud(c.rename) is not None:
            raise MonotoneError(f"cloud '{c.rename}': already exists")
        with engine.changing():
            engine.catalog.storages = [replace(s, cloud=c.rename) if s.cloud == cloud.name
                                       else s for s in engine.catalog.storages]
            engine.catalog.put_cloud(cloud.name, replace(cloud, name=c.rename))
        return
    updated = apply_cloud_options(cloud, c.options, "ALTER CLOUD", creating=False)
    if _address(updated) != _address(cloud):
        for storage in catalog.storages:
            if storage.cloud == cloud.name:
                _idle(engine, storage)
    with engine.changing():
        engine.catalog.put_cloud(cloud.name, updated)


def _address(cloud: CloudSettings) -> tuple:
    """What says where a cloud's objects are and who reaches them."""
    return cloud.type, cloud.url, cloud.login, cloud.password, cloud.options


def drop_cloud(engine: Engine, c: cmd.DropCloud) -> None:
    catalog = engine.catalog
    cloud = _existing(catalog.cloud(c.name), "cloud", c)
    if cloud is None:
        return
    if any(s.cloud == cloud.name for s in catalog.storages):
        raise MonotoneError(f"cloud '{cloud.name}': has dependencies (a storage uses it)")
    with engine.changing():
        engine.catalog.clouds = [x for x in engine.catalog.clouds if x.name != cloud.name]


# pipeline
def alter_pipeline(engine: Engine, c: cmd.AlterPipeline) -> None:
    tiers = [make_tier(t.storage, t.options) for t in c.tiers]
    check_pipeline(tiers)  # before the storages are looked up, as the original
    for tier in tiers:
        engine.catalog.need_storage(tier.name)
    with engine.changing():
        engine.catalog.pipeline = tiers
