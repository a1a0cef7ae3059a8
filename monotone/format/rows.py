"""Rows: events in columnar form, and the vectorized operations on them.

Every hot path (batch write, memtable scan, merge, region encode/decode) moves
events as Rows: ids, flags and zero-based offsets (n+1 entries) into key and
value byte arrays. Nothing here loops over events in Python.
"""
from __future__ import annotations

import numpy as np

U64 = np.uint64
MAX_ID = 2**64 - 1  # the highest id; as a written id, it asks for the next serial id
DELETE = 1  # flag bit of a delete, as in the original C API
MAX_KEY = 255
MAX_VALUE = 128 << 20  # a value's bytes: any region then stays within what a reader takes
EMPTY_U8 = np.zeros(0, np.uint8)


class Rows:
    """A column store of n events (offsets are zero-based, n+1 long)."""

    __slots__ = ("ids", "flags", "key_offsets", "key_data", "value_offsets", "value_data")
    ids: np.ndarray
    flags: np.ndarray
    key_offsets: np.ndarray
    key_data: np.ndarray
    value_offsets: np.ndarray
    value_data: np.ndarray

    def __init__(self, ids, flags, key_offsets, key_data, value_offsets, value_data):
        self.ids = ids
        self.flags = flags
        self.key_offsets = key_offsets
        self.key_data = key_data
        self.value_offsets = value_offsets
        self.value_data = value_data

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> "Rows":
        zero = np.zeros(1, U64)
        return cls(np.zeros(0, U64), np.zeros(0, np.uint8), zero, EMPTY_U8, zero, EMPTY_U8)

    @property
    def has_keys(self) -> bool:
        return int(self.key_offsets[-1]) > int(self.key_offsets[0])

    @property
    def nbytes(self) -> int:
        return 9 * len(self.ids) + len(self.key_data) + len(self.value_data)

    def key(self, i: int) -> bytes:
        return self.key_data[int(self.key_offsets[i]):int(self.key_offsets[i + 1])].tobytes()

    def value(self, i: int) -> bytes:
        return self.value_data[int(self.value_offsets[i]):int(self.value_offsets[i + 1])].tobytes()

    def slice(self, a: int, b: int) -> "Rows":
        """Rows a..b without copying the data (offsets are rebased)."""
        ko, vo = self.key_offsets[a:b + 1], self.value_offsets[a:b + 1]
        k0, k1, v0, v1 = int(ko[0]), int(ko[-1]), int(vo[0]), int(vo[-1])
        return Rows(self.ids[a:b], self.flags[a:b], ko - U64(k0), self.key_data[k0:k1],
                    vo - U64(v0), self.value_data[v0:v1])

    def take(self, idx: np.ndarray) -> "Rows":
        """Rows in the order of idx (a gather), copying each run of neighbours at once."""
        idx = np.asarray(idx, np.int64)
        if len(idx) and idx[0] == 0 and len(idx) == len(self) and _is_identity(idx):
            return self
        ko, kd = gather(self.key_offsets, self.key_data, idx)
        vo, vd = gather(self.value_offsets, self.value_data, idx)
        return Rows(self.ids[idx], self.flags[idx], ko, kd, vo, vd)


def empty(size: int, allocate=None) -> np.ndarray:
    """An uninitialised uint8 array of size bytes: numpy's memory, or allocate(size)'s
    (a writable buffer; frames.py: Arrow's memory pool, which its arrays go back to)."""
    if allocate is None:
        return np.empty(size, np.uint8)
    return np.frombuffer(allocate(size), np.uint8)


def _is_identity(idx: np.ndarray) -> bool:
    return bool(idx[-1] == len(idx) - 1 and (len(idx) < 2 or np.all(np.diff(idx) == 1)))


def concat(parts: list[Rows]) -> Rows:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Rows.empty()
    if len(parts) == 1:
        return parts[0]
    return Rows(np.concatenate([p.ids for p in parts]),
                np.concatenate([p.flags for p in parts]),
                _concat_offsets([p.key_offsets for p in parts]),
                np.concatenate([p.key_data for p in parts]),
                _concat_offsets([p.value_offsets for p in parts]),
                np.concatenate([p.value_data for p in parts]))


def _concat_offsets(offsets: list[np.ndarray]) -> np.ndarray:
    out = [np.zeros(1, U64)]
    base = U64(0)
    for o in offsets:
        out.append(o[1:] + base)
        base = base + o[-1]
    return np.concatenate(out)


