"""SHOW: the JSON views of config, storages, partitions, pipeline, clouds, WAL, memory."""
from __future__ import annotations

import os

from monotone import redact
from monotone.config import HIDDEN, TABLE, lookup
from monotone.ddl import commands as cmd
from monotone.errors import MonotoneError, PartitionNotFound
from monotone.jsonout import pretty
from monotone.partition.merge import sorted_rows
from monotone.partition.reader import Identity, Reader
from monotone.partition.region_cache import DIRECTORY as CACHE_DIRECTORY
from monotone.partition.region_cache import usage
from monotone.settings import Storage
from monotone.shm.partition_map import ON_CLOUD, ON_STORAGE
from monotone.wal.files import wal_files

from . import cloud_tier
from .engine import Engine


def show(engine: Engine, c: cmd.Show) -> str:
    values = [item_value(engine, item) for item in c.items]
    if len(values) == 1:
        return pretty(values[0])
    return pretty(values)


def item_value(engine: Engine, item: cmd.ShowItem):
    what = item.what
    if what == "var":
        return config_value(engine, item.name)
    if what == "config":
        return {v.name: config_value(engine, v.name) for v in TABLE.values()
                if not v.flags & HIDDEN}
    if what == "storages":
        return {s.name: storage_json(engine, s, item.debug) for s in engine.catalog.storages}
    if what == "storage":
        return storage_json(engine, engine.catalog.need_storage(item.name), item.debug)
    if what == "partitions":
        slots = engine.partitions.live() if item.name is None else \
            engine.partitions.in_storage(engine.catalog.need_storage(item.name))
        return [partition_json(engine, s, item.debug) for s in slots]
    if what == "partition":
        slot = engine.partitions.containing(item.id)
        if slot is None:
            raise PartitionNotFound(f"partition '{item.id}': not exists")
        return partition_json(engine, slot, item.debug)
    if what == "pipeline":
        return [t.show() for t in engine.catalog.pipeline]
    if what == "clouds":
        return {c.name: c.show() for c in engine.catalog.clouds}
    if what == "cloud":
        cloud = engine.catalog.cloud(item.name)
        if cloud is None:
            raise MonotoneError(f"cloud '{item.name}': not exists")
        return cloud.show()
    if what == "wal":
        return wal_json(engine)
    if what == "memory":
        return memory_json(engine)
    if what == "cache":
        return cache_json(engine)
    if what == "workers":
        return workers_json(engine)
    raise MonotoneError(f"SHOW {what}: not supported")


def config_value(engine: Engine, name: str):
    var = lookup(name, "SHOW")
    if var.name == "ssn":
        return engine.pmap.ssn
    if var.name == "lsn":
        return engine.pmap.lsn
    return engine.config.show(var.name)


