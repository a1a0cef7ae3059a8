"""Commands as tasks: handlers are generators that yield what they wait for.

A handler that needs a merge yields a MergeJob and is resumed with the new
file's meta (or the error thrown into it), likewise a cloud transfer
(TransferJob, run by the upload workers); one that needs a partition no other
task is working on yields Wait (claims.py). The scheduler runs a job in the worker
pool, or inline when there is none (workers = 0: everything is synchronous
and deterministic). The coordinator's event loop stays free meanwhile, so
writers needing a new partition never wait behind a refresh.

Every command comes with the lock it needs (commands.py):
  NOW         runs at once: reads, and changes made in one step
  PARTITIONS  work on partitions that spans steps (refresh, move, drop, ...):
              any number at a time, each claiming its partitions (claims.py)
  CATALOG     a change of storages, clouds, pipeline or config: waits until
              no PARTITIONS work runs, and PARTITIONS work waits for it, so a
              move never finishes into a storage dropped meanwhile
Waiting commands start in the order they came.

A task whose cloud transfer is in the upload pool does not hold its lock
meanwhile (a PARTITIONS task holds its claims): a cloud that hangs holds up
no change of the catalog, nor what waits behind one. It takes its lock again
for its next step. A catalog change that would pull a storage or cloud from
under a transfer in flight is refused instead, and a catalog command checks
after its own transfer that what it changes is as it was (catalog_commands).
A task waiting for a claim keeps its lock (what it looked up stays true), so a
catalog change may wait behind one whose claim a transfer holds, for as long as
that transfer's deadline.
"""
from __future__ import annotations

import inspect
import logging
from collections import deque
from typing import Any, Callable

from monotone import errors
from monotone.errors import MonotoneError
from monotone.partition import merger
from monotone.partition.merger import MergeJob

from . import transfer
from .claims import Key, Wait
from .transfer import TransferJob

log = logging.getLogger("monotone")
Finish = Callable[[Any, BaseException | None], None]
NOW, PARTITIONS, CATALOG = "now", "partitions", "catalog"


class Task:
    def __init__(self, gen, finish: Finish, name: str, lock: str) -> None:
        self.gen, self.finish, self.name, self.lock = gen, finish, name, lock


class Scheduler:
    def __init__(self, engine, pool=None, uploads=None) -> None:
        self.engine = engine
        self.pool = pool          # merges (None: run inline)
        self.uploads = uploads    # cloud transfers (None: run inline)
        self.tasks: set[Task] = set()
        self.waiting: list[tuple[Task, Key]] = []  # tasks waiting for a claim
        self.queue: deque = deque()   # commands waiting for their lock
        self.held = {PARTITIONS: 0, CATALOG: 0}
        # tasks whose transfer ended, waiting to take their lock again: (task, reply)
        self.resuming: deque = deque()

    def submit(self, start: Callable[[], Any], finish: Finish, name: str, lock: str) -> None:
        """Run start() once lock allows, then finish its result (a generator: as a task)."""
        if lock == NOW:
            self._start(start, finish, name, lock)
            return
        self.queue.append((start, finish, name, lock))
        self._dispatch()

    def _run(self, result, finish: Finish, name: str, lock: str) -> None:
        """A handler's result already started (lock taken by the caller's submit)."""
        if not inspect.isgenerator(result):
            self._release(lock)
            finish(result, None)
            self._dispatch()
            return
        task = Task(result, finish, name, lock)
        self.tasks.add(task)
        self._advance(task)

    def _may_start(self, lock: str) -> bool:
        if lock == PARTITIONS:
            return not self.held[CATALOG]
        return not self.held[CATALOG] and not self.held[PARTITIONS]

    def _dispatch(self) -> None:
        """Resume every task whose transfer ended and whose lock is free (in order,
        none waiting behind another that cannot go on), then start queued commands,
        unless a catalog task waits to go on: new partition work would hold it back."""
        while (entry := next((e for e in self.resuming if self._may_start(e[0].lock)),
                             None)) is not None:
            self.resuming.remove(entry)
            task, reply = entry
            self.held[task.lock] += 1
            self._resume(task, reply)  # may change resuming: look again from the start
        if any(task.lock == CATALOG for task, _ in self.resuming):
            return
        while self.queue and self._may_start(self.queue[0][3]):
            self._start(*self.queue.popleft())

    def _start(self, start, finish: Finish, name: str, lock: str) -> None:
        if lock != NOW:
            self.held[lock] += 1
        try:
            result = start()
        except Exception as e:  # the handler failed before any step: its client is told
            self._release(lock)
            finish(None, e)
            self._dispatch()
            return
        self._run(result, finish, name, lock)

    def _release(self, lock: str) -> None:
        if lock != NOW:
            self.held[lock] -= 1

    def _advance(self, task: Task, value=None, error: BaseException | None = None) -> None:
        while True:
            try:
                item = task.gen.throw(error) if error is not None else task.gen.send(value)
            except StopIteration as stop:
                self._end(task, stop.value, None)
                return
            except Exception as e:  # the handler failed: its client gets the error
                self._end(task, None, e)
                return
            value, error = None, None
            if isinstance(item, Wait):
                if item.key not in self.engine.claims:
                    continue
                self.waiting.append((task, item.key))
                return
            if not isinstance(item, (MergeJob, TransferJob)):
                error = MonotoneError(f"internal error: a task waited for {item!r}")
                continue
            pool = self.pool if isinstance(item, MergeJob) else self.uploads
            if pool is not None and pool is self.uploads and task.lock != NOW:
                self._release(task.lock)  # claims hold its partitions; the lock is for steps
                pool.submit(item, lambda reply, task=task: self._transferred(task, reply))
                self._dispatch()
                return
            if pool is not None:
                pool.submit(item, lambda reply, task=task: self._resume(task, reply))
                return
            try:
                if isinstance(item, MergeJob):
                    value = merger.run(item, self.engine.memtables)
                else:
                    value = transfer.run(item)
            except Exception as e:
                error = e

    def _transferred(self, task: Task, reply: dict) -> None:
        """A transfer ended: its task goes on once it has its lock again."""
        self.resuming.append((task, reply))
        self._dispatch()

    def _resume(self, task: Task, reply: dict) -> None:
        if reply["ok"]:
            self._advance(task, reply["meta"])
        else:
            cls = getattr(errors, reply.get("type", ""), MonotoneError)
            self._advance(task, error=cls(reply["error"]))

    def _end(self, task: Task, value, error) -> None:
        self.tasks.discard(task)
        self._release(task.lock)
        try:
            task.finish(value, error)
        except Exception:
            log.exception("finishing %s failed", task.name)
        self.wake()
        self._dispatch()

    def wake(self) -> None:
        """Resume tasks waiting for claims that are released now."""
        claims = self.engine.claims
        ready = [(t, k) for t, k in self.waiting if k not in claims]
        self.waiting = [(t, k) for t, k in self.waiting if k in claims]
        for task, _ in ready:
            self._advance(task)

    def idle(self) -> bool:
        return not self.tasks and not self.queue and not self.resuming
