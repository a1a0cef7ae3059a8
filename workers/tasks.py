"""Commands as tasks: handlers are generators that yield what they wait for.

A handler that needs a merge yields a MergeJob and is resumed with the new
file's meta (or the error thrown into it); one that needs a partition no other
task is working on yields WaitSlot. The scheduler runs a job in the worker
pool, or inline when there is none (workers = 0: everything is synchronous
and deterministic). The coordinator's event loop stays free meanwhile, so
writers needing a new partition never wait behind a refresh.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Callable

from monotone import errors
from monotone.errors import MonotoneError

from . import merge
from .merge import MergeJob

log = logging.getLogger("monotone")
Finish = Callable[[Any, BaseException | None], None]


@dataclass(frozen=True)
class WaitSlot:
    slot: int


class Task:
    def __init__(self, gen, finish: Finish, name: str) -> None:
        self.gen, self.finish, self.name = gen, finish, name


class Scheduler:
    def __init__(self, engine, pool=None) -> None:
        self.engine = engine
        self.pool = pool
        self.tasks: set[Task] = set()
        self.waiting: list[tuple[Task, int]] = []

    def run(self, result, finish: Finish, name: str = "command") -> None:
        """Finish a handler's result now, or drive it as a task when it is a generator."""
        if not inspect.isgenerator(result):
            finish(result, None)
            return
        task = Task(result, finish, name)
        self.tasks.add(task)
        self._advance(task)

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
            if isinstance(item, WaitSlot):
                if item.slot not in self.engine.busy:
                    continue
                self.waiting.append((task, item.slot))
                return
            if not isinstance(item, MergeJob):
                error = MonotoneError(f"internal error: a task waited for {item!r}")
                continue
            if self.pool is not None:
                self.pool.submit(item, lambda reply, task=task: self._resume(task, reply))
                return
            try:
                value = merge.run(item, self.engine.memtables)
            except Exception as e:
                error = e

    def _resume(self, task: Task, reply: dict) -> None:
        if reply["ok"]:
            self._advance(task, reply["meta"])
        else:
            cls = getattr(errors, reply.get("type", ""), MonotoneError)
            self._advance(task, error=cls(reply["error"]))

    def _end(self, task: Task, value, error) -> None:
        self.tasks.discard(task)
        try:
            task.finish(value, error)
        except Exception:
            log.exception("finishing %s failed", task.name)
        self.wake()

    def wake(self) -> None:
        """Resume tasks waiting for partitions that are free now."""
        ready = [(t, s) for t, s in self.waiting if s not in self.engine.busy]
        self.waiting = [(t, s) for t, s in self.waiting if s in self.engine.busy]
        for task, _ in ready:
            self._advance(task)

    def idle(self) -> bool:
        return not self.tasks