def heap_bytes(engine: Engine, slot: int) -> int:
    """Memory a partition's memtables hold, as the original counts it: whole
    mm_page_size pages per memtable with events (a page of 2 MiB for one event)."""
    page = engine.config.mm_page_size
    return sum(-(-engine.memtables.get(seg).bytes_used(n) // page) * page
               for seg, n in engine.partitions.slot(slot).memtables())


def heap_events(engine: Engine, slot: int) -> int:
    """Events in a partition's memtables, as the original counts them: one per
    (id, key) in each memtable (a replaced event once, a delete too)."""
    return sum(len(sorted_rows(engine.memtables.get(seg), n))
               for seg, n in engine.partitions.slot(slot).memtables())


def partition_json(engine: Engine, slot: int, debug: bool = False) -> dict:
    s = engine.partitions.slot(slot)
    on_storage, on_cloud = bool(s.places & ON_STORAGE), bool(s.places & ON_CLOUD)
    heap = heap_events(engine, slot)
    out = {
        "min": s.min, "max": s.max,
        "events": s.file_events + heap, "events_heap": heap,
        "regions": s.regions, "size": s.file_size,
        "size_uncompressed": s.file_size_origin, "size_heap": heap_bytes(engine, slot),
        "created": "(filtered)" if debug else s.created,
        "refreshed": "(filtered)" if debug else s.refreshed,
        "refreshes": s.refreshes,
        "on_storage": on_storage, "on_cloud": on_cloud,
        "storage": engine.storage_of(slot).name,
    }
    if debug:
        out["index"] = index_json(engine, slot) if s.places else None
    return out


def index_json(engine: Engine, slot: int) -> dict:
    storage = engine.storage_of(slot)
    files = engine.files(storage)
    s = engine.partitions.slot(slot)
    handle = files.open(s.min, s.file_size) if s.places & ON_STORAGE else \
        files.open_cloud(s.min)
    # the index: no cloud request
    with Reader(handle, engine.cipher(storage), Identity(storage.uuid, s.min)) as r:
        meta = r.meta
        regions = int(meta["size"])
        return {"size": r.file_size - regions, "size_regions": regions,
                "size_regions_origin": int(meta["size_uncompressed"]),
                "size_total": r.file_size, "regions": r.index.regions,
                "events": int(meta["events"]), "refreshes": int(meta["refreshes"]),
                "lsn": int(meta["lsn"]), "compression": meta["compression"],
                "encryption": meta.get("encryption", "none"), "crc": bool(meta.get("crc"))}


def storage_json(engine: Engine, storage: Storage, debug: bool = False) -> dict:
    slots = engine.partitions.in_storage(storage)
    parts = [engine.partitions.slot(s) for s in slots]
    heap = sum(heap_events(engine, s) for s in slots)
    stats = {
        "min": min((p.min for p in parts), default=0),
        "max": max((p.max for p in parts), default=0),
        "partitions": len(parts),
        "partitions_local": sum(1 for p in parts if p.places & ON_STORAGE),
        "partitions_cloud": sum(1 for p in parts if p.places & ON_CLOUD),
        "regions": sum(p.regions for p in parts),
        "events": sum(p.file_events for p in parts) + heap,
        "events_heap": heap,
        "size": sum(p.file_size for p in parts),
        "size_uncompressed": sum(p.file_size_origin for p in parts),
        "size_heap": sum(heap_bytes(engine, s) for s in slots),
    }
    out = {"config": storage.show(debug), "stats": stats}
    if storage.cloud:
        out["manifest"] = redact.url(cloud_tier.manifest_url(engine, storage))
    return out


def wal_json(engine: Engine) -> dict:
    cfg = engine.config
    return {"active": cfg.wal, "rotate_wm": cfg.wal_rotate_wm,
            "sync_on_rotate": cfg.wal_sync_on_rotate, "sync_on_write": cfg.wal_sync_on_write,
            "crc": cfg.wal_crc, "lsn": engine.pmap.lsn,
            "lsn_min": engine.lsn_needed(), "files": len(wal_files(engine.layout.wal))}


def workers_json(engine: Engine) -> dict:
    """The worker pool: its size, processes started so far (on demand), jobs
    running, queued and done."""
    out = {"workers": 0, "workers_upload": 0, "started": 0, "busy": 0, "queue": 0, "done": 0}
    for pool in (engine.pool, engine.uploads):
        if pool is not None:
            stats = pool.stats()
            for name in ("started", "busy", "queue", "done"):
                out[name] += stats[name]
    out["workers"] = engine.pool.size if engine.pool else 0
    out["workers_upload"] = engine.uploads.size if engine.uploads else 0
    out["partitions_busy"] = engine.claims.partitions_held()
    return out


def cache_json(engine: Engine) -> dict:
    """The region cache of cold reads: its limit (mm_cache), what it holds now, and
    what cold reads cost since the coordinator started: GETs and their bytes,
    regions read from the cache instead and their bytes, files evicted."""
    files, used = usage(os.path.join(engine.layout.base, CACHE_DIRECTORY))
    return {"limit": engine.config.mm_cache, "files": files, "size": used,
            **engine.pmap.cold_reads()}


def memory_json(engine: Engine) -> dict:
    """Shared memory held by memtables (backed bytes, in mm_page_size pages)."""
    cfg = engine.config
    page = cfg.mm_page_size
    backed = used = 0
    for slot in engine.partitions.live():
        for seg, n in engine.partitions.slot(slot).memtables(empty=True):
            mt = engine.memtables.get(seg)
            backed += mt.backed_bytes()
            used += mt.bytes_used(n)
    pages = -(-backed // page)
    pages_used = -(-used // page)
    return {"pages": pages, "pages_used": pages_used, "pages_free": pages - pages_used,
            "page_size": page, "limit": cfg.mm_limit, "limit_wm": cfg.mm_limit_wm,
            "limit_behaviour": cfg.mm_limit_behaviour,
            "limit_hits": engine.pmap.limit_hits, "cache": cfg.mm_cache}
