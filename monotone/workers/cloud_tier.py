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
                   its object retired (the stub renamed to its .cloud.drop
                   marker), the manifest rewritten
  drop local copy  ON_STORAGE cleared under PUBLISH, the file removed (readers
                   that opened it keep reading it)
  remove retired   a TransferJob per object retired at least the cloud's
                   removal_delay ago: the object, then its marker. After a drop
                   and an upload (at once with no delay), and in the background
                   when the next one is due (engine.removal_due)
A crash between any two steps leaves files that recovery reads back into one
of the states before or after (partition/files.py says how). The network parts run
in upload workers; the coordinator only renames, unlinks and flips bits.

Each cloud storage keeps a manifest in its cloud (a version per write and a
pointer to the last, cloud/manifest.py: its partitions, their objects, sizes,
codec, whether encrypted; never a key), for readers with no coordinator
(monotone.dask, other machines). It is rewritten after an upload and after an
object is retired, so it names no object retired more than removal_delay
ago; writes of one storage's manifest never overlap, and each says what the
partition map says at that moment. Recovery may leave it behind by one step;
the coordinator rewrites it after it starts (in the background, or at SERVICE
without upload workers), before any object is removed.
"""
from __future__ import annotations

import logging
import time

from monotone import faults
from monotone.cloud import manifest, objects_of
from monotone.errors import MonotoneError
from monotone.jsonout import size_text
from monotone.partition.files import CLOUD, CLOUD_DROP, file_name
from monotone.settings import Storage
from monotone.shm.partition_map import ON_CLOUD, ON_STORAGE

from .claims import Manifest, Removal
from .engine import Engine
from .transfer import DOWNLOAD, DROP, MANIFEST, UPLOAD, TransferJob

log = logging.getLogger("monotone")
RECHECK = 5.0  # seconds until a removal passed over (its partition busy) is looked at again
RETRY = 60.0   # seconds until a removal that failed (the cloud away) is tried again



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
        yield from remove_retired(engine, storage, s.min, held=slot)
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
    """Remove the partition's cloud copy: its object is retired (no reader chooses
    it, the manifest no longer names it) and removed once removal_delay has passed.

    keep_object: not even then here (a refresh in place: the upload that follows
    sends only what the refresh appended, copying the rest from it, and removes
    what is due after)."""
    s = engine.partitions.slot(slot)
    storage = engine.storage_of(slot)
    files = engine.files(storage)
    if s.places & ON_CLOUD:
        engine.partitions.set_places(slot, remove=ON_CLOUD)
        log.info("drop partition %d on cloud %s", s.min, storage.cloud)
        files.drop_stub(s.min)
        faults.point("cloud.dropping")
        if (storage.id, s.min) not in engine.listed:  # else named until it is unlisted
            yield from write_manifest(engine, storage)
    if not keep_object:
        yield from remove_retired(engine, storage, s.min, held=slot)


def remove_retired(engine: Engine, storage: Storage, min_: int | None = None,
                   held: int | None = None):
    """Remove the objects the storage (its partition min_, or all of them) retired,
    that its current manifest does not name and that left it at least its cloud's
    removal_delay ago (their markers' time), then their markers; when the others
    are due is noted for the background (engine.removal_due).

    A manifest rewrite under way ends first, and with none written since the open
    one is written first (the manifest in the cloud may name what recovery retired):
    when that fails, nothing is removed. Each partition's removals are claimed
    (Removal): an upload of the same min waits for them rather than see its object
    removed. A partition another task holds is passed over (held: the slot this task
    holds itself). A removal that fails is tried again RETRY seconds later."""
    files = engine.files(storage)
    if files.objects is None:
        return
    yield from engine.claims.wait(Manifest(storage.id))
    if storage.id not in engine.published:
        yield from write_manifest(engine, storage)
    named = engine.published.get(storage.id)
    if named is None:  # the catalog changed meanwhile: the next removal looks again
        _note_due(engine, storage, [time.time() + RECHECK], whole=False)
        return
    now = time.time()
    due: dict[int, list[str]] = {}
    later = []
    for object_, when in files.retired():
        m = int(object_[:20])
        if min_ is not None and m != min_ or object_ in named:
            continue  # (one still named is looked at when a manifest no longer names it)
        slot = engine.partitions.find(m)
        if when + files.delay > now:
            later.append(when + files.delay)
        elif slot is not None and slot != held and slot in engine.claims or \
                Removal(storage.id, m) in engine.claims:
            later.append(now + RECHECK)  # its task, or another removal, is on it
        else:
            due.setdefault(m, []).append(object_)
    keys = [Removal(storage.id, m) for m in sorted(due)]
    for key in keys:
        engine.claims.claim(key, "cloud drop")
    try:
        for key in keys:
            for object_ in due[key.min]:
                try:
                    yield TransferJob(DROP, key.min, engine.store(storage),
                                      engine.syncs(storage), content=object_)
                except MonotoneError as e:
                    log.warning("%s", e)
                    later.append(time.time() + RETRY)
    finally:
        for key in keys:
            engine.claims.release(key)
    _note_due(engine, storage, later, whole=min_ is None)


def _note_due(engine: Engine, storage: Storage, times: list[float], whole: bool) -> None:
    """When the storage's next removal is due (whole: all its retired objects were
    looked at, else only some: an earlier time noted stands)."""
    earliest = min(times, default=None)
    noted = None if whole else engine.removal_due.get(storage.id)
    if noted is not None and (earliest is None or noted < earliest):
        earliest = noted
    if earliest is None:
        engine.removal_due.pop(storage.id, None)
    else:
        engine.removal_due[storage.id] = earliest


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


def _entry(engine: Engine, storage: Storage, slot: int) -> dict:
    """A partition's cloud copy as its storage's manifest names it."""
    s = engine.partitions.slot(slot)
    return {"min": s.min, "max": s.max, "object": engine.files(storage).object_of(s.min),
            "size": s.file_size, "events": s.file_events, "regions": s.regions,
            "lsn": s.file_lsn, "created": s.created, "refreshes": s.refreshes}


def manifest_of(engine: Engine, storage: Storage) -> bytes:
    """The manifest of a cloud storage as the partition map says it now, with the
    copies kept listed while their partition is rewritten (keep_listed)."""
    return manifest.encode(storage, _parts(engine, storage), engine.config.uuid)


def _parts(engine: Engine, storage: Storage) -> list[dict]:
    """The entries of a cloud storage's manifest (manifest_of), by min."""
    parts = {}
    for slot in engine.partitions.in_storage(storage):
        if engine.partitions.slot(slot).places & ON_CLOUD:
            entry = _entry(engine, storage, slot)
            parts[entry["min"]] = entry
    for (storage_id, min_), entry in engine.listed.items():
        if storage_id == storage.id:
            parts.setdefault(min_, entry)
    return [parts[m] for m in sorted(parts)]


