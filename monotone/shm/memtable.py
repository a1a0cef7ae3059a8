"""A memtable: one partition's in-memory events, in a shared-memory segment.

Columns (ids, flags, key and value offsets) and two byte arenas, appended by
writers under the partition lock and read by anyone without a lock. Rows are
never changed once published, so readers get numpy views, not copies. The
published row count lives in the partition map; a writer fills rows past it
and then publishes, so rows a dead writer left half-written are never seen
and are overwritten by the next append.

Rows go in as any object with the six column arrays (ids, flags, key_offsets,
key_data, value_offsets, value_data; offsets zero-based, n+1 long) and come
out as a Columns tuple of the same six: this package knows nothing of what
the engine does with them.

The segment is reserved sparse and far larger than it will usually grow; pages
are backed (fallocate) in chunks just before they are written.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import Full, ShmError
from .segment import Segment, unlink

U64 = np.uint64

MAGIC = 0x4D544E4D454D31  # "MTNMEM1"
PAGE = 4096
CAP_ROWS = 1 << 22           # virtual sizes: pages are backed only as they fill
CAP_KEYS = 1 << 30
CAP_VALUES = 1 << 32
ROW_CHUNK = 1 << 16          # rows backed at a time
BYTE_CHUNK = 4 << 20         # arena bytes backed at a time
# header words
(M_MAGIC, M_SEGNO, M_SORTED, M_LSN_MAX, M_ALLOC_ROWS, M_ALLOC_KEYS, M_ALLOC_VALUES,
 M_CAP_ROWS, M_CAP_KEYS, M_CAP_VALUES) = range(10)


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


def _align(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


class Columns(NamedTuple):
    """Rows of a memtable as views of its shared memory (read-only)."""
    ids: np.ndarray
    flags: np.ndarray
    key_offsets: np.ndarray
    key_data: np.ndarray
    value_offsets: np.ndarray
    value_data: np.ndarray


class Layout:
    """Byte offsets of the areas of a memtable segment."""

    def __init__(self, rows: int = CAP_ROWS, keys: int = CAP_KEYS, values: int = CAP_VALUES):
        self.cap_rows, self.cap_keys, self.cap_values = rows, keys, values
        self.ids = PAGE
        self.flags = self.ids + _align(8 * rows)
        self.koff = self.flags + _align(rows)
        self.voff = self.koff + _align(8 * (rows + 1))
        self.keys = self.voff + _align(8 * (rows + 1))
        self.values = self.keys + _align(keys)
        self.size = self.values + _align(values)


LAYOUT = Layout()


class Memtable:
    def __init__(self, segment: Segment, layout: Layout = LAYOUT, ahead=None) -> None:
        self.segment = segment
        self.ahead = ahead  # runs a job in the background (prefault), or None
        self._prefaulted: dict[int, int] = {}  # header word -> backed up to, by prefault
        self.layout = lay = layout
        buf = segment.map
        self.header = np.frombuffer(buf, np.uint64, PAGE // 8, 0)
        self.ids = np.frombuffer(buf, np.uint64, lay.cap_rows, lay.ids)
        self.flags = np.frombuffer(buf, np.uint8, lay.cap_rows, lay.flags)
        self.koff = np.frombuffer(buf, np.uint64, lay.cap_rows + 1, lay.koff)
        self.voff = np.frombuffer(buf, np.uint64, lay.cap_rows + 1, lay.voff)
        self.keys = np.frombuffer(buf, np.uint8, lay.cap_keys, lay.keys)
        self.values = np.frombuffer(buf, np.uint8, lay.cap_values, lay.values)
        # what readers get: views that cannot write into shared memory
        self._ro = tuple(_read_only(a) for a in (self.ids, self.flags, self.koff,
                                                 self.keys, self.voff, self.values))

    @classmethod
    def create(cls, name: str, segno: int, layout: Layout = LAYOUT) -> "Memtable":
        seg = Segment(name, layout.size, create=True)
        try:
            seg.reserve(0, PAGE)
        except ShmError:
            seg.close()
            unlink(name)
            raise
        mt = cls(seg, layout)
        mt.header[M_SEGNO] = segno
        mt.header[M_CAP_ROWS] = layout.cap_rows
        mt.header[M_CAP_KEYS] = layout.cap_keys
        mt.header[M_CAP_VALUES] = layout.cap_values
        mt.header[M_MAGIC] = MAGIC
        return mt

    @classmethod
    def attach(cls, name: str, ahead=None) -> "Memtable":
        seg = Segment(name)
        header = np.frombuffer(seg.map, np.uint64, 16, 0)
        if int(header[M_MAGIC]) != MAGIC:
            seg.close()
            raise ShmError(f"shared memory segment {name} is not a memtable")
        layout = Layout(int(header[M_CAP_ROWS]), int(header[M_CAP_KEYS]), int(header[M_CAP_VALUES]))
        del header
        if layout.size > seg.size:  # sizes read from shared memory are checked first
            seg.close()
            raise ShmError(f"shared memory segment {name}: its header describes "
                           f"{layout.size} bytes, the segment has {seg.size}")
        return cls(seg, layout, ahead)

    @property
    def segno(self) -> int:
        return int(self.header[M_SEGNO])

    @property
    def lsn_max(self) -> int:
        return int(self.header[M_LSN_MAX])

    # reading
    def rows(self, n: int) -> Columns:
        """The first n rows in append order (views, no copy)."""
        kb, vb = int(self.koff[n]), int(self.voff[n])
        ids, flags, koff, keys, voff, values = self._ro
        return Columns(ids[:n], flags[:n], koff[:n + 1], keys[:kb], voff[:n + 1], values[:vb])

    def sorted_upto(self) -> int:
        """How many of the first rows are known to be in (id, key) order, unique (appends
        of ascending ids keep a memtable sorted: the common case)."""
        return int(self.header[M_SORTED])

    def backed_bytes(self) -> int:
        """Shared memory this memtable holds (pages reserved so far)."""
        h = self.header
        return 25 * int(h[M_ALLOC_ROWS]) + int(h[M_ALLOC_KEYS]) + int(h[M_ALLOC_VALUES])

    def bytes_used(self, n: int) -> int:
        return 9 * n + int(self.koff[n]) + int(self.voff[n])

    def last(self, n: int) -> tuple[int, bytes]:
        return int(self.ids[n - 1]), self.keys[int(self.koff[n - 1]):int(self.koff[n])].tobytes()

    # writing (caller holds the partition lock)
    def reserve(self, n: int, rows) -> None:
        """Make sure rows fit after the first n, backing memory now (or raise)."""
        k = len(rows)
        lay = self.layout
        kbase, vbase = int(self.koff[n]), int(self.voff[n])
        kb, vb = len(rows.key_data), len(rows.value_data)
        if n + k > lay.cap_rows or kbase + kb > lay.cap_keys or vbase + vb > lay.cap_values:
            raise Full("memtable is full: refresh the partition (REFRESH PARTITION) before "
                       "writing more to it", self.segno)
        self._back(M_ALLOC_ROWS, n + k, ROW_CHUNK, lay.cap_rows, self._row_ranges)
        if kb:
            self._back(M_ALLOC_KEYS, kbase + kb, BYTE_CHUNK, lay.cap_keys, self._key_ranges)
        self._back(M_ALLOC_VALUES, vbase + vb, BYTE_CHUNK, lay.cap_values, self._value_ranges)

    def append(self, n: int, rows) -> int:
        """Write rows after the first n, reserve(n, rows) done; return the new row count
        (not yet published)."""
        k = len(rows)
        kbase, vbase = int(self.koff[n]), int(self.voff[n])
        kb, vb = len(rows.key_data), len(rows.value_data)
        end = n + k
        self.ids[n:end] = rows.ids
        self.flags[n:end] = rows.flags
        if kb:
            np.add(rows.key_offsets[1:], U64(kbase), out=self.koff[n + 1:end + 1])
            self.keys[kbase:kbase + kb] = rows.key_data
        else:  # no keys: every offset is where the keys end
            self.koff[n + 1:end + 1] = kbase
        np.add(rows.value_offsets[1:], U64(vbase), out=self.voff[n + 1:end + 1])
        self.values[vbase:vbase + vb] = rows.value_data
        return end

    def after_publish(self, n: int, end: int, lsn: int, in_order: bool) -> None:
        """Record what the published append means for readers of this memtable."""
        header = self.header
        if in_order and int(header[M_SORTED]) == n:
            header[M_SORTED] = end
        header[M_LSN_MAX] = lsn

    def raise_lsn_max(self, lsn: int) -> None:
        """A batch published for a writer that died (it could not say so itself)."""
        if int(self.header[M_LSN_MAX]) < lsn:
            self.header[M_LSN_MAX] = U64(lsn)

    def _back(self, word: int, need: int, chunk: int, cap: int, ranges) -> None:
        """Back the area up to need, a chunk at a time; and the next chunk ahead."""
        have = int(self.header[word])
        if need <= have:
            return
        target = min(cap, max(need, have + chunk))
        if target > self._prefaulted.get(word, 0):
            for offset, length in ranges(have, target):
                self.segment.reserve(offset, length)
        self.header[word] = U64(target)
        if self.ahead is not None and target < cap:
            end = min(cap, target + chunk)
            self.ahead(self._prefault, word, ranges(target, end), end)

    def _prefault(self, word: int, ranges, end: int) -> None:
        """Back and map ranges ahead; once all are backed, the area up to end needs no
        reserve by this process (what lies below the ranges was backed before the
        header said so)."""
        segment = self.segment
        if all([segment.prefault(offset, length) for offset, length in ranges]):
            self._prefaulted[word] = end

    def _key_ranges(self, a: int, b: int) -> list[tuple[int, int]]:
        return [(self.layout.keys + a, b - a)]

    def _value_ranges(self, a: int, b: int) -> list[tuple[int, int]]:
        return [(self.layout.values + a, b - a)]

    def _row_ranges(self, a: int, b: int) -> list[tuple[int, int]]:
        lay = self.layout
        return [(lay.ids + 8 * a, 8 * (b - a)), (lay.flags + a, b - a),
                (lay.koff + 8 * (a + 1), 8 * (b - a)), (lay.voff + 8 * (a + 1), 8 * (b - a))]

    def close(self) -> None:
        self.header = self.ids = self.flags = self.koff = self.voff = None
        self.keys = self.values = self._ro = None
        self.segment.close()


class MemtableCache:
    """This process's mappings of memtable segments, by segment number."""

    def __init__(self, name_of, ahead=None) -> None:
        self.name_of = name_of
        self.ahead = ahead
        self.maps: dict[int, Memtable] = {}

    def get(self, segno: int) -> Memtable:
        mt = self.maps.get(segno)
        if mt is None:
            mt = self.maps[segno] = Memtable.attach(self.name_of(segno), self.ahead)
        return mt

    def add(self, mt: Memtable) -> None:
        self.maps[mt.segno] = mt

    def forget(self, segno: int) -> None:
        """Drop our mapping; a cursor still holding the memtable keeps it until it is done."""
        self.maps.pop(segno, None)

    def prune(self, live: set[int]) -> None:
        """Unmap segments no partition uses any more."""
        for segno in [s for s in self.maps if s not in live]:
            self.forget(segno)

    def close(self) -> None:
        for mt in self.maps.values():
            mt.close()
        self.maps.clear()