def gather(offsets: np.ndarray, data: np.ndarray, idx: np.ndarray):
    """Variable-length gather: the byte strings idx of (offsets, data), packed."""
    n = len(idx)
    starts = offsets[idx].astype(np.int64)
    ends = offsets[idx + 1].astype(np.int64)
    lens = ends - starts
    out_off = np.zeros(n + 1, U64)
    np.cumsum(lens, out=out_off[1:])
    total = int(out_off[-1])
    if total == 0:
        return out_off, EMPTY_U8
    width = int(lens[0])
    if width and np.all(lens == width) and len(data) % width == 0 and not np.any(starts % width):
        # fixed-size values laid out on a grid: a row gather of a 2-D view
        return out_off, data.reshape(-1, width)[starts // width].reshape(-1)
    breaks = np.flatnonzero(idx[1:] != idx[:-1] + 1) + 1
    if len(breaks) < 64 or len(breaks) * 64 < n:
        out = np.empty(total, np.uint8)
        run_starts = [0] + breaks.tolist()
        run_ends = breaks.tolist() + [n]
        for a, b in zip(run_starts, run_ends):
            s, e, o = int(starts[a]), int(ends[b - 1]), int(out_off[a])
            out[o:o + e - s] = data[s:e]
        return out_off, out
    pos = np.repeat(starts - out_off[:-1].astype(np.int64), lens)
    pos += np.arange(total, dtype=np.int64)
    return out_off, data[pos]


def pack_bytes(items) -> tuple[np.ndarray, np.ndarray]:
    """A list of bytes -> (offsets, data)."""
    lens = np.fromiter((len(x) for x in items), np.int64, len(items))
    offsets = np.zeros(len(items) + 1, U64)
    np.cumsum(lens, out=offsets[1:])
    data = np.frombuffer(b"".join(items), np.uint8) if len(items) else EMPTY_U8
    return offsets, data


def key_width(*rows: Rows) -> int:
    """Longest key among the rows (0 when every key is empty)."""
    width = 0
    for r in rows:
        if len(r.key_data) and r.has_keys:
            width = max(width, int(np.diff(r.key_offsets).max()))
    return width


def sort_keys(rows: Rows, width: int) -> np.ndarray:
    """A comparable array giving the (id, key) order of the rows.

    With no keys it is the ids themselves. Otherwise each row becomes a fixed
    byte string: big-endian id, key padded with zeros, key length; comparing
    those strings compares ids, then key bytes, shorter key first on a tie.
    """
    if width == 0:
        return rows.ids
    n = len(rows)
    w = 8 + width + 1
    mat = np.zeros((n, w), np.uint8)
    mat[:, :8] = rows.ids.astype(">u8").view(np.uint8).reshape(n, 8)
    starts = rows.key_offsets[:-1].astype(np.int64)
    lens = np.diff(rows.key_offsets).astype(np.int64)
    cols = np.arange(width)
    valid = cols[None, :] < lens[:, None]
    if valid.any():
        pos = starts[:, None] + cols[None, :]
        mat[:, 8:8 + width][valid] = rows.key_data[pos[valid]]
    mat[:, -1] = lens
    return mat.view(f"S{w}").reshape(n)


def point_key(id_: int, key: bytes, width: int):
    """The sort key of one (id, key) position, comparable with sort_keys(width)."""
    if width == 0:
        return U64(id_)
    pad = key[:width].ljust(width, b"\0")
    point = id_.to_bytes(8, "big") + pad + bytes([len(key)])
    return np.array([point], dtype=f"S{8 + width + 1}")[0]


def sort_dedup(rows: Rows, width: int | None = None) -> Rows:
    """Order rows by (id, key); of equal (id, key) the later row wins."""
    n = len(rows)
    if n < 2:
        return rows
    if width is None:
        width = key_width(rows)
    if width == 0 and (rows.ids[1:] > rows.ids[:-1]).all():
        return rows
    sk = sort_keys(rows, width)
    order = np.argsort(sk, kind="stable")
    sk = sk[order]
    keep = np.ones(n, bool)
    keep[:-1] = sk[1:] != sk[:-1]
    return rows.take(order[keep])


def drop_deletes(rows: Rows) -> Rows:
    if not len(rows) or not rows.flags.any():
        return rows
    return rows.take(np.flatnonzero((rows.flags & DELETE) == 0))


def merge(sources: list[Rows]) -> Rows:
    """Merge sorted sources into one sorted run; later sources win on equal (id, key).

    Deletes are kept (they must still hide older rows further down); callers
    drop them once nothing older remains.
    """
    sources = [s for s in sources if len(s)]
    if not sources:
        return Rows.empty()
    if len(sources) == 1:
        return sources[0]
    return sort_dedup(concat(sources), key_width(*sources))


class Ordered:
    """Sorted rows plus a lazily built sort key, for finding (id, key) positions."""

    __slots__ = ("rows", "_sk", "_width")

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self._sk = None
        self._width = -1

    def __len__(self) -> int:
        return len(self.rows)

    def bound(self, id_: int, key: bytes, side: str = "left") -> int:
        """Number of rows < (id, key) with side='left', <= with side='right'."""
        rows = self.rows
        if not len(rows) or (side == "left" and not id_ and not key):
            return 0  # nothing is below the lowest position
        if not key and not rows.has_keys:
            return int(np.searchsorted(rows.ids, U64(id_), side=side))
        if self._sk is None or len(key) > self._width:
            self._width = max(key_width(rows), len(key))
            self._sk = sort_keys(rows, self._width)
        return int(np.searchsorted(self._sk, point_key(id_, key, self._width), side=side))
