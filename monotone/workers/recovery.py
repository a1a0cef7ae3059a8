"""Open-time recovery: partition files first, then the WAL over them.

Partition files may be left in any state a refresh, move, upload, download
or drop can crash in. A refresh that wrote its new file whole (<min>.complete)
but crashed before it replaced the old <min> is undone, as the original's: the
old file stays (the WAL still holds what the new one added), in the same
storage or another (a move). partition.files.PartitionFiles.settle() then
finishes or undoes the other states, and says where each partition's copies
are (local file, cloud stub). A move writes into another storage; if a crash
left <min> in two storages, the newer one (more refreshes) wins and the other
is removed.
Then every intact WAL record is replayed in lsn order into memtables, except
what a partition file already holds (record lsn <= file lsn). A drop record
removes the partition as it was at that lsn.
"""
from __future__ import annotations

import logging
import time

from monotone import faults
from monotone.partition.files import COMPLETE, file_name, parse
from monotone.partition.reader import Identity, Reader
from monotone.shm import private
from monotone.shm.partition_map import ON_CLOUD, ON_STORAGE
from monotone.wal import files as wal
from monotone.wal import replay as wal_replay

from .engine import Engine, file_stats

log = logging.getLogger("monotone")


def recover(engine: Engine) -> None:
    start = time.monotonic()
    made_private(engine)
    lsn, ssn = recover_files(engine)
    log.info("recovery: partition files read: %d", len(engine.partitions.live()))
    # lsn is not persisted (as the original): it goes on from what the files hold,
    # past every WAL file's name, so a new WAL file never takes an existing name
    lsn = max([lsn, *(wal.first_lsn(path) for path in wal.wal_files(engine.layout.wal))])
    ssn = max(ssn, engine.config.ssn)
    engine.pmap.lsn = lsn
    engine.pmap.ssn = ssn
    faults.point("recovery.files")
    if engine.config.wal:
        replay_wal(engine)
    engine.save_config()
    log.info("recovery done in %.3f s, lsn %d", time.monotonic() - start, engine.pmap.lsn)


def made_private(engine: Engine) -> None:
    """Files of a repository written before they were made private become 0600."""
    layout = engine.layout
    changed = sum(private.tighten(d) for d in
                  [layout.base, layout.wal, *map(engine.directory, engine.catalog.storages)])
    if changed:
        log.info("recovery: %d files made readable by their owner only", changed)


def drop_unswitched(engine: Engine) -> None:
    """Every <min>.complete whose old <min> is still there, in any storage, goes, as
    the original (its refreshes stay as they were): the WAL holds what it merged.
    Without a WAL it is the only copy of those events, and is put in place instead."""
    if not engine.config.wal:
        return
    names = {storage.name: [p for p in map(parse, engine.files(storage).store.list()) if p]
             for storage in engine.catalog.storages}
    old = {min_ for parsed in names.values() for min_, state in parsed if state == ""}
    for storage in engine.catalog.storages:
        files = engine.files(storage)
        for min_, state in names[storage.name]:
            if state == COMPLETE and min_ in old:
                log.info("partition %d: refresh cut short before its switch, %s removed",
                         min_, files.where(min_, COMPLETE))
                files.store.remove(file_name(min_, COMPLETE), files.sync)


def recover_files(engine: Engine) -> tuple[int, int]:
    drop_unswitched(engine)
    found: dict[int, list[tuple[dict, object, int]]] = {}
    for storage in engine.catalog.storages:
        files = engine.files(storage)
        for min_, places in files.settle().items():
            handle = files.open(min_) if places & ON_STORAGE else files.open_cloud(min_)
            with Reader(handle, engine.cipher(storage), Identity(storage.uuid, min_)) as reader:
                meta = dict(reader.meta, file_size=reader.file_size)
            found.setdefault(min_, []).append((meta, storage, places))
    lsn = ssn = 0
    for min_ in sorted(found):
        copies = sorted(found[min_], key=lambda c: (c[0].get("refreshes", 0), c[0].get("lsn", 0)))
        meta, storage, places = copies[-1]
        keep = engine.files(storage)
        for _, older, where in copies[:-1]:  # a move that crashed before removing its source
            files = engine.files(older)
            if where & ON_STORAGE and not files.same(keep, min_):
                files.remove(min_)
            if where & ON_CLOUD:  # its object is retired (removed in the background)
                files.drop_stub(min_)
        slot = engine.partitions.add(int(meta["min"]), int(meta["max"]), storage,
                                     int(meta.get("created", 0)))
        engine.pmap.set_file(slot, file_stats(meta), places=places)
        lsn = max(lsn, int(meta.get("lsn", 0)))
        ssn = max(ssn, int(meta.get("ssn", 0)))
    return lsn, ssn


def replay_wal(engine: Engine) -> None:
    """Every intact WAL record over the partition files, in lsn order (wal.replay says
    what is cut, skipped or refused)."""
    replay = wal_replay.read(engine.layout.wal, engine.config.uuid, engine.config.wal_recover)
    pmap = engine.pmap
    events = sum(len(r.rows) for r in replay.records if r.rows is not None)
    log.info("recovery: WAL files: %d, records to replay: %d, events: %d", replay.files,
             len(replay.records), events)
    for rec in replay.records:
        if rec.start is not None:
            continue
        if rec.drop is not None:
            replay_drop(engine, rec.drop[0], rec.lsn)
        else:
            engine.apply(rec.rows, rec.lsn)
        pmap.lsn = max(pmap.lsn, rec.lsn)
        pmap.ssn = max(pmap.ssn, rec.ssn)
    replay.settle()


def replay_drop(engine: Engine, min_: int, lsn: int) -> None:
    """A partition dropped at lsn goes again, unless its file is newer than the drop."""
    slot = engine.partitions.find(min_)
    if slot is None:
        return
    s = engine.partitions.slot(slot)
    if s.gen and s.file_lsn > lsn:
        return
    files = engine.files(engine.storage_of(slot))
    places = s.places
    engine.partitions.forget(slot)
    if places & ON_STORAGE:
        files.remove(min_)
    if places & ON_CLOUD:  # its object is retired (removed in the background)
        files.drop_stub(min_)
