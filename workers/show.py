"""SHOW: the JSON views of config, storages, partitions, pipeline, clouds, WAL, memory."""
from __future__ import annotations

from monotone import wal
from monotone.catalog import Storage
from monotone.config import HIDDEN, TABLE, lookup
from monotone.ddl import commands as cmd
from monotone.errors import MonotoneError, PartitionNotFound
from monotone.jsonout import pretty
from monotone.partfile import Reader
from monotone.shm.catalog import (H_LIMIT_HITS, H_LSN, H_SSN, S_ACTIVE, S_CREATED, S_FILE_EVENTS, S_FILE_SIZE,
                         S_FILE_SIZE_ORIGIN, S_FROZEN, S_FROZEN_ROWS, S_GEN, S_MAX, S_MIN,
                         S_REFRESHED, S_REFRESHES, S_REGIONS, S_ROWS, S_STORAGE, lsn_needed)

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
        slots = engine.live_slots().tolist()
        if item.name is not None:
            sid = engine.catalog.need_storage(item.name).id
            slots = [s for s in slots if int(engine.slots.slots[s, S_STORAGE]) == sid]
        return [partition_json(engine, s, item.debug) for s in slots]
    if what == "partition":
        slot = engine.partition_of(item.id)
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
    if what == "workers":
        return workers_json(engine)
    raise MonotoneError(f"SHOW {what}: not supported")


def config_value(engine: Engine, name: str):
    var = lookup(name, "SHOW")
    if var.name == "ssn":
        return engine.slots.get(H_SSN)
    if var.name == "lsn":
        return engine.slots.get(H_LSN)
    return engine.config.values[var.name]


def heap_bytes(engine: Engine, slot: int) -> int:
    s = engine.slots.slots[slot]
    total = 0
    for col, rows_col in ((S_ACTIVE, S_ROWS), (S_FROZEN, S_FROZEN_ROWS)):
        if s[col] and s[rows_col]:
            total += engine.memtables.get(int(s[col])).bytes_used(int(s[rows_col]))
    return total


def partition_json(engine: Engine, slot: int, debug: bool = False) -> dict:
    s = engine.slots.slots[slot]
    on_storage = bool(s[S_GEN])
    out = {
        "min": int(s[S_MIN]), "max": int(s[S_MAX]),
        "events": int(s[S_FILE_EVENTS]), "events_heap": int(s[S_ROWS] + s[S_FROZEN_ROWS]),
        "regions": int(s[S_REGIONS]), "size": int(s[S_FILE_SIZE]),
        "size_uncompressed": int(s[S_FILE_SIZE_ORIGIN]), "size_heap": heap_bytes(engine, slot),
        "created": "(filtered)" if debug else int(s[S_CREATED]),
        "refreshed": "(filtered)" if debug else int(s[S_REFRESHED]),
        "refreshes": int(s[S_REFRESHES]),
        "on_storage": on_storage, "on_cloud": False,
        "storage": engine.storage_of(slot).name,
    }
    if debug:
        out["index"] = index_json(engine, slot) if on_storage else None
    return out


def index_json(engine: Engine, slot: int) -> dict:
    storage = engine.storage_of(slot)
    with Reader(engine.file_path(slot), engine.cipher(storage)) as r:
        meta = r.meta
        regions = int(meta["size"])
        return {"size": r.file_size - regions, "size_regions": regions,
                "size_regions_origin": int(meta["size_uncompressed"]),
                "size_total": r.file_size, "regions": r.index.regions,
                "events": int(meta["events"]), "refreshes": int(meta["refreshes"]),
                "lsn": int(meta["lsn"]), "compression": meta["compression"],
                "encryption": meta.get("encryption", "none"), "crc": bool(meta.get("crc"))}


def storage_json(engine: Engine, storage: Storage, debug: bool = False) -> dict:
    table = engine.slots.slots
    slots = [s for s in engine.live_slots().tolist() if int(table[s, S_STORAGE]) == storage.id]
    rows = table[slots]
    stats = {
        "min": int(rows[:, S_MIN].min()) if slots else 0,
        "max": int(rows[:, S_MAX].max()) if slots else 0,
        "partitions": len(slots),
        "partitions_local": int((rows[:, S_GEN] > 0).sum()) if slots else 0,
        "partitions_cloud": 0,
        "regions": int(rows[:, S_REGIONS].sum()) if slots else 0,
        "events": int(rows[:, S_FILE_EVENTS].sum()) if slots else 0,
        "events_heap": int((rows[:, S_ROWS] + rows[:, S_FROZEN_ROWS]).sum()) if slots else 0,
        "size": int(rows[:, S_FILE_SIZE].sum()) if slots else 0,
        "size_uncompressed": int(rows[:, S_FILE_SIZE_ORIGIN].sum()) if slots else 0,
        "size_heap": sum(heap_bytes(engine, s) for s in slots),
    }
    return {"config": storage.show(debug), "stats": stats}


def wal_json(engine: Engine) -> dict:
    cfg = engine.config
    return {"active": cfg.wal, "rotate_wm": cfg.wal_rotate_wm,
            "sync_on_rotate": cfg.wal_sync_on_rotate, "sync_on_write": cfg.wal_sync_on_write,
            "crc": cfg.wal_crc, "lsn": engine.slots.get(H_LSN),
            "lsn_min": lsn_needed(engine.slots), "files": len(wal.wal_files(engine.layout.wal))}


def workers_json(engine: Engine) -> dict:
    """The worker pool: its size, processes started so far (on demand), jobs
    running, queued and done."""
    pool = engine.pool
    if pool is None:
        return {"workers": 0, "workers_upload": 0, "started": 0, "busy": 0, "queue": 0,
                "done": 0, "partitions_busy": len(engine.busy)}
    stats = pool.stats()
    return {"workers": stats["workers"], "workers_upload": engine.config.workers_upload,
            "started": stats["started"], "busy": stats["busy"], "queue": stats["queue"],
            "done": stats["done"], "partitions_busy": len(engine.busy)}


def memory_json(engine: Engine) -> dict:
    """Shared memory held by memtables (backed bytes, in mm_page_size pages)."""
    cfg = engine.config
    page = cfg.mm_page_size
    backed = used = 0
    for slot in engine.live_slots().tolist():
        s = engine.slots.slots[slot]
        for col, rows_col in ((S_ACTIVE, S_ROWS), (S_FROZEN, S_FROZEN_ROWS)):
            if s[col]:
                mt = engine.memtables.get(int(s[col]))
                backed += mt.backed_bytes()
                used += mt.bytes_used(int(s[rows_col]))
    pages = -(-backed // page)
    pages_used = -(-used // page)
    return {"pages": pages, "pages_used": pages_used, "pages_free": pages - pages_used,
            "page_size": page, "limit": cfg.mm_limit, "limit_wm": cfg.mm_limit_wm,
            "limit_behaviour": cfg.mm_limit_behaviour,
            "limit_hits": engine.slots.get(H_LIMIT_HITS), "cache": cfg.mm_cache}
