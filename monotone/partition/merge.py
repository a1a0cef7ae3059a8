"""The merge of a partition's file with its memtables: one iterator for every read.

A partition is a file of sorted regions plus memtable rows on top. Read over a
range of (id, key), it comes out a window of rows at a time: a region of the
file merged with the memtable rows of its range (after the region before's
last event, up to its own), then, past the file's last region, memtable rows
alone, merged CHUNK rows at a time. Of equal (id, key) a later source wins,
and deletes are dropped once merged: nothing older is left to hide.

Downwards it is the same walk mirrored: the memtable rows above the file's
last region first, then the regions from the last one at or below the bound
down, each window reversed with one gather. The first memtable window then
takes FIRST_CHUNK rows, doubling up to CHUNK: the last events of a partition
cost its last rows only, whatever it holds.

Regions are read one at a time, when the walk gets to them, and a cloud file
is asked to fetch the next ones ahead. Cursors hand the windows out as batches
(cursor.py); a refresh writes them to a new file (merger.py), and takes a
region no memtable row falls into as it is stored, unread (take_stored).
"""
from __future__ import annotations

from typing import Callable, Iterator
from weakref import WeakKeyDictionary

import numpy as np

from ..format.rows import MAX_ID, Ordered, Rows, drop_deletes, merge, sort_dedup
from .cloud_file import AHEAD_REGIONS
from .fileformat import Index
from .reader import Reader

LOWEST = (0, b"")  # the lower bound that bounds nothing
HIGHEST = (MAX_ID, None)  # the upper bound that bounds nothing (key None: any key of the id)
CHUNK = 1 << 16  # memtable rows merged at a time
FIRST_CHUNK = 1 << 10  # the first time downwards: the last events should cost little


class MergeIterator:
    """A partition's events from low to high, both inclusive, merged, deletes
    dropped: windows of rows, none empty, in ascending (id, key) order, or with
    descending in descending order (the windows, and the rows in each).

    reader: the partition file (None: no file); it is read here, not closed.
    mems: the memtables' rows, each sorted and unique, the oldest first.
    high: a key of None stands for every key of the id.
    ahead: regions of a cloud file fetched ahead of the one read (None: none).
    take_stored(i): offered each region no memtable row falls into and no bound
    cuts, before it is read; True when it took the region as it is stored (a
    refresh copies it to the new file), and the walk goes on without it. (A
    hook rather than the region's number yielded: cursors get rows only.)
    windowed: memtable rows past the file's regions come CHUNK rows at a time;
    False: in one window, for a refresh, which writes them all (one add to the
    writer is faster than many).
    beyond: called, walking up, whenever the read-ahead has all of this file's
    regions in the range asked for and room for more (a cursor reads ahead into
    the partitions after this one).
    """

    def __init__(self, reader: Reader | None, mems: list[Rows],
                 low: tuple[int, bytes] = LOWEST, high: tuple[int, bytes | None] = HIGHEST, *,
                 descending: bool = False, ahead: int | None = None,
                 take_stored: Callable[[int], bool] | None = None,
                 windowed: bool = True, beyond: Callable[[], None] | None = None) -> None:
        self.reader, self.low, self.high = reader, low, high
        self.descending, self.ahead, self.take_stored = descending, ahead, take_stored
        self.beyond = beyond
        self.windowed = windowed
        self.mems = [Ordered(m) for m in mems]
        self.hi = [upto(m, *high) for m in self.mems]
        self.lo = [min(m.bound(*low), h) for m, h in zip(self.mems, self.hi)]
        # regions first..end-1 may hold events in the range; the others hold none
        self.first = self.end = 0
        if reader is not None:
            self.first = reader.index.first_region(*low)
            self.end = regions_upto(reader.index, *high)

    def __iter__(self) -> Iterator[Rows]:
        reader = self.reader
        if reader is None:  # memtable rows alone
            yield from self._memtables(self.lo, self.hi)
            return
        if self.descending:
            near = self._cut(reader.index, self.end - 1)
            yield from self._memtables(near, self.hi)  # the rows above the file's last region
            steps = range(self.end - 1, self.first - 1, -1)
        else:
            near, steps = self.lo, range(self.first, self.end)
        for i in steps:
            # the memtable rows of region i lie between the cuts on either side of it:
            # the one walked from (near), and the one walked to (far)
            far = self._cut(reader.index, i - 1 if self.descending else i)
            out = self._region(reader, i, *((far, near) if self.descending else (near, far)))
            if out is not None:
                yield out
            near = far
        if not self.descending:
            yield from self._memtables(near, self.hi)  # the rows after the file's last region

    def _cut(self, index: Index, i: int) -> list[int]:
        """Per memtable, where its rows after region i's last event begin (lo before
        the first region walked)."""
        if i < self.first or not self.mems:
            return self.lo
        id_, key = int(index.entries["max_id"][i]), index.max_key(i)
        return [min(max(m.bound(id_, key, "right"), lo), hi)
                for m, lo, hi in zip(self.mems, self.lo, self.hi)]

    def _region(self, reader: Reader, i: int, lo: list[int], hi: list[int]) -> Rows | None:
        """Region i merged with the memtable rows lo..hi (None: nothing left, or
        taken as it is stored)."""
        if self.ahead is not None:
            self._prefetch(reader, i, self.ahead)
        parts = [m.rows.slice(a, b) for m, a, b in zip(self.mems, lo, hi) if a < b]
        if self.take_stored is not None and not parts and self._whole(i) and \
                self.take_stored(i):
            return None
        region = reader.read_region(i)
        if i == self.first or i == self.end - 1:
            ordered = Ordered(region)
            a = ordered.bound(*self.low) if i == self.first else 0
            b = upto(ordered, *self.high) if i == self.end - 1 else len(region)
            region = region.slice(a, max(a, b))
        # files hold no deletes: a region no memtable row falls into is as it is
        out = drop_deletes(merge([region] + parts)) if parts else region
        if not len(out):
            return None
        return reverse(out) if self.descending else out

    def _whole(self, i: int) -> bool:
        """Whether no bound cuts region i."""
        return (i != self.first or self.low == LOWEST) and \
            (i != self.end - 1 or self.high == HIGHEST)

    def _prefetch(self, reader: Reader, i: int, ahead: int) -> None:
        """A cloud file: the GETs of region i and of the next `ahead` start now
        (upwards, of the next AHEAD_REGIONS: the read-ahead's budget decides how
        far, in GETs of neighbouring regions; once it reaches the last region,
        beyond() is asked to read ahead past this partition)."""
        if self.descending:
            for j in range(i, max(i - ahead, self.first) - 1, -1):
                reader.prefetch(j, 1, ascending=False)  # nearest first
            return
        count = min(AHEAD_REGIONS, self.end - i)
        if reader.prefetch(i, count) and i + count >= self.end and self.beyond is not None:
            self.beyond()

    def _memtables(self, lo: list[int], hi: list[int]) -> Iterator[Rows]:
        chunk = CHUNK if self.windowed else MAX_ID
        first = min(FIRST_CHUNK, chunk) if self.descending else chunk
        for out in memtable_windows(self.mems, lo, hi, chunk, first, self.descending):
            yield reverse(out) if self.descending else out


