"""Background work when there are no workers (workers = 0): the original's
service queue.

With a worker pool, refreshes past refresh_wm, CHECKPOINT and the pipeline's
retention run in the background by themselves. With workers = 0 they wait
here instead, and `SERVICE` runs the next one (one refresh, or one rebalance)
before it returns: background work becomes a step a script or a test takes
when it chooses, deterministically. With no upload workers (workers_upload =
0), the cloud work an open leaves (an upload to resume, a storage's object
removals due, its manifest to rewrite) waits here too, and SERVICE runs it
once no refresh or rebalance is waiting.
"""
from __future__ import annotations

from collections import deque

from . import cloud_tier, partition_commands
from . import refresh as refresher
from .engine import Engine
from .tasks import PARTITIONS, Scheduler

REFRESH, REBALANCE = "refresh", "rebalance"
# a partition's upload; a storage's object removals; a storage's manifest
UPLOAD, DROPS, MANIFEST = "upload", "drops", "manifest"


class ServiceQueue:
    def __init__(self, engine: Engine, scheduler: Scheduler) -> None:
        self.engine = engine
        self.scheduler = scheduler
        self.queue: deque[tuple[str, int]] = deque()
        self.cloud: deque[tuple[str, int]] = deque()  # run when queue is empty

    def add(self, kind: str, min_: int = 0) -> None:
        """Queue a step (once: a step already waiting is not queued twice)."""
        if (kind, min_) not in self.queue:
            self.queue.append((kind, min_))

    def add_cloud(self, kind: str, what: int) -> None:
        """Queue cloud work: UPLOAD of the partition starting at what, or the DROPS or
        MANIFEST of the storage whose id is what."""
        if (kind, what) not in self.cloud:
            self.cloud.append((kind, what))

    def refresh(self, slot: int) -> None:
        self.add(REFRESH, self.engine.partitions.slot(slot).min)

    def created(self) -> None:
        """New partitions: with a pipeline, its retention is due."""
        if self.engine.catalog.pipeline:
            self.add(REBALANCE)

    def run_next(self, done) -> None:
        """SERVICE: run the next step that still applies, then done(None, error)."""
        engine = self.engine
        finished = done
        done = lambda value, error: finished(None, error)  # noqa: E731 - nothing to say
        while self.queue:
            kind, min_ = self.queue.popleft()
            if kind == REBALANCE:
                self.scheduler.submit(lambda: partition_commands.rebalance(engine), done,
                                      "service rebalance", PARTITIONS)
                return
            slot = engine.partitions.find(min_)
            if slot is not None:
                self.scheduler.submit(lambda: refresher.refresh(engine, slot), done,
                                      "service refresh", PARTITIONS)
                return
        while self.cloud:
            if self._cloud_step(*self.cloud.popleft(), done):
                return
        done(None, None)

    def _cloud_step(self, kind: str, what: int, done) -> bool:
        """Submit one queued cloud step that still applies (False: none did)."""
        engine = self.engine
        if kind in (DROPS, MANIFEST):
            storage = next((s for s in engine.catalog.storages if s.id == what), None)
            if storage is None or not storage.cloud:
                return False
            step = cloud_tier.remove_retired if kind == DROPS else cloud_tier.write_manifest
            self.scheduler.submit(lambda: step(engine, storage), done,
                                  f"service cloud {kind}", PARTITIONS)
            return True
        slot = engine.partitions.find(what)
        if slot is None:
            return False
        self.scheduler.submit(lambda: partition_commands.upload_one(engine, slot, True), done,
                              "service upload", PARTITIONS)
        return True
