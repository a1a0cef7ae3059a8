"""Region encoding: sorted events in columnar form, one block of bytes.

Layout (little endian):
    header   count u64, key bytes u64, value bytes u64, reserved u64
    ids      u64[count]
    vlen     u32[count]   value lengths
    klen     u8[count]    key lengths (keys are at most 255 bytes)
    flags    u8[count]
    keys     key bytes, concatenated
    values   value bytes, concatenated
Lengths rather than offsets: fixed-size values give a constant column that
compresses to almost nothing. The same encoding, uncompressed, is the payload
of a WAL record.

decode() gives one region as views of its bytes; a Decoder puts many regions,
one after another, into columns made once for them all (a scan's one batch).
"""
from __future__ import annotations

import struct

import numpy as np

from ..errors import CorruptionError
from .rows import U64, Rows, empty

HEADER = struct.Struct("<QQQQ")
ROW_BYTES = 14  # id, value length, key length, flags


def encoded_size(rows: Rows) -> int:
    n = len(rows)
    return HEADER.size + ROW_BYTES * n + len(rows.key_data) + len(rows.value_data)


def encode_parts(rows: Rows) -> list:
    """The encoding as a list of buffers, in order (header, columns, keys,
    values): for a vectored write that copies the event data only once."""
    n = len(rows)
    vo, ko = rows.value_offsets, rows.key_offsets
    return [HEADER.pack(n, len(rows.key_data), len(rows.value_data), 0),
            rows.ids.astype("<u8", copy=False),
            (vo[1:] - vo[:-1]).astype("<u4"),
            (ko[1:] - ko[:-1]).astype(np.uint8) if len(rows.key_data) else np.zeros(n, np.uint8),
            rows.flags, rows.key_data, rows.value_data]


def encode(rows: Rows) -> bytearray:
    out = bytearray(encoded_size(rows))
    buf = np.frombuffer(out, np.uint8)
    pos = 0
    for part in encode_parts(rows):
        part = np.frombuffer(part, np.uint8) if isinstance(part, bytes) else part.view(np.uint8)
        buf[pos:pos + len(part)] = part
        pos += len(part)
    return out


def header_counts(buf: np.ndarray, origin: str = "region") -> tuple[int, int, int]:
    """(events, key bytes, value bytes) of an encoding's header, checked against the
    length of buf before anything is sized by them."""
    if len(buf) < HEADER.size:
        raise CorruptionError(f"{origin}: truncated header")
    n, kb, vb, _ = HEADER.unpack_from(buf, 0)
    if len(buf) != HEADER.size + ROW_BYTES * n + kb + vb:
        raise CorruptionError(f"{origin}: size does not match its header")
    return n, kb, vb


def decode(data, origin: str = "region") -> Rows:
    """Bytes -> Rows; the arrays are views of data where possible. The header's
    counts are checked against the length of data before anything is sized by them."""
    buf = np.frombuffer(data, np.uint8)
    n, kb, vb = header_counts(buf, origin)
    pos = HEADER.size
    ids = buf[pos:pos + 8 * n].view("<u8")
    pos += 8 * n
    vlen = buf[pos:pos + 4 * n].view("<u4")
    pos += 4 * n
    klen = buf[pos:pos + n]
    pos += n
    flags = buf[pos:pos + n]
    pos += n
    keys = buf[pos:pos + kb]
    values = buf[pos + kb:pos + kb + vb]
    ko = np.zeros(n + 1, U64)
    if kb:
        np.cumsum(klen, out=ko[1:])
    vo = np.zeros(n + 1, U64)
    np.cumsum(vlen, out=vo[1:])
    if int(ko[-1]) != kb or int(vo[-1]) != vb:
        raise CorruptionError(f"{origin}: lengths do not add up to its data")
    return Rows(ids, flags, ko, keys, vo, values)


