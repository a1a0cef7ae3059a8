"""Claims: which task works on a partition, and why (the original's Ref).

A task claims a partition before its first step and releases it after its last,
so two tasks never work on one partition at once: a refresh, a move, a drop, an
upload or a download waits (yields Wait) while another holds it. A cloud
storage's manifest is claimed the same way, under its own kind of key
(Manifest), so that its writes never overlap, and so are a partition's retired
objects while they are removed (Removal), so that no upload puts one back
while its removal is in flight.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from .partitions import Partitions


@dataclass(frozen=True)
class Manifest:
    """The key of a cloud storage's manifest."""
    storage: int


@dataclass(frozen=True)
class Removal:
    """The key of a partition's retired objects while they are removed: an upload
    of a partition starting at the same min waits for it."""
    storage: int
    min: int


Key = int | Manifest | Removal  # a partition's slot, a manifest, an object's removal


@dataclass(frozen=True)
class Wait:
    """What a task yields to wait until a key is released (the scheduler resumes it)."""
    key: Key


class Claims:
    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions
        self.held: dict[Key, str] = {}  # key: why

    def __contains__(self, key: Key) -> bool:
        return key in self.held

    def __len__(self) -> int:
        return len(self.held)

    def __repr__(self) -> str:
        return f"Claims({self.held!r})"

    def claim(self, key: Key, why: str) -> None:
        if key in self.held:
            raise RuntimeError(f"{key!r} is claimed already ({self.held[key]})")
        self.held[key] = why

    def release(self, key: Key) -> None:
        del self.held[key]

    @contextmanager
    def holding(self, key: Key, why: str):
        self.claim(key, why)
        try:
            yield
        finally:
            self.release(key)

    def wait(self, key: Key):
        """A task step: until no other task holds the key."""
        while key in self.held:
            yield Wait(key)

    def claimed(self, slot: int, why: str, step):
        """A task: step() (a task) run with the partition claimed, once no other task
        holds it; nothing when the partition was dropped meanwhile."""
        min_ = self.partitions.slot(slot).min
        yield from self.wait(slot)
        if not self.partitions.current(slot, min_):
            return None
        with self.holding(slot, why):
            return (yield from step())

    def of_storage(self, storage: int, slots) -> str | None:
        """Why a storage's partitions (slots), manifest or objects are claimed, or None."""
        for key, why in self.held.items():
            if key in slots if isinstance(key, int) else key.storage == storage:
                return why
        return None

    def partitions_held(self) -> int:
        return sum(isinstance(key, int) for key in self.held)
