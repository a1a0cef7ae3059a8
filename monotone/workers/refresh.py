"""Refresh: merge a partition's memtable and its file into a new file.
Move is the same, with the new file written into another storage.

  step 1. under the partition lock, freeze the active memtable and give the
          partition a fresh one (writers go on at once)
          -- fault point refresh.frozen
  step 2. merge file + frozen memtable into <target>/<min>.incomplete, fsync
          -- crash point error_refresh_1
  step 3. rename it to <target>/<min>.complete
          -- crash point error_refresh_2
  step 4. under PUBLISH (no snapshot is taken meanwhile):
          rename <min>.complete over <target>/<min> (one atomic step)
          -- crash point error_refresh_3
          point the slot at the new file; on a move, remove the source file
  step 5. drop the frozen memtable
When every frozen event comes after the file's last one (and the file stays where
it is, as it is encoded), steps 2-4 append instead (partition/merger.py): the marker
<min>.append, the new regions and an index of all of them after the file's end, the
WAL synced, the footer; step 4 points the slot at the longer file, then the marker
goes. An append that does not end is cut back (here, or by recovery at the next open).
With a cloud (cloud_tier.py), in the original's order: a partition whose file
is in the cloud is downloaded and (in place) its cloud copy dropped first;
after the switch, a target storage with a cloud gets the new file uploaded, and
its local copy dropped when the storage says cloud_drop_local. The storage's
manifest names the old cloud copy until then (keep_listed), and a move drops
the source's cloud copy only after the upload, so a reader of the manifests
finds the partition in one of them (or both) throughout.
Steps 2 and 3 are a MergeJob (partition/merger.py), run by a worker process; the
coordinator does the short steps around it. The files' states and their
renames are partition.files.PartitionFiles'; recovery (recovery.py) finishes or
discards each state. After a failure the frozen memtable stays
readable and the next refresh of the partition merges it first.
"""
from __future__ import annotations

import logging
import time

from monotone import faults
from monotone.jsonout import size_text
from monotone.partition.merger import MergeJob
from monotone.settings import Storage
from monotone.shm.locks import SEQUENCE, Held
from monotone.shm.partition_map import ON_CLOUD, ON_STORAGE

from . import cloud_tier
from .engine import Engine, file_stats

log = logging.getLogger("monotone")


def refresh(engine: Engine, slot: int, target: Storage | None = None):
    """Rewrite one partition with its memtable merged in, into target (default: where
    it is): a task, on the partition claimed."""
    return engine.claims.claimed(slot, "refresh" if target is None else "move",
                                 lambda: _refresh(engine, slot, target))


def _refresh(engine: Engine, slot: int, target: Storage | None):
    s = engine.partitions.slot(slot)
    source = engine.storage_of(slot)
    target = target or source
    moving = target.id != source.id
    listed = None
    try:
        if s.places & ON_CLOUD:
            yield from cloud_tier.download(engine, slot)
            # the manifest names the cloud copy until the new one is up (here, or in the
            # storage it moves to, whose source copy goes then)
            listed = cloud_tier.keep_listed(engine, slot)
            if not moving:
                # a refresh in place may append to the file: its object is kept for the
                # upload after, which then sends only what was appended
                yield from cloud_tier.drop_cloud_copy(engine, slot, keep_object=True)
        resumed = bool(s.frozen)  # left by a refresh that failed
        yield from _refresh_once(engine, slot, target)
        if resumed and s.rows:
            yield from _refresh_once(engine, slot, target)
        yield from cloud_tier.upload(engine, slot, offload=True)
    except Exception:
        if listed is not None:
            yield from _unlist(engine, slot, listed)
        raise
    if listed is not None:
        yield from cloud_tier.unlist(engine, listed, engine.storage_of(slot).id != source.id)


