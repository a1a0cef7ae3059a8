"""The user-facing records: Event (one) and Batch (columns of many)."""
from __future__ import annotations

import sys
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from .format.rows import DELETE, Rows

if TYPE_CHECKING:
    import pyarrow as pa  # Batch.to_arrow's type; pyarrow is imported only when asked for

try:
    from ._events import build as _build
except ImportError:  # installed without a C compiler: the same records, built in Python
    _build = None
if sys.byteorder != "little":  # it reads the columns' u64 as the host's
    _build = None


class Event(tuple):
    """One event: (id, key) is its primary key; delete marks a delete.

    Immutable (a tuple underneath): cursors make millions of them, and a tuple
    is what Python builds fastest.
    """

    __slots__ = ()

    def __new__(cls, id: int | None = None, key: bytes = b"", value: bytes = b"",
                delete: bool = False, flags: int = 0) -> "Event":
        return tuple.__new__(cls, (id, key, value, flags | (DELETE if delete else 0)))

    if TYPE_CHECKING:  # what the properties below give, read-only, for type checkers
        @property
        def id(self) -> int | None: ...
        @property
        def key(self) -> bytes: ...
        @property
        def value(self) -> bytes: ...
        @property
        def flags(self) -> int: ...
    else:  # a C-level getter each: read millions of times
        id = property(itemgetter(0), doc="u64 id, or None for the next serial id")
        key = property(itemgetter(1), doc="bytes, at most 255")
        value = property(itemgetter(2), doc="bytes")
        flags = property(itemgetter(3), doc="the C API's flag bits (1 = delete)")

    @property
    def delete(self) -> bool:
        return bool(self[3] & DELETE)

    def __getnewargs__(self):
        return (self[0], self[1], self[2], False, self[3])

    def __repr__(self) -> str:
        extra = ", delete=True" if self.delete else ""
        return f"Event(id={self[0]}, key={self[1]!r}, value={self[2]!r}{extra})"


_make = tuple.__new__


class Batch(Rows):
    """A chunk of events in (id, key) order, as numpy columns.

    ids (uint64), key_offsets / value_offsets (uint64, n+1 entries, zero-based)
    into key_data / value_data (uint8). Arrays may be read-only views of shared
    memory or of a decompressed region: copy them to keep them past the cursor.
    """

    @classmethod
    def of(cls, rows: Rows) -> "Batch":
        return cls(rows.ids, rows.flags, rows.key_offsets, rows.key_data,
                   rows.value_offsets, rows.value_data)

    def events(self, a: int = 0, b: int | None = None) -> list[Event]:
        """One Event per row of rows a..b, built without a Python-level loop."""
        b = len(self.ids) if b is None else b
        columns = (self.ids[a:b], self.flags[a:b], self.key_offsets[a:b + 1], self.key_data,
                   self.value_offsets[a:b + 1], self.value_data)
        if _build is not None and all(c.flags.c_contiguous for c in columns):
            return _build(Event, *columns)
        return self._events(a, b)

    def _events(self, a: int, b: int) -> list[Event]:
        n = b - a
        values = _cut(self.value_offsets, self.value_data, a, b)
        keys = _cut(self.key_offsets, self.key_data, a, b) if self.key_offsets[b] != \
            self.key_offsets[a] else repeat(b"", n)
        flags: Any = self.flags[a:b]  # the column, then its values: a list or zeros
        flags = flags.tolist() if flags.any() else repeat(0, n)
        return list(map(_make, repeat(Event, n), zip(self.ids[a:b].tolist(), keys, values, flags)))

    def to_arrow(self) -> pa.RecordBatch:
        """The batch as a pyarrow.RecordBatch: id (uint64), key and value (large_binary).

        Zero-copy where the batch's memory is its own (events decoded from a
        partition file's region, or merged): Arrow takes the numpy buffers as
        they are. Copied where they view a memtable's shared memory, which a
        refresh retires and this process then unmaps while the RecordBatch may
        still be in use. Cursors never yield deletes, so there is no delete column.
        Needs pyarrow (pip install 'monotone-py[arrow]').
        """
        from .frames import batch_to_arrow  # pyarrow only when asked for
        return batch_to_arrow(self)

    def __repr__(self) -> str:
        return f"Batch({len(self)} events)"


def _cut(offsets, data, a: int, b: int):
    """The byte strings of rows a..b of an (offsets, data) column."""
    n = b - a
    off = offsets[a:b + 1]
    base, end = int(off[0]), int(off[-1])
    if end == base:
        return repeat(b"", n)
    blob = data[base:end]
    width = (end - base) // n
    if width * n == end - base and (np.diff(off) == width).all():
        return blob.view(f"V{width}").tolist()  # equal lengths: numpy cuts, in C
    blob = blob.tobytes()
    off = (off - off.dtype.type(base)).tolist()
    return map(blob.__getitem__, map(slice, off, off[1:]))
