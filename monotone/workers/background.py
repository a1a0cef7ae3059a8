"""Background work: what the coordinator starts by itself, and the worker pools
and the scheduler it runs on.

Refreshes past refresh_wm and CHECKPOINT's, uploads and downloads with upload
workers, uploads resumed at start, refreshes that make room for writers
waiting on mm_limit, the pipeline's retention every BACKGROUND seconds, and
the removal of retired cloud objects when due: each a task (tasks.py) under
the PARTITIONS lock, after which the WAL is collected. With workers = 0
nothing runs by itself: refreshes and the retention wait in the service queue
(service.py) for SERVICE; so do removals without upload workers.
"""
from __future__ import annotations

import logging
import time

from monotone.errors import MonotoneError

from . import cloud_tier, partition_commands
from . import refresh as refresher
from .engine import Engine
from .pool import Pool
from .service import DROPS, MANIFEST, UPLOAD, ServiceQueue
from .tasks import PARTITIONS, Scheduler

log = logging.getLogger("monotone")
BACKGROUND = 1.0   # seconds between checks of the pipeline's retention
STOP_GRACE = 5.0   # seconds a stop waits for cloud transfers in flight before cutting them


class Background:
    def __init__(self, engine: Engine, selector) -> None:
        self.engine = engine
        workers, uploads = engine.config.workers, engine.config.workers_upload
        self.pool = Pool(engine.layout, workers, selector) if workers else None
        self.uploads = Pool(engine.layout, uploads, selector, eager=False) \
            if uploads else None
        engine.pool, engine.uploads = self.pool, self.uploads  # for SHOW WORKERS
        self.scheduler = Scheduler(engine, self.pool, self.uploads)
        self.service = ServiceQueue(engine, self.scheduler)  # workers = 0: SERVICE runs it
        self.rebalancing = False
        self.removing: set[int] = set()  # storages whose retired objects are being removed
        self.checkpointing = False
        self.memory_waiters: list = []
        self.next_rebalance = time.monotonic()
        # partitions a writer asked to refresh while a task had them: {slot: (heap, when)},
        # the size of their memtable when last looked at
        self.refresh_wanted: dict[int, tuple[int, float]] = {}

    def timeout(self) -> float | None:
        """How long the event loop may wait before the next step is due."""
        waits = []
        if self.refresh_wanted:
            waits.append(BACKGROUND / 4)
        if self.pool is not None and self.engine.catalog.pipeline:
            waits.append(max(0.0, self.next_rebalance - time.monotonic()))
        due = [when for sid, when in self.engine.removal_due.items()
               if sid not in self.removing]
        if due:
            waits.append(min(max(0.0, min(due) - time.time()), BACKGROUND * 60))
        return min(waits, default=None)

    def tick(self) -> None:
        """A turn of the event loop: writers waiting on memory, refreshes wanted, and
        the pipeline's retention (applied by workers every BACKGROUND seconds)."""
        self.free_memory()
        if self.refresh_wanted:
            self._refresh_wanted()
        self._remove_retired()
        if self.pool is None or not self.engine.catalog.pipeline or self.rebalancing:
            return
        if time.monotonic() < self.next_rebalance:
            return
        self.next_rebalance = time.monotonic() + BACKGROUND
        self.rebalancing = True

        def done(value, error) -> None:
            self.rebalancing = False
            self.done(value, error)

        self.scheduler.submit(lambda: partition_commands.rebalance(self.engine), done,
                              "rebalance", PARTITIONS)

    def _remove_retired(self) -> None:
        """Remove the retired objects of the storages whose next removal is due (with
        no upload workers: queued for SERVICE)."""
        now = time.time()
        for storage in self.engine.catalog.storages:
            when = self.engine.removal_due.get(storage.id)
            if when is None or when > now or storage.id in self.removing:
                continue
            if self.uploads is None:
                self.engine.removal_due.pop(storage.id)  # noted again when SERVICE runs it
                self.service.add_cloud(DROPS, storage.id)
                continue
            self.removing.add(storage.id)

            def done(value, error, sid=storage.id) -> None:
                self.removing.discard(sid)
                self.done(value, error)

            self.scheduler.submit(lambda s=storage: cloud_tier.remove_retired(self.engine, s),
                                  done, "cloud removals", PARTITIONS)

    def done(self, value, error) -> None:
        """A background task ended."""
        if error is not None:
            log.error("background work failed: %s", error)
        partition_commands.collect_wal(self.engine)

    # refreshes
    def refresh(self, slot: int, name: str = "refresh") -> None:
        """Refresh a partition in the background (workers = 0: queued for SERVICE)."""
        if self.pool is None:
            self.service.refresh(slot)
            return
        if slot in self.engine.claims and name == "refresh":
            # the writer's hint is spent: without this, a partition written on while it
            # refreshes would grow in memory until something else refreshed it
            self.refresh_wanted.setdefault(slot, (-1, time.monotonic()))
            return

        def done(value, error) -> None:
            self.done(value, error)
            self._refresh_wanted()

        self.scheduler.submit(lambda: refresher.refresh(self.engine, slot), done, name,
                              PARTITIONS)

    def _refresh_wanted(self) -> None:
        """Refresh again the partitions asked for while claimed, once their memtable has
        stopped growing for BACKGROUND seconds (writers left it), so it does not stay in
        memory, nor its WAL files on disk, until something else refreshes it.

        Not at once: a refresh rewrites the whole partition file, and a partition still
        written would be rewritten at every refresh_wm (measured: a 2M-event partition
        written and then refreshed took 20% longer). Until writes to it stop, its
        memtable is bounded by its interval and by mm_limit_wm."""
        now = time.monotonic()
        for slot, (heap, since) in sorted(self.refresh_wanted.items()):
            if slot in self.engine.claims:
                continue
            s = self.engine.partitions.slot(slot)
            if not s.live or s.heap == 0:
                del self.refresh_wanted[slot]
            elif s.heap == heap and now - since >= BACKGROUND:
                del self.refresh_wanted[slot]
                self.refresh(slot)
            elif s.heap != heap:
                self.refresh_wanted[slot] = (s.heap, now)

    # transfers
    def upload(self, slot: int, offload: bool = False) -> None:
        """Upload a partition in the background (partition_commands.upload_one)."""
        self._on_partition(slot, "upload",
                           lambda: partition_commands.upload_one(self.engine, slot, offload))

    def download(self, slot: int) -> None:
        self._on_partition(slot, "download",
                           lambda: partition_commands.download_one(self.engine, slot))

    def _on_partition(self, slot: int, name: str, task) -> None:
        """Submit task() for a partition, unless it is dropped before its turn comes."""
        partitions = self.engine.partitions
        min_ = partitions.slot(slot).min
        self.scheduler.submit(lambda: task() if partitions.current(slot, min_) else None,
                              self.done, name, PARTITIONS)

    def resume_cloud_work(self) -> None:
        """What recovery leaves for after the open, so that an open answers before any
        cloud request: retired objects whose removal is due, files
        of cloud storages without their cloud copy (an upload that failed or was cut
        short: they go up as a refresh would have sent them), and the manifests (a
        crash may have left one a step behind). Without upload workers they wait
        for SERVICE, after its refreshes."""
        engine = self.engine
        clouded = [storage for storage in engine.catalog.storages if storage.cloud]
        for storage in clouded:  # the manifest first: it may name an object to remove
            if self.uploads is None:
                self.service.add_cloud(MANIFEST, storage.id)
                self.service.add_cloud(DROPS, storage.id)
                continue
            self.scheduler.submit(lambda s=storage: cloud_tier.write_manifest(engine, s),
                                  self.done, "manifest", PARTITIONS)
            self.scheduler.submit(lambda s=storage: cloud_tier.remove_retired(engine, s),
                                  self.done, "cloud removals", PARTITIONS)
        for slot in cloud_tier.waiting_upload(engine):
            if self.uploads is None:
                self.service.add_cloud(UPLOAD, engine.partitions.slot(slot).min)
            else:
                self.upload(slot, offload=True)

    # memory
    def wait_memory(self, need: int, reply) -> None:
        """A writer met mm_limit: reply once refreshes have freed need bytes."""
        self.memory_waiters.append((need, reply))
        self.free_memory()

    def free_memory(self) -> None:
        """Answer writers waiting on mm_limit, refreshing memtables to make room."""
        if not self.memory_waiters:
            return
        limit = self.engine.config.mm_limit_wm
        used = self.engine.partitions.heap()
        waiting = []
        for need, reply in self.memory_waiters:
            if used + need <= limit:
                reply({}, None)
            elif need > limit:
                reply(None, MonotoneError(f"a batch of {need} bytes is larger than "
                                          f"mm_limit_wm ({limit})"))
            else:
                waiting.append((need, reply))
        self.memory_waiters = waiting
        if waiting and not self.checkpointing:
            self.checkpointing = True

            def done(value, error) -> None:
                self.checkpointing = False
                self.done(value, error)
                if not self.engine.claims and self.engine.partitions.heap() + min(
                        n for n, _ in self.memory_waiters or [(0, None)]) > limit:
                    for _, reply in self.memory_waiters:  # nothing left to refresh
                        reply(None, MonotoneError("memory limit reached and nothing is left "
                                                  "to refresh"))
                    self.memory_waiters = []
                self.free_memory()

            self.scheduler.submit(lambda: partition_commands.checkpoint(self.engine), done,
                                  "memory checkpoint", PARTITIONS)

    # the end
    def stopping(self, since: float) -> float | None:
        """A turn of the event loop of a stop begun at since (monotonic): once
        STOP_GRACE has passed, the cloud transfers still in flight are cut short
        (resumed at the next open, as after a crash). How long the loop may wait
        before the next turn (None: no transfer is waited for; 0 once they are cut)."""
        if self.uploads is None or not (self.uploads.busy() or self.uploads.queue):
            return None
        left = since + STOP_GRACE - time.monotonic()
        if left > 0:
            return left
        self.uploads.cut_short("cut short by the repository's close; it is resumed at "
                               "the next open")
        return 0.0  # what waited on them has ended: the loop looks again at once

    def stop_workers(self) -> None:
        """The pools stop: merges left run here; a transfer asked for from now on (the
        upload of a last checkpoint's refresh) fails at once, and the next open
        resumes it, so that a stop never waits on a cloud."""
        if self.uploads is not None:
            self.uploads.cut_short("the repository closed first; it is resumed at the "
                                   "next open")
        for pool in (self.pool, self.uploads):
            if pool is not None:
                pool.close()
        self.scheduler.pool = None

    def last_checkpoint(self) -> None:
        """At a clean stop without a WAL, memory is the only copy: it is refreshed."""
        if not self.engine.config.wal:
            self.scheduler.submit(lambda: partition_commands.checkpoint(self.engine),
                                  self.done, "final checkpoint", PARTITIONS)
        else:
            partition_commands.collect_wal(self.engine)