def _unlist(engine: Engine, slot: int, listed):
    """After a refresh that failed: the old copy unlisted (moved, or not), what that
    meets logged rather than raised over the refresh's own error."""
    try:
        moved = engine.partitions.current(slot, listed[1]) and \
            engine.storage_of(slot).id != listed[0]
        yield from cloud_tier.unlist(engine, listed, bool(moved))
    except Exception as e:
        log.warning("partition %d: its manifest entry is settled later: %s", listed[1], e)


def _refresh_once(engine: Engine, slot: int, target: Storage):
    start = time.monotonic()
    source = engine.storage_of(slot)
    _freeze(engine, slot)
    job = _job(engine, slot, target)
    try:
        meta = yield job
    except BaseException:
        if job.append_at:  # what an append that did not end left past the file goes
            engine.files(target).abandon_append(job.min, job.append_at)
        raise
    _switch(engine, slot, target, job, meta)
    what = f"refresh partition {job.min}" if source.id == target.id else \
        f"move partition {job.min} from {source.name} to {target.name}"
    log.info("%s: %d events from memory, %d in the file, %s (%s uncompressed) in %s, %.3f s",
             what, job.frozen_rows, meta["events"], size_text(meta["file_size"]),
             size_text(meta["size_uncompressed"]), target.name, time.monotonic() - start)


def _freeze(engine: Engine, slot: int) -> None:
    """Step 1; a frozen memtable left by a failed refresh is merged first.

    Under the partition lock (a writer that died in it has its batch decided
    first, so no pending batch is frozen), PUBLISH (no snapshot sees half of
    the switch) and SEQUENCE (WAL gc never sees the partition's lsn_min gone)."""
    with engine.shared.locked([slot]):
        if engine.partitions.slot(slot).frozen:
            return
        segno = engine.partitions.new_memtable()
        with engine.shared.publishing(), Held(engine.locks, SEQUENCE):
            engine.pmap.freeze(slot, segno)
    faults.point("refresh.frozen")


def _job(engine: Engine, slot: int, target: Storage) -> MergeJob:
    """Steps 2 and 3, described for whoever runs them."""
    s = engine.partitions.slot(slot)
    source = engine.storage_of(slot)
    cfg = engine.config.values
    return MergeJob(
        slot=slot, min=s.min, frozen=s.frozen, frozen_rows=s.frozen_rows,
        source=engine.store(source) if s.gen else None,
        old_key=source.encryption_key if source.encryption else "",
        target=engine.store(target),
        compression=target.compression, compression_level=target.compression_level,
        region_size=target.region_size,
        key=target.encryption_key if target.encryption else "",
        crc=target.crc, sync=engine.syncs(target),
        meta={"min": s.min, "max": s.max, "lsn": s.file_lsn, "ssn": engine.pmap.ssn,
              "created": s.created, "refreshed": int(time.time() * 1e6),
              "refreshes": s.refreshes + 1},
        switches=sorted(faults.switched(cfg)),
        wal_dir=engine.layout.wal if engine.syncs(target) and cfg["wal"] and
        not cfg["wal_sync_on_write"] else "",
        append_at=s.file_size if s.gen and source.id == target.id and
        s.places & ON_STORAGE else 0)


def _switch(engine: Engine, slot: int, target: Storage, job: MergeJob, meta: dict) -> None:
    """Steps 4 and 5."""
    source = engine.storage_of(slot)
    appended = meta.get("appended", False)  # in place: nothing to rename
    with engine.shared.publishing():
        if not appended:
            engine.files(target).install(job.min)
        try:
            faults.point("refresh_3", faults.switched(engine.config.values))
            segno = engine.pmap.switch(slot, file_stats(meta), target.id)
        except BaseException:
            if appended:  # not switched: the partition is as before the append
                engine.files(target).abandon_append(job.min, job.append_at)
            raise
        if job.source is not None and source.id != target.id:
            engine.files(source).remove(job.min)  # a move: the old copy goes
    if appended:
        engine.files(target).end_append(job.min)
    engine.partitions.drop_memtable(segno)
