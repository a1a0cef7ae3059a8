"""Cursors: ordered reads over partition files and memtables.

A cursor takes one snapshot of the partition map when it opens, so a batch
written across two partitions is seen whole or not at all. It then walks the
partitions at or after its position, skipping the others, and merges each
partition's file (one region at a time) with its memtables.
"""
from __future__ import annotations

from itertools import chain
from operator import length_hint
from typing import Iterator

from .cloud import AHEAD
from .event import Batch, Event
from .format.rows import Ordered, drop_deletes, merge
from .snapshot import Opened, sorted_rows

CHUNK = 1 << 16  # rows per batch taken from memtables
EVENTS = 2048    # Event objects made at a time for per-event reads


class Cursor:
    """Positioned at the first event >= (id, key); iterate, or read()/next()."""

    def __init__(self, session, id: int | None = None, key: bytes | None = None) -> None:
        self._session = session
        self._start = (int(id or 0), bytes(key or b""))
        self._source = self._batches()
        self._batch: Batch | None = None
        self._events: tuple[int, list[Event]] | None = None
        self._pos = 0
        self._iter = None  # the list iterator of a for loop over the cursor
        self._advance()

    # the C-like interface
    def read(self) -> Event | None:
        """The event the cursor stands on, or None at the end."""
        self._sync()
        if self._batch is None:
            return None
        start, events = self._window()
        return events[self._pos - start]

    def next(self) -> bool:
        """Move to the next event; False at the end."""
        self._sync()
        if self._batch is None:
            return False
        self._pos += 1
        if self._pos >= len(self._batch):
            self._advance()
        return self._batch is not None

    # Python iteration
    def __iter__(self) -> Iterator[Event]:
        self._sync()
        return chain.from_iterable(self._windows())

    def _windows(self) -> Iterator[Iterator[Event]]:
        """List iterators over the events, a window at a time: chain runs them in C,
        and the one in use tells where a loop that stopped early left the cursor."""
        while self._batch is not None:
            start, events = self._window()
            self._iter = it = iter(events[self._pos - start:] if self._pos > start else events)
            self._iter_end = end = start + len(events)
            yield it
            self._iter = None  # chain went through all of it
            self._pos = end
            if end >= len(self._batch):
                self._advance()

    def batches(self) -> Iterator[Batch]:
        """The rest of the events as numpy Batch chunks, in order."""
        self._sync()
        while self._batch is not None:
            batch = self._batch
            if self._pos:
                batch = Batch.of(batch.slice(self._pos, len(batch)))
            self._advance()
            yield batch

    def close(self) -> None:
        self._source.close()
        self._batch = self._events = None

    def __enter__(self) -> "Cursor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # internals
    def _window(self) -> tuple[int, list[Event]]:
        """(first row, events) of the stretch of the batch the cursor stands in:
        events are made EVENTS at a time, so they stay in the CPU caches."""
        window = self._events
        if window is None or not window[0] <= self._pos < window[0] + len(window[1]):
            end = min(len(self._batch), self._pos + EVENTS)
            window = self._events = (self._pos, self._batch.events(self._pos, end))
        return window

    def _sync(self) -> None:
        """Stand on the first event a for loop over the cursor has not yielded."""
        it = self._iter
        if it is not None:
            self._iter = None
            self._pos = self._iter_end - length_hint(it)
            if self._pos >= len(self._batch):
                self._advance()

    def _advance(self) -> None:
        self._batch, self._events, self._pos = next(self._source, None), None, 0

    def _batches(self) -> Iterator[Batch]:
        start_id, start_key = self._start
        snapshots = self._session.snapshots
        snapshot = snapshots.take(start_id)
        views = snapshot.views
        try:
            for i, view in enumerate(views):
                views[i] = None  # let go of what was read
                opened = view.opened or snapshots.open(snapshot, view)
                yield from self._partition(opened, start_id, start_key)
                start_id, start_key = 0, b""  # only the first partition starts inside
        finally:  # a cursor closed early: close the files it opened ahead
            for view in views:
                if view is not None and view.opened is not None:
                    view.opened.close()

    def _partition(self, opened: Opened, start_id: int, start_key: bytes) -> Iterator[Batch]:
        reader = opened.reader
        try:
            mems = [Ordered(sorted_rows(mt, n)) for mt, n in opened.memtables]
            pos = [m.bound(start_id, start_key) for m in mems]
            if reader is not None:
                index = reader.index
                first = index.first_region(start_id, start_key)
                for i in range(first, index.regions):
                    reader.prefetch(i, AHEAD + 1)  # a cloud file: the next GETs start now
                    region = reader.read_region(i)
                    if i == first:
                        region = region.slice(Ordered(region).bound(start_id, start_key), len(region))
                    if not mems:  # files hold no deletes: nothing to merge or drop
                        if len(region):
                            yield Batch.of(region)
                        continue
                    parts = [region]
                    max_id, max_key = int(index.entries["max_id"][i]), index.max_key(i)
                    for j, m in enumerate(mems):
                        upper = m.bound(max_id, max_key, "right")
                        parts.append(m.rows.slice(pos[j], upper))
                        pos[j] = upper
                    out = drop_deletes(merge(parts))
                    if len(out):
                        yield Batch.of(out)
            rest = drop_deletes(merge([m.rows.slice(p, len(m)) for m, p in zip(mems, pos)]))
            for a in range(0, len(rest), CHUNK):
                yield Batch.of(rest.slice(a, min(a + CHUNK, len(rest))))
        finally:
            if reader is not None:
                reader.close()