def memtable_windows(mems: list[Ordered], lo: list[int], hi: list[int], chunk: int,
                     first: int, descending: bool = False) -> Iterator[Rows]:
    """Rows lo..hi of sorted memtables merged (a later one wins on equal (id, key)),
    deletes dropped, a window at a time, upwards or downwards (each window still in
    ascending order). A window ends `chunk` rows on in whichever memtable gets there
    first, so equal events of two memtables always meet in one window, and a window
    only one memtable has rows in is a view of it, never a copy. The first window
    takes `first` rows, doubling up to `chunk`."""
    lo, hi = list(lo), list(hi)
    size = first
    while live := [j for j in range(len(mems)) if lo[j] < hi[j]]:
        parts = []
        for j, cut in zip(live, _window_cuts(mems, live, lo, hi, size, descending)):
            if descending:
                parts.append(mems[j].rows.slice(cut, hi[j]))
                hi[j] = cut
            else:
                parts.append(mems[j].rows.slice(lo[j], cut))
                lo[j] = cut
        size = min(size * 2, chunk)
        out = drop_deletes(merge(parts))
        if len(out):
            yield out


def _window_cuts(mems: list[Ordered], live: list[int], lo: list[int], hi: list[int],
                 size: int, descending: bool) -> list[int]:
    """Where the next window ends in each live memtable: at the first (upwards) or
    last (downwards) of their events `size` rows on, with every equal event."""
    if len(live) == 1:  # the rows of one memtable are unique: a plain count
        j = live[0]
        return [max(hi[j] - size, lo[j]) if descending else min(lo[j] + size, hi[j])]
    rows = [mems[j].rows for j in live]
    if descending:
        edges = [max(hi[j] - size, lo[j]) for j in live]
        pivot = max((int(r.ids[e]), r.key(e)) for r, e in zip(rows, edges))
        return [min(max(mems[j].bound(*pivot, "left"), lo[j]), hi[j]) for j in live]
    edges = [min(lo[j] + size, hi[j]) - 1 for j in live]
    pivot = min((int(r.ids[e]), r.key(e)) for r, e in zip(rows, edges))
    return [max(lo[j], min(mems[j].bound(*pivot, "right"), hi[j])) for j in live]


def upto(ordered: Ordered, id_: int, key: bytes | None) -> int:
    """Number of rows <= (id, key); with key None, of rows whose id is <= id."""
    if key is not None:
        return ordered.bound(id_, key, "right")
    if id_ >= MAX_ID:
        return len(ordered)
    return ordered.bound(id_ + 1, b"", "left")


def regions_upto(index: Index, id_: int, key: bytes | None) -> int:
    """Number of regions whose first event is <= (id, key) (key None: any key of id):
    the regions past them hold nothing at or below the bound."""
    mins = index.entries["min_id"]
    if key is None:
        return int(np.searchsorted(mins, np.uint64(id_), side="right"))
    i = int(np.searchsorted(mins, np.uint64(id_), side="left"))
    while i < index.regions and int(mins[i]) == id_ and index.min_key(i) <= key:
        i += 1
    return i


def reverse(rows: Rows) -> Rows:
    """The rows in the opposite order: one gather per column."""
    return rows.take(np.arange(len(rows) - 1, -1, -1)) if len(rows) > 1 else rows


# memtable -> (row count, its first rows sorted): sorted once per count and process
_sorted: WeakKeyDictionary = WeakKeyDictionary()


def sorted_rows(mt, n: int) -> Rows:
    """The first n rows of a memtable in (id, key) order, newest of equal keys only.

    Appends of ascending ids keep a memtable sorted (the common case), and then
    these are views of shared memory; otherwise the sort is kept per row count."""
    rows = Rows(*mt.rows(n))
    if mt.sorted_upto() >= n:
        return rows
    cached = _sorted.get(mt)
    if cached is not None and cached[0] == n:
        return cached[1]
    result = sort_dedup(rows)
    _sorted[mt] = (n, result)
    return result
