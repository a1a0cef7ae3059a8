"""Background work when there are no workers (workers = 0): the original's
service queue.

With a worker pool, refreshes past refresh_wm, CHECKPOINT and the pipeline's
retention run in the background by themselves. With workers = 0 they wait
here instead, and `SERVICE` runs the next one (one refresh, or one rebalance)
before it returns: background work becomes a step a script or a test takes
when it chooses, deterministically.
"""
from __future__ import annotations

from collections import deque

from . import partition_commands
from . import refresh as refresher
from .engine import Engine
from .tasks import PARTITIONS, Scheduler

REFRESH, REBALANCE = "refresh", "rebalance"


class ServiceQueue:
    def __init__(self, engine: Engine, scheduler: Scheduler) -> None:
        self.engine = engine
        self.scheduler = scheduler
        self.queue: deque[tuple[str, int]] = deque()

    def add(self, kind: str, min_: int = 0) -> None:
        """Queue a step (once: a step already waiting is not queued twice)."""
        if (kind, min_) not in self.queue:
            self.queue.append((kind, min_))

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
        done(None, None)