def keep_listed(engine: Engine, slot: int) -> tuple[int, int]:
    """The partition's cloud copy stays in its storage's manifest while a refresh or
    a move rewrites the partition, until unlisted: readers of the manifest find it
    there, or its new copy (here or in the storage it moves to), never neither. Its
    object is retired with the refresh, and stays at least removal_delay after."""
    storage = engine.storage_of(slot)
    key = (storage.id, engine.partitions.slot(slot).min)
    engine.listed[key] = _entry(engine, storage, slot)
    return key


def unlist(engine: Engine, key: tuple[int, int], moved: bool):
    """The end of keep_listed, the refresh done or failed: the storage's manifest no
    longer names the old copy. moved: the partition is in another storage now, and
    the old copy's stub there is retired here (a move keeps it until the copy in the
    storage it moved to is up), its object removed when due."""
    entry = engine.listed.pop(key, None)
    storage = next((s for s in engine.catalog.storages if s.id == key[0]), None)
    if entry is None or storage is None or not storage.cloud:
        return
    files = engine.files(storage)
    if moved and files.store.exists(file_name(key[1], CLOUD)):
        files.drop_stub(key[1])
    slot = engine.partitions.find(key[1])  # this task's (it holds the partition)
    if moved or slot is None or not engine.partitions.slot(slot).places & ON_CLOUD:
        yield from write_manifest(engine, storage)
    if moved:  # (in place, the upload after removes it, or the next one, or a drop)
        yield from remove_retired(engine, storage, key[1], held=slot)


def write_manifest(engine: Engine, storage: Storage):
    """Rewrite a cloud storage's manifest (one write at a time per storage); the
    objects it no longer names are removed removal_delay from now (published)."""
    if not storage.cloud:
        return
    key = Manifest(storage.id)
    yield from engine.claims.wait(key)
    with engine.claims.holding(key, "manifest"):
        parts = _parts(engine, storage)
        first = storage.id not in engine.published
        reply = yield TransferJob(MANIFEST, 0, engine.store(storage), engine.syncs(storage),
                                  content=manifest.encode(storage, parts,
                                                          engine.config.uuid).decode(),
                                  previous=first,
                                  generation=engine.generations.get(storage.id, 0))
        engine.generations[storage.id] = (reply or {}).get("generation", 0)
        # (None: not known, as when the catalog changed meanwhile)
        before = (reply or {}).get("named") if first else engine.published.get(storage.id)
        _published(engine, storage, {p["object"] for p in parts}, before)


def _published(engine: Engine, storage: Storage, named: set[str], before) -> None:
    """A manifest naming `named` is the storage's current one: a retired object the
    one before named (before; None: not known, so any) leaves it now, and its
    removal_delay starts now (its marker's time), so readers of that version find
    it for that long."""
    engine.published[storage.id] = named
    files = engine.files(storage)
    gone = [object_ for object_, _ in files.retired()
            if object_ not in named and (before is None or object_ in before)]
    for object_ in gone:
        try:
            files.store.touch(object_ + CLOUD_DROP)
        except FileNotFoundError:
            continue  # removed meanwhile
    if gone:
        _note_due(engine, storage, [time.time() + files.delay], whole=False)


def manifest_url(engine: Engine, storage: Storage) -> str | None:
    """Where a cloud storage's manifest is, as an fsspec URL."""
    objects = objects_of(engine.store(storage))
    return objects.url(manifest.NAME) if objects is not None else None
