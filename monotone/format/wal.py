"""WAL record framing.

    magic u32 | crc u32 | lsn u64 | ssn u64 | size u32 | data crc u32 | count u32 | flags u32
    payload: the batch in region encoding, uncompressed

crc covers the header after it, so a torn or zeroed tail is always caught;
with wal_crc the payload gets its own crc32 as well (flag bit 1).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..rows import Rows
from . import region

MAGIC = 0x4C41574D  # "MWAL"
HEADER = struct.Struct("<IIQQIIII")
FLAG_DATA_CRC = 1


@dataclass
class Record:
    lsn: int
    ssn: int
    rows: Rows
    size: int  # bytes of the record, header included


def encode(lsn: int, ssn: int, rows: Rows, data_crc: bool) -> bytes:
    payload = region.encode(rows)
    dcrc = zlib.crc32(payload) if data_crc else 0
    flags = FLAG_DATA_CRC if data_crc else 0
    tail = HEADER.pack(MAGIC, 0, lsn, ssn, len(payload), dcrc, len(rows), flags)[8:]
    head = struct.pack("<II", MAGIC, zlib.crc32(tail))
    return head + tail + payload


def decode_at(buf: memoryview, pos: int, origin: str):
    """The record at pos, or None when what is there is torn or damaged."""
    if len(buf) - pos < HEADER.size:
        return None
    magic, crc, lsn, ssn, size, dcrc, count, flags = HEADER.unpack_from(buf, pos)
    if magic != MAGIC or zlib.crc32(buf[pos + 8:pos + HEADER.size]) != crc:
        return None
    start = pos + HEADER.size
    if len(buf) - start < size:
        return None
    payload = buf[start:start + size]
    if flags & FLAG_DATA_CRC and zlib.crc32(payload) != dcrc:
        return None
    try:
        rows = region.decode(payload, origin)
    except Exception:
        return None
    if len(rows) != count:
        return None
    return Record(lsn, ssn, rows, HEADER.size + size)
