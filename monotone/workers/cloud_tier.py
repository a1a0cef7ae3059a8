"""The cloud tier: a partition's copies on its storage and in the storage's cloud.

A partition file has a local copy, a cloud copy (object and local stub), or
both; the slot's `places` says which, and readers choose by it (the local
copy first). Each step here is a task step on a claimed partition:

  upload           TransferJob (stub, object, stub renamed), then ON_CLOUD is set
                   and the manifest rewritten; an offload (after a refresh, or
                   resumed at start) then drops the local copy if the storage
                   says cloud_drop_local
  download         TransferJob (object to <min>.incomplete, renamed), then
                   ON_STORAGE is set
  drop cloud copy  ON_CLOUD cleared under PUBLISH (no new reader chooses it),
                   the stub renamed to .cloud.drop, then a TransferJob removes
                   the object and the marker
  drop local copy  ON_STORAGE cleared under PUBLISH, the file removed (readers
                   that opened it keep reading it)
A crash between any two steps leaves files that recovery reads back into one
of the states before or after (partition/files.py says how). The network parts run
in upload workers; the coordinator only renames, unlinks and flips bits.

Each cloud storage keeps a manifest in its cloud (manifest.json: its
partitions, their objects, sizes, codec, whether encrypted; never a key), for
readers with no coordinator (monotone.dask, other machines). It is rewritten
after an upload and before an object is removed, so it never names an object
that is not there; writes of one storage's manifest never overlap, and each
says what the partition map says at that moment. Recovery may leave it
behind by one step; the coordinator rewrites it after it starts (in the
background, or at SERVICE without upload workers).
"""
from __future__ import annotations

import logging
import time

from monotone import faults
from monotone.cloud import manifest, objects_of
from monotone.errors import MonotoneError
from monotone.jsonout import size_text
from monotone.partition.files import file_name
from monotone.settings import Storage
from monotone.shm.partition_map import ON_CLOUD, ON_STORAGE

from .claims import Manifest, Removal, Wait
from .engine import Engine
from .transfer import DOWNLOAD, DROP, MANIFEST, UPLOAD, TransferJob

log = logging.getLogger("monotone")



def _job(engine: Engine, slot: int, kind: str) -> TransferJob:
    storage = engine.storage_of(slot)
    return TransferJob(kind, engine.partitions.slot(slot).min, engine.store(storage),
                       engine.syncs(storage), sorted(faults.switched(engine.config.values)))


def upload(engine: Engine, slot: int, offload: bool = False):
    """Copy the partition's local file into its storage's cloud, if it is not there
    yet: every upload comes here (UPLOAD, the end of a refresh, an upload resumed at
    start). An offload is the storage's own doing (the last two): nothing when the
    storage has no cloud or the file no local copy, and the local copy dropped after
    when the storage says cloud_drop_local."""
    storage = engine.storage_of(slot)
    s = engine.partitions.slot(slot)
    if offload and not (storage.cloud and s.places & ON_STORAGE):
        return
    if not s.places & ON_CLOUD:
        if not s.places & ON_STORAGE:
            raise MonotoneError(f"upload: partition '{s.min}' file does not exist locally")
        yield from engine.claims.wait(Removal(storage.id, s.min))
        start = time.monotonic()
        yield _job(engine, slot, UPLOAD)
        faults.point("upload.done")
        engine.partitions.set_places(slot, add=ON_CLOUD)
        log.info("upload partition %d: %s to cloud %s, %.3f s", s.min,
                 size_text(s.file_size), storage.cloud, time.monotonic() - start)
        yield from write_manifest(engine, storage)
    if offload and storage.cloud_drop_local:
        drop_local_copy(engine, slot)


def download(engine: Engine, slot: int):
    """Copy the partition's cloud object back as its local file (if not there)."""
    s = engine.partitions.slot(slot)
    if s.places & ON_STORAGE or not s.places & ON_CLOUD:
        return
    start = time.monotonic()
    yield _job(engine, slot, DOWNLOAD)
    faults.point("download.done")
    engine.partitions.set_places(slot, add=ON_STORAGE)
    log.info("download partition %d: %s from cloud %s, %.3f s", s.min, size_text(s.file_size),
             engine.storage_of(slot).cloud, time.monotonic() - start)


