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
"""
from __future__ import annotations

import struct

import numpy as np

from ..errors import CorruptionError
from .rows import U64, Rows

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


def decode(data, origin: str = "region") -> Rows:
    """Bytes -> Rows; the arrays are views of data where possible. The header's
    counts are checked against the length of data before anything is sized by them."""
    buf = np.frombuffer(data, np.uint8)
    if len(buf) < HEADER.size:
        raise CorruptionError(f"{origin}: truncated header")
    n, kb, vb, _ = HEADER.unpack_from(buf, 0)
    if len(buf) != HEADER.size + ROW_BYTES * n + kb + vb:
        raise CorruptionError(f"{origin}: size does not match its header")
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
