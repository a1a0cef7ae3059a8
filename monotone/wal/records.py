"""WAL record framing.

    magic u32 | crc u32 | lsn u64 | ssn u64 | size u32 | data crc u32 | count u32 | flags u32
    payload: the batch in region encoding, uncompressed; for a drop record
         (flag DROP) the dropped partition's min and max, u64 each; for the
         record that starts a file (flag START, lsn 0) the id and final size of
         the file its writer rotated out of (0, 0 for a writer's first file),
         then the uuid of the repository the file belongs to (16 bytes; absent
         in files written before it was)

crc (zlib's crc32) covers the header after it, so a torn or zeroed tail is
always caught; with wal_crc the payload gets its own checksum as well (flag
DATA_CRC): the low 32 bits of xxh3-64 (flag DATA_XXH3; about nine times
cheaper than crc32 on a batch, which was an eighth of a writer's CPU), or
zlib's crc32 in records written before it.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
from xxhash import xxh3_64, xxh3_64_intdigest

from ..format import region
from ..format.rows import Rows

MAGIC = 0x4C41574D  # "MWAL"
HEADER = struct.Struct("<IIQQIIII")
FLAG_DATA_CRC = 1
FLAG_DROP = 2
FLAG_START = 4
FLAG_DATA_XXH3 = 8  # with DATA_CRC: the payload's checksum is xxh3-64's low 32 bits
_DROP = struct.Struct("<QQ")
ORIGIN = 16


@dataclass
class Record:
    lsn: int
    ssn: int
    rows: Rows | None
    size: int  # bytes of the record, header included
    drop: tuple[int, int] | None = None  # (min, max) of a dropped partition
    start: tuple[int, int] | None = None  # (id, size) of the file before this one
    origin: bytes | None = None  # a start record's repository uuid (16 bytes)


def encode(lsn: int, ssn: int, rows: Rows, data_crc: bool) -> list:
    """A batch record as a list of buffers (for os.writev: no copy of the data)."""
    parts = region.encode_parts(rows)
    return _frame(lsn, ssn, parts, region.encoded_size(rows), len(rows), data_crc, 0)


def encode_drop(lsn: int, ssn: int, lo: int, hi: int) -> list:
    payload = _DROP.pack(lo, hi)
    return _frame(lsn, ssn, [payload], len(payload), 0, True, FLAG_DROP)


def encode_start(previous: int, size: int, origin: bytes = b"") -> list:
    """The first record of a file: which file its writer left, at what size (a
    file left that way is complete: only a writer's last file can end torn), and
    the repository it belongs to (origin: its uuid's 16 bytes)."""
    if origin and len(origin) != ORIGIN:
        raise ValueError(f"a repository uuid is {ORIGIN} bytes")
    payload = _DROP.pack(previous, size) + origin
    return _frame(0, 0, [payload], len(payload), 0, True, FLAG_START)


def _frame(lsn: int, ssn: int, payload: list, size: int, count: int, data_crc: bool,
           flags: int) -> list:
    dcrc = 0
    if data_crc:
        digest = xxh3_64()
        for part in payload:
            digest.update(part)
        dcrc = digest.intdigest() & 0xFFFFFFFF
        flags |= FLAG_DATA_CRC | FLAG_DATA_XXH3
    tail = HEADER.pack(MAGIC, 0, lsn, ssn, size, dcrc, count, flags)[8:]
    return [struct.pack("<II", MAGIC, zlib.crc32(tail)) + tail] + payload


_SIZE = struct.Struct("<I")
_SIZE_AT = 24  # the payload size's offset in HEADER


def record_size(record: list) -> int:
    """Bytes of a record framed by _frame, header included, as its header says."""
    return HEADER.size + _SIZE.unpack_from(record[0], _SIZE_AT)[0]


def join(record: list) -> bytes:
    """A record's buffers as one bytes object."""
    return b"".join(bytes(memoryview(part).cast("B")) for part in record)


def decode_header(head: bytes, room: int) -> tuple[int, int, bool] | None:
    """(lsn, record size, is a drop) from a record's header, or None when the
    header is torn or damaged or the record would not fit in room bytes."""
    if len(head) < HEADER.size:
        return None
    magic, crc, lsn, _, size, _, _, flags = HEADER.unpack_from(head, 0)
    if magic != MAGIC or zlib.crc32(head[8:HEADER.size]) != crc:
        return None
    if HEADER.size + size > room:
        return None
    return lsn, HEADER.size + size, bool(flags & FLAG_DROP)


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
    if flags & FLAG_DATA_CRC and _checksum(payload, flags) != dcrc:
        return None
    if flags & FLAG_START:
        if size not in (_DROP.size, _DROP.size + ORIGIN):
            return None
        return Record(lsn, ssn, None, HEADER.size + size, start=_DROP.unpack_from(payload),
                      origin=bytes(payload[_DROP.size:]) or None)
    if flags & FLAG_DROP:
        if size != _DROP.size:
            return None
        return Record(lsn, ssn, None, HEADER.size + size, _DROP.unpack(payload))
    try:
        rows = region.decode(payload, origin)
    except Exception:
        return None
    if len(rows) != count:
        return None
    if not flags & FLAG_DATA_CRC and not np.all(rows.ids[1:] >= rows.ids[:-1]):
        return None  # a batch is logged sorted: without a checksum, structure is the check
    return Record(lsn, ssn, rows, HEADER.size + size)


def _checksum(payload, flags: int) -> int:
    if flags & FLAG_DATA_XXH3:
        return xxh3_64_intdigest(payload) & 0xFFFFFFFF
    return zlib.crc32(payload)


MAGIC_BYTES = struct.pack("<I", MAGIC)


def next_record(data: bytes, start: int, origin: str) -> int | None:
    """Offset of the first intact record at or after start, or None."""
    buf = memoryview(data)
    pos = data.find(MAGIC_BYTES, start)
    while pos >= 0:
        if decode_at(buf, pos, origin) is not None:
            return pos
        pos = data.find(MAGIC_BYTES, pos + 1)
    return None


def torn(buf: memoryview, pos: int) -> bool:
    """Whether what starts at pos, the last thing in a file, is a write cut short
    (or never done) rather than a written record damaged since.

    A write cut short leaves fewer bytes than a header, a whole header with the
    record running past the end, zeros, or bytes that are no record at all. A
    whole header that fails its checksum, or a whole record whose payload does,
    was written complete and damaged afterwards."""
    rest = buf[pos:]
    if len(rest) < HEADER.size or not np.frombuffer(rest, np.uint8).any():
        return True
    magic, crc, _, _, size, _, _, _ = HEADER.unpack_from(rest, 0)
    if magic != MAGIC:
        return True
    if zlib.crc32(rest[8:HEADER.size]) != crc:
        return False
    return HEADER.size + size > len(rest)
