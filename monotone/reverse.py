"""Upper bounds, and reading a partition downwards, for cursors.

An upper bound is an (id, key) position, inclusive; a key of None stands for
every key of the id, so (max_id, None) means "ids <= max_id". A forward
cursor stops at one; a reverse cursor starts at one and walks down.

A partition is read downwards as the forward walk reads it upwards, mirrored:
the memtable rows above the file's last region come first, then the regions
from the last one at or below the bound down to the first, each merged with
the memtable rows of its range (a later source wins, deletes dropped once
merged), then reversed with one gather. Memtable rows are merged in chunks
from the top, so the last events cost the last rows only, whatever the
partition holds.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from .cloud import AHEAD
from .event import Batch
from .format.rows import Ordered, Rows, drop_deletes, merge, merged_windows
from .partition.fileformat import Index
from .snapshot import Opened, sorted_rows

TOP = 2**64 - 1  # the highest id: (TOP, None) bounds nothing
CHUNK = 1 << 16  # memtable rows merged at a time
FIRST_CHUNK = 1 << 10  # the first time: the last events should cost little


def upto(ordered: Ordered, id_: int, key: bytes | None) -> int:
    """Number of rows <= (id, key); with key None, of rows whose id is <= id."""
    if key is not None:
        return ordered.bound(id_, key, "right")
    if id_ >= TOP:
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


def descending(opened: Opened, id_: int = TOP, key: bytes | None = None) -> Iterator[Batch]:
    """A partition's events <= (id, key) in descending (id, key) order, a region
    (or a chunk of memtable rows) at a time; the file is closed at the end."""
    reader = opened.reader
    try:
        mems = [Ordered(sorted_rows(mt, n)) for mt, n in opened.memtables]
        hi = [upto(m, id_, key) for m in mems]
        last = -1 if reader is None else regions_upto(reader.index, id_, key) - 1
        if last < 0:  # nothing in the file is at or below the bound
            yield from _memtables(mems, [0] * len(mems), hi)
            return
        # the rows appended above the file's last region are the newest
        lo = _above(mems, reader.index, last, hi)
        yield from _memtables(mems, lo, hi)
        hi = lo
        for i in range(last, -1, -1):
            for j in range(i, max(i - AHEAD, 0) - 1, -1):
                reader.prefetch(j, 1)  # a cloud file: the GETs below start now, nearest first
            region = reader.read_region(i)
            if i == last:
                region = region.slice(0, upto(Ordered(region), id_, key))
            lo = _above(mems, reader.index, i - 1, hi) if i else [0] * len(mems)
            out = region
            if mems:  # files hold no deletes: without memtables nothing to merge or drop
                out = drop_deletes(merge([region] + [m.rows.slice(a, b)
                                                     for m, a, b in zip(mems, lo, hi)]))
            hi = lo
            if len(out):
                yield Batch.of(reverse(out))
    finally:
        if reader is not None:
            reader.close()


def _above(mems: list[Ordered], index: Index, i: int, hi: list[int]) -> list[int]:
    """Per memtable, where its rows above region i's last event begin (at most hi)."""
    max_id, max_key = int(index.entries["max_id"][i]), index.max_key(i)
    return [min(m.bound(max_id, max_key, "right"), h) for m, h in zip(mems, hi)]


def _memtables(mems: list[Ordered], lo: list[int], hi: list[int]) -> Iterator[Batch]:
    """Memtable rows lo..hi merged, in descending batches (FIRST_CHUNK rows first)."""
    for out in merged_windows(mems, lo, hi, CHUNK, FIRST_CHUNK, descending=True):
        yield Batch.of(reverse(out))
