"""Cursors: ordered reads over partition files and memtables.

A cursor takes one snapshot of the partition map when it opens, so a batch
written across two partitions is seen whole or not at all. It then walks the
partitions at or after its position up to its max_id, skipping the others,
and merges each partition's file (one region at a time) with its memtables
(partition/merge.py); a reverse cursor walks them down from its position.

Where no memtable row falls among a local file's regions (a partition refreshed,
or written after its file), the file is walked alone, and batches() reads it a
run of regions a batch: each run decoded into one set of columns (one Arrow
chunk of to_arrow), the next READERS runs read ahead in threads meanwhile (so a
scan holds up to READERS + 1 runs besides the one its caller has).

A following cursor, at the end, waits for the partitions at or after its
position to change, then takes a new snapshot from just after the last event
it read. Writers send no notice, so it polls the partition map's counters and
row counts (a few words of shared memory, no data), from every millisecond
while events come to every POLL_MAX seconds while none do.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from operator import length_hint
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from .errors import MonotoneError
from .event import Batch, Event
from .format.rows import MAX_ID, Ordered, Rows
from .partition.cloud_file import AHEAD, AHEAD_REGIONS, Budget
from .partition.merge import HIGHEST, LOWEST, MergeIterator, regions_upto, sorted_rows, upto
from .partition.reader import Reader
from .snapshot import Opened

if TYPE_CHECKING:  # the frames' types; the [arrow] extra is imported only when asked for
    import pandas as pd
    import polars as pl
    import pyarrow as pa

# Event objects made at a time for per-event reads. Fewer than the collector's
# first threshold (700 allocations of tracked objects less deallocations), with
# the previous window freed before the next is made: a loop that lets go of each
# event never sets off a collection, which costs more than making the events.
EVENTS = 512
POLL_MIN, POLL_MAX = 0.001, 0.05  # seconds between checks of a following cursor
RUN_BYTES = 16 << 20  # a run of regions batches() reads at once: bytes decoded, at most
FIRST_RUN = 2 << 20  # a scan reads its first bytes a region at a time, then runs of twice
                     # this, doubling up to RUN_BYTES
READERS = 2  # runs read ahead at a time by batches(), each in a thread


class Cursor:
    """Positioned at the first event >= (id, key), or with reverse at the last event
    <= (id, key) (id None: the end; key None: any key of id); iterate, or read()/next().

    max_id: no event above it is read, nor a partition or region past it opened.
    follow: at the end, wait for new events instead of stopping, until close() (from
    any thread) or timeout seconds (None: no limit) without one. It starts at its
    first use rather than when made; events written later below its position (by
    explicit ids, or by writers publishing their serial ids out of order) are not seen.
    """

    def __init__(self, session, id: int | None = None, key: bytes | None = None, *,
                 max_id: int | None = None, reverse: bool = False, follow: bool = False,
                 timeout: float | None = None) -> None:
        self._session = session
        self._max_id = MAX_ID if max_id is None else int(max_id)
        self._timeout = timeout
        self._stop = threading.Event()
        if reverse:
            top = self._max_id if id is None else int(id)
            self._source = self._walk(LOWEST, (top, key), True)
        else:
            start = (int(id or 0), bytes(key or b""))
            self._source = self._follow(start) if follow else self._ascend(start)
        self._batch: Batch | None = None
        self._events: tuple[int, list[Event]] | None = None
        self._pos = 0
        self._iter = None  # the list iterator of a for loop over the cursor
        self._runs = False  # batches() asked: files are read a run of regions at a time
        self._ramp = _Ramp()  # how far the runs of this cursor's scan have grown
        self._allocate: Callable[[int], Any] | None = None  # batches()' allocate
        self._lazy = follow  # a following cursor takes its first snapshot when first used
        self._kind = "reverse" if reverse else "following" if follow else "forward"
        if not follow:
            self._advance()

    def __repr__(self) -> str:
        top = "" if self._max_id == MAX_ID else f", max_id={self._max_id}"
        if self._stop.is_set():
            return f"<Cursor {self._kind}{top}, closed>"
        if self._lazy:
            return f"<Cursor {self._kind}{top}, not started>"
        self._sync()
        batch = self._batch
        if batch is None:
            return f"<Cursor {self._kind}{top}, at the end>"
        return (f"<Cursor {self._kind}{top}, at id={int(batch.ids[self._pos])} "
                f"key={batch.key(self._pos)!r}>")

    # the C-like interface
    def read(self) -> Event | None:
        """The event the cursor stands on, or None at the end."""
        self._sync()
        if self._batch is None:
            return None
        start, events = self._window(self._batch)
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
        # the batch is read once a step: close() may come from another thread
        while (batch := self._batch) is not None:
            start, events = self._window(batch)
            self._iter = it = iter(events[self._pos - start:] if self._pos > start else events)
            self._iter_end = end = start + len(events)
            del events  # the iterator holds the window alone: it is freed as it ends
            yield it
            self._iter = None  # chain went through all of it
            self._pos = end
            if end >= len(batch):
                self._advance()

    def batches(self, allocate: Callable[[int], Any] | None = None) -> Iterator[Batch]:
        """The rest of the events as numpy Batch chunks, in order: of a file no
        memtable row falls among, a run of regions (up to RUN_BYTES) a chunk.
        allocate(size): a writable buffer of size bytes for such a chunk's columns
        (to_arrow: Arrow's memory pool); None: numpy's memory."""
        self._sync()
        self._runs, self._allocate = True, allocate
        try:
            while (batch := self._batch) is not None:
                if self._pos:
                    batch = Batch.of(batch.slice(self._pos, len(batch)))
                self._advance()
                yield batch
        finally:  # event by event after it: a region at a time again
            self._runs, self._allocate = False, None

    # data frames (monotone/frames.py; pyarrow, pandas, polars: the [arrow] extra)
    def to_arrow(self) -> pa.Table:
        """The rest of the cursor's range as a pyarrow.Table (id, key, value)."""
        from .frames import cursor_to_arrow
        return cursor_to_arrow(self)

    def to_reader(self) -> pa.RecordBatchReader:
        """The rest as a pyarrow.RecordBatchReader that streams, a batch at a time."""
        from .frames import cursor_to_reader
        return cursor_to_reader(self)

    def to_pandas(self) -> pd.DataFrame:
        from .frames import cursor_to_pandas
        return cursor_to_pandas(self)

    def to_polars(self) -> pl.DataFrame:
        from .frames import cursor_to_polars
        return cursor_to_polars(self)

    def close(self) -> None:
        """Let go of the snapshot; a following cursor waiting in another thread stops."""
        self._stop.set()
        try:
            self._source.close()
        except ValueError:
            return  # running in another thread, waiting: it ends now by itself
        self._batch = self._events = None
        self._lazy = False

    def __enter__(self) -> "Cursor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # internals
    def _window(self, batch: Batch) -> tuple[int, list[Event]]:
        """(first row, events) of the stretch of the batch the cursor stands in:
        events are made EVENTS at a time, so they stay in the CPU caches."""
        window = self._events
        if window is None or not window[0] <= self._pos < window[0] + len(window[1]):
            self._events = window = None  # freed before the next window is made
            end = min(len(batch), self._pos + EVENTS)
            window = self._events = (self._pos, batch.events(self._pos, end))
        return window

    def _sync(self) -> None:
        """Stand on the first event a for loop over the cursor has not yielded."""
        if self._lazy:
            self._lazy = False
            self._advance()
        it = self._iter
        if it is not None:
            self._iter = None
            self._pos = self._iter_end - length_hint(it)
            if self._pos >= len(self._batch):
                self._advance()

    def _advance(self) -> None:
        self._batch, self._events, self._pos = next(self._source, None), None, 0

    def _ascend(self, start: tuple[int, bytes]) -> Iterator[Batch]:
        return self._walk(start, (self._max_id, None), False)

    def _walk(self, low: tuple[int, bytes], high: tuple[int, bytes | None],
              descending: bool) -> Iterator[Batch]:
        """The events of one snapshot's partitions from low to high, both inclusive."""
        snapshots = self._session.snapshots
        snapshot = snapshots.take(low[0], high[0], descending)
        views = snapshot.views
        ahead = None if descending else _Ahead(views, high)
        try:
            for i, view in enumerate(views):
                views[i] = None  # let go of what was read
                opened = view.opened or snapshots.open(snapshot, view)
                if ahead is not None:
                    ahead.enter(i, opened)
                yield from self._partition(opened, low, high, descending,
                                           ahead.beyond if ahead is not None else None)
                # only the first partition walked holds the cursor's position: the
                # next ones are read from their end down, or from their start up
                if descending:
                    high = HIGHEST
                else:
                    low = LOWEST
        finally:  # a cursor closed early: close the files it opened ahead
            for view in views:
                if view is not None and view.opened is not None:
                    view.opened.close()
            self._session.count_cold_reads()

    def _partition(self, opened: Opened, low: tuple[int, bytes],
                   high: tuple[int, bytes | None], descending: bool,
                   beyond=None) -> Iterator[Batch]:
        """A partition's events from low to high, a batch (a region, a run of regions,
        or a window of memtable rows) at a time; its file is closed at the end.
        beyond: read ahead past it (_Ahead)."""
        regions = None
        try:
            mems = [sorted_rows(mt, n) for mt, n in opened.memtables]
            span = None if descending else _file_alone(opened.reader, mems, low, high)
            if span is None:
                for rows in MergeIterator(opened.reader, mems, low, high, descending=descending,
                                          ahead=AHEAD, beyond=beyond):
                    yield Batch.of(rows)
                return
            regions = _Regions(opened.reader, span, low, high, beyond, self._ramp)
            while (rows := regions.next(self._runs, self._allocate)) is not None:
                yield Batch.of(rows)
            for rows in MergeIterator(None, mems, low, high):  # the memtable rows after it
                yield Batch.of(rows)
        finally:
            if regions is not None:
                regions.close(opened.close)  # once its reads under way are done
            else:
                opened.close()

    # following
    def _follow(self, start: tuple[int, bytes]) -> Iterator[Batch]:
        """To the end, then again from just after the last event each time the
        partitions at or after it change; until close() or the timeout."""
        since = time.monotonic()
        while not self._stop.is_set():
            seen = self._state(start[0])  # before the snapshot: a change after it is seen
            for batch in self._ascend(start):
                n = len(batch) - 1
                start = (int(batch.ids[n]), batch.key(n) + b"\0")  # the next (id, key)
                since = time.monotonic()
                yield batch
            if not self._wait(seen, start[0], since):
                return

    def _wait(self, seen: tuple, start_id: int, since: float) -> bool:
        """Wait for the partitions at or after start_id to change: False on close()
        or once timeout seconds passed since the last event."""
        delay = POLL_MIN
        while True:
            if self._state(start_id) != seen:
                return True
            left = None if self._timeout is None else since + self._timeout - time.monotonic()
            if left is not None and left <= 0:
                return False
            if self._stop.wait(delay if left is None else min(delay, left)):
                return False
            delay = min(delay * 2, POLL_MAX)

    def _state(self, start_id: int) -> tuple:
        """What changes when events at or after start_id are published: the map's
        counters and the slots of those partitions (read without locks: they are
        only compared, the next snapshot reads them properly)."""
        session = self._session
        with session.lock:
            if session.conn.closing:
                raise MonotoneError("the repository was closed while a cursor followed it: "
                                    "close the cursor first")
            session.live()
            pmap = session.pmap
            slots, mins, maxs = session.partitions()
            mine = slots[(maxs >= np.uint64(start_id)) & (mins <= np.uint64(self._max_id))]
            return (session.generation, pmap.map_version, pmap.publishing,
                    pmap.table[mine].tobytes())


class _Ahead:
    """Reading ahead across partitions, walking up: the cloud files of a snapshot's
    partitions share one read-ahead budget, and once the file being read has all
    its regions asked for, the next partitions' (those the snapshot opened) are,
    in order, as far as the budget allows."""

    def __init__(self, views: list, high: tuple[int, bytes | None]) -> None:
        self.views, self.high = views, high
        self.budget = Budget()
        self.next = 1  # the first view whose regions are not all asked for

    def enter(self, i: int, opened: Opened) -> None:
        self.next = max(self.next, i + 1)
        self._share(opened.reader)

    def _share(self, reader: Reader | None) -> None:
        if reader is not None and reader.file.prefetches:
            reader.file.share(self.budget)

    def beyond(self) -> None:
        views, budget = self.views, self.budget
        while self.next < len(views) and not budget.full:
            view = views[self.next]
            if view is None or view.opened is None:
                return  # opened when the walk gets there
            reader = view.opened.reader
            if reader is not None:
                self._share(reader)
                end = regions_upto(reader.index, *self.high)
                if not reader.prefetch(0, min(AHEAD_REGIONS, end)) or end > AHEAD_REGIONS:
                    return  # the rest when the walk gets there
            self.next += 1


def _file_alone(reader: Reader | None, mems: list[Rows], low: tuple[int, bytes],
                high: tuple[int, bytes | None]) -> tuple[int, int] | None:
    """(first, end): the regions of a local file in the range, when no memtable row of
    the range falls among them, so the file is read alone and the memtable rows after
    it. By ids: a row with the last region's id is taken to fall among them. None:
    there is no such file, or file and memtables are merged (MergeIterator)."""
    if reader is None or reader.file.prefetches:
        return None
    index = reader.index
    first, end = index.first_region(*low), regions_upto(index, *high)
    if first >= end:
        return None
    top = index.entries["max_id"][end - 1]
    for rows in mems:
        ids = rows.ids
        if np.searchsorted(ids, top, "right") > np.searchsorted(ids, np.uint64(low[0]), "left"):
            return None
    return first, end


class _Ramp:
    """A scan's bytes read from files a region at a time, and its next run's size:
    its runs grow across the partitions it walks."""

    def __init__(self) -> None:
        self.read = 0
        self.run = min(RUN_BYTES, 2 * FIRST_RUN)


class _Regions:
    """Regions first..end-1 of a local file no memtable row falls among, walked up
    as MergeIterator walks them: the first and last cut to the range, each region
    alone. With runs (batches()), once the scan (ramp: the cursor's, across the files
    it walks) read FIRST_RUN bytes a region at a time (a read of a few events, from
    an id until it has enough, reads no more), the whole regions between come a run
    at a time (Reader.read_run), twice FIRST_RUN first, each next twice the last up
    to RUN_BYTES; once runs are that large and more than one is left, READERS of them
    are read ahead in threads, if the reader allows (parallel)."""

    def __init__(self, reader: Reader, span: tuple[int, int], low: tuple[int, bytes],
                 high: tuple[int, bytes | None], beyond=None, ramp: _Ramp | None = None) -> None:
        self.reader, self.low, self.high, self.beyond = reader, low, high, beyond
        self.ramp = ramp or _Ramp()
        self.first, self.end = span
        self.at = self.first  # the first region not yet read or asked for
        # the whole regions: from..upto-1 (a bound in the first or last cuts it)
        self.whole = (self.first + (low != LOWEST), self.end - (high != HIGHEST))
        self.decoded = None  # bytes decoded up to each region (0 first), once runs are read
        self.ahead: deque = deque()  # runs asked for, in order: futures of their rows
        self.pool: ThreadPoolExecutor | None = None

    def next(self, runs: bool, allocate=None) -> Rows | None:
        """The next region or run with events in the range; None past the last."""
        while self.ahead or self.at < self.end:
            if self.ahead or runs and self.whole[0] <= self.at < self.whole[1] and \
                    self.ramp.read >= FIRST_RUN:
                rows = self._run(allocate)
            else:
                rows = self._region(self.at)
                self.ramp.read += int(self.reader.index.entries["size_origin"][self.at])
                self.at += 1
            if len(rows):
                return rows
        return None

    def _region(self, i: int) -> Rows:
        self._beyond(i + 1)
        rows = self.reader.read_region(i)
        if i == self.first or i == self.end - 1:
            ordered = Ordered(rows)
            a = ordered.bound(*self.low) if i == self.first else 0
            b = upto(ordered, *self.high) if i == self.end - 1 else len(rows)
            rows = rows.slice(a, max(a, b))
        return rows

    def _run(self, allocate) -> Rows:
        """The next run of whole regions: read here when it is the last one (or the
        reader is not read in threads), else asked of the threads with the next ones,
        so that READERS are being read while the caller has this one. A region
        larger than a run is read alone, as read_region reads it."""
        upto_ = self.whole[1]
        while len(self.ahead) <= READERS and self.whole[0] <= self.at < upto_:
            a, b = self.at, self._run_end(self.at)
            if b == a:
                break
            self.at = b
            self._beyond(b)
            if not self.ahead and (b == upto_ or not self.reader.parallel or
                                   self.ramp.run < RUN_BYTES):
                return self.reader.read_run(a, b, allocate)
            if self.pool is None:
                self.pool = ThreadPoolExecutor(READERS, thread_name_prefix="monotone-read")
            self.ahead.append(self.pool.submit(self.reader.read_run, a, b, allocate))
        if self.ahead:
            return self.ahead.popleft().result()
        i, self.at = self.at, self.at + 1
        return self._region(i)

    def _run_end(self, a: int) -> int:
        """The end of the run from region a: the whole regions the run's bytes decoded
        hold (a run allocates that much before it reads: no more however large a
        region's entry says it is), none when region a alone is larger."""
        limit = self._sizes()[a] + np.uint64(self.ramp.run)
        self.ramp.run = min(RUN_BYTES, 2 * self.ramp.run)
        return min(int(np.searchsorted(self.decoded, limit, "right")) - 1, self.whole[1])

    def _sizes(self) -> np.ndarray:
        """Bytes decoded up to each region (0 first)."""
        if self.decoded is None:
            self.decoded = np.zeros(self.reader.index.regions + 1, np.uint64)
            np.cumsum(self.reader.index.entries["size_origin"], out=self.decoded[1:])
        return self.decoded

    def _beyond(self, end: int) -> None:
        """Read ahead past the file once its regions to `end` reach its last
        AHEAD_REGIONS (as MergeIterator does, region by region)."""
        if self.beyond is not None and end + AHEAD_REGIONS > self.end:
            self.beyond()

    def close(self, then) -> None:
        """Let go of the runs read ahead, then(): close the file. Nothing waits for a
        thread here (a cursor dropped unclosed is closed by the garbage collector, in
        whatever thread it runs, where a wait can deadlock): the reads not started are
        cancelled, and then() runs at once, or when the last read under way is done,
        in the thread that ends it."""
        pending = [future for future in self.ahead if not future.cancel()]
        self.ahead.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if not pending:
            then()
            return
        left, lock = [len(pending)], threading.Lock()

        def done(_) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                then()

        for future in pending:
            future.add_done_callback(done)