def drop_cloud_copy(engine: Engine, slot: int, keep_object: bool = False):
    """Remove the partition's cloud copy (and an object an earlier drop left).

    keep_object: only the copy goes (no reader chooses it, the manifest no longer
    names it); its object stays behind its .cloud.drop marker for the upload that
    follows a refresh in place, which sends only what the refresh appended (an
    upload, DROP PARTITION or the next open removes it otherwise)."""
    s = engine.partitions.slot(slot)
    storage = engine.storage_of(slot)
    files = engine.files(storage)
    if s.places & ON_CLOUD:
        engine.partitions.set_places(slot, remove=ON_CLOUD)
        log.info("drop partition %d on cloud %s", s.min, storage.cloud)
        files.drop_stub(s.min)
        faults.point("cloud.dropping")
        yield from write_manifest(engine, storage)
    if files.objects is not None and files.dropping(s.min) and not keep_object:
        yield _job(engine, slot, DROP)


def finish_drops(engine: Engine, storage: Storage):
    """Remove the objects whose removal was cut short (their .cloud.drop markers),
    left by recovery for after the open. All of them are claimed at once, in the
    task's first step (Removal): no upload of a partition of the same min puts a
    new object while an old removal is pending. The manifest goes first (it may
    name them)."""
    files = engine.files(storage)
    keys = [Removal(storage.id, min_) for min_ in files.pending_drops()]
    while (held := next((k for k in keys if k in engine.claims), None)) is not None:
        yield Wait(held)
    for key in keys:
        engine.claims.claim(key, "cloud drop")
    try:
        yield from engine.claims.wait(Manifest(storage.id))
        for key in keys:
            if files.dropping(key.min):
                yield TransferJob(DROP, key.min, engine.store(storage), engine.syncs(storage))
    finally:
        for key in keys:
            engine.claims.release(key)


def drop_local_copy(engine: Engine, slot: int) -> None:
    s = engine.partitions.slot(slot)
    storage = engine.storage_of(slot)
    engine.partitions.set_places(slot, remove=ON_STORAGE)
    log.info("drop partition %d on storage %s (its cloud copy stays)", s.min, storage.name)
    faults.point("local.dropping")
    engine.files(storage).drop_local(s.min)


def waiting_upload(engine: Engine) -> list[int]:
    """Partitions of storages with a cloud whose file has no cloud copy yet (an
    upload that failed or was cut short: resumed in the background)."""
    return [slot for slot in engine.partitions.live()
            if engine.partitions.slot(slot).places == ON_STORAGE
            and engine.storage_of(slot).cloud]


def manifest_of(engine: Engine, storage: Storage) -> bytes:
    """The manifest of a cloud storage as the partition map says it now."""
    parts = []
    for slot in engine.partitions.in_storage(storage):
        s = engine.partitions.slot(slot)
        if s.places & ON_CLOUD:
            parts.append({"min": s.min, "max": s.max, "object": file_name(s.min),
                          "size": s.file_size, "events": s.file_events, "regions": s.regions,
                          "lsn": s.file_lsn, "created": s.created, "refreshes": s.refreshes})
    return manifest.encode(storage, parts)


def write_manifest(engine: Engine, storage: Storage):
    """Rewrite a cloud storage's manifest (one write at a time per storage)."""
    if not storage.cloud:
        return
    key = Manifest(storage.id)
    yield from engine.claims.wait(key)
    with engine.claims.holding(key, "manifest"):
        content = manifest_of(engine, storage).decode()
        yield TransferJob(MANIFEST, 0, engine.store(storage), engine.syncs(storage),
                          content=content)


def manifest_url(engine: Engine, storage: Storage) -> str | None:
    """Where a cloud storage's manifest is, as an fsspec URL."""
    objects = objects_of(engine.store(storage))
    return objects.url(manifest.NAME) if objects is not None else None