class Decoder:
    """Regions decoded one after another into one Rows, in arrays made once for them
    all: what concat() of their decode() gives, without arrays per region. A region
    is either read straight into its places (slots(), then placed(): a vectored
    read), or copied there from its encoding (add(), from bytes just decompressed,
    still in the CPU caches).

    events, data: the events and the key and value bytes of the regions to come
    together (the region index's counts); a region is checked to fit what is left
    before anything is put in its places. One allocation holds every column
    (allocate(size): a writable buffer, see rows.empty): one large block rather
    than a few per region.
    """

    def __init__(self, events: int, data: int, allocate=None) -> None:
        n = events
        sizes = (8 * n, 8 * (n + 1), 8 * (n + 1), n, 4 * n, n, data)
        starts = [0]
        for size in sizes:
            starts.append(starts[-1] + -(-size // 64) * 64)  # each part 64-byte aligned
        slab = empty(starts[-1], allocate)
        ids, vo, ko, flags, vlen, klen, values = (
            slab[a:a + size] for a, size in zip(starts, sizes))
        self._ids, self._vlen, self._klen, self._values = ids, vlen, klen, values
        self._value_offsets, self._key_offsets = vo.view(U64), ko.view(U64)
        self._flags = flags
        self._header = np.empty(HEADER.size, np.uint8)
        self._keys: list[np.ndarray] = []  # the key bytes of regions with keys
        self._regions: list[tuple[int, int, int, str]] = []  # (events, kb, vb, origin)
        self._events = self._values_at = self._used = 0  # so far; _used: key and value bytes
        self._slotted = (0, 0)  # events, key and value bytes of the region in its slots

    def slots(self, events: int, data: int, origin: str = "region") -> list[np.ndarray]:
        """The places of the next region's encoding, in its order: header, ids, value
        lengths, key lengths, flags, then keys and values together (placed() takes
        the keys out). events, data: its events, its key and value bytes, as its
        size gives them."""
        at, v = self._events, self._values_at
        if data < 0 or 8 * (at + events) > len(self._ids) or \
                self._used + data > len(self._values):
            raise CorruptionError(f"{origin}: holds more than its index gives")
        self._slotted = (events, data)
        return [self._header, self._ids[8 * at:8 * (at + events)],
                self._vlen[4 * at:4 * (at + events)], self._klen[at:at + events],
                self._flags[at:at + events], self._values[v:v + data]]

    def placed(self, origin: str = "region") -> int:
        """Take in the region put in its slots, its header checked against them; the
        number of its events."""
        n, data = self._slotted
        count, kb, vb, _ = HEADER.unpack_from(self._header, 0)
        if count != n or kb + vb != data:
            raise CorruptionError(f"{origin}: size does not match its header")
        at, v = self._events, self._values_at
        if kb:
            if not self._keys:  # the regions before had none: their lengths count as 0
                self._klen[:at] = 0
            self._keys.append(self._values[v:v + kb].copy())
            self._values[v:v + vb] = self._values[v + kb:v + data]  # numpy sees the overlap
        elif self._keys:
            self._klen[at:at + n] = 0  # as decode: without key bytes, key lengths are 0
        self._regions.append((n, kb, vb, origin))
        self._events, self._values_at, self._used = at + n, v + vb, self._used + data
        return n

    def add(self, data, origin: str = "region") -> int:
        """Append a region's encoding (any bytes-like); the number of its events."""
        buf = np.frombuffer(data, np.uint8)
        n, kb, vb = header_counts(buf, origin)
        pos = 0
        for part in self.slots(n, kb + vb, origin):
            part[:] = buf[pos:pos + len(part)]
            pos += len(part)
        return self.placed(origin)

    def rows(self) -> Rows:
        """The regions added, as one Rows; each region's lengths checked to add up
        to its data (as decode checks them)."""
        n = self._events
        vo = self._value_offsets[:n + 1]
        vo[0] = 0
        np.cumsum(self._vlen[:4 * n].view("<u4"), out=vo[1:])
        ko = self._key_offsets[:n + 1]
        if self._keys:
            ko[0] = 0
            np.cumsum(self._klen[:n], out=ko[1:])
        else:
            ko.fill(0)
        self._check(vo, ko)
        keys = np.concatenate(self._keys) if self._keys else self._values[:0]
        return Rows(self._ids[:8 * n].view("<u8"), self._flags[:n], ko, keys, vo,
                    self._values[:self._values_at])

    def _check(self, vo: np.ndarray, ko: np.ndarray) -> None:
        sizes = np.array([r[:3] for r in self._regions], np.uint64).reshape(-1, 3)
        ends = np.cumsum(sizes[:, 0]).astype(np.int64)
        starts = ends - sizes[:, 0].astype(np.int64)
        bad = (vo[ends] - vo[starts] != sizes[:, 2]) | (ko[ends] - ko[starts] != sizes[:, 1])
        if bad.any():
            origin = self._regions[int(np.flatnonzero(bad)[0])][3]
            raise CorruptionError(f"{origin}: lengths do not add up to its data")
