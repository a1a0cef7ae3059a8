"""Partition file format: regions, then the region index, then a footer.

    [region 0][region 1]...[index][footer]

index  = meta length u32 | meta (JSON: min, max, lsn, events, ...) |
         entries (one ENTRY per region) | key blob (min/max keys of regions)
footer = magic | index offset u64 | index size u64 | index crc u32 | flags u32 |
         footer crc u32

A reader takes the footer (last bytes), then the index, and afterwards one
region at a time. With the storage's `crc` on, every region carries a checksum
of its stored bytes: the low 32 bits of xxh3-64 (flag REGION_XXH3; ~18 times
faster than zlib's crc32 here), or zlib's crc32 in files written before it. In an encrypted file (flag ENCRYPTED) regions and index are
sealed with AES-GCM; the footer stays plain so a reader knows it needs a key.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from xxhash import xxh3_64, xxh3_64_intdigest

from ..errors import CorruptionError

MAGIC = b"MTNPART1"
FOOTER = struct.Struct("<8sQQIII")
ENCRYPTED = 1
ENTRY = np.dtype([
    ("offset", "<u8"), ("size", "<u8"), ("size_origin", "<u8"), ("events", "<u8"),
    ("min_id", "<u8"), ("max_id", "<u8"),
    ("min_key", "<u4"), ("min_key_len", "<u4"), ("max_key", "<u4"), ("max_key_len", "<u4"),
    ("crc", "<u4"), ("flags", "<u4"),
])
REGION_PLAIN = 1  # entry flag: the region is stored uncompressed (it did not compress)
REGION_XXH3 = 2  # entry flag: its checksum is xxh3-64's low 32 bits (else zlib's crc32)


def region_checksum(data) -> int:
    """The checksum a region is written with (flag REGION_XXH3)."""
    return xxh3_64_intdigest(data) & 0xFFFFFFFF


def region_checksum_of_parts(parts) -> int:
    """region_checksum of the parts' bytes one after another, without joining them."""
    digest = xxh3_64()
    for part in parts:
        digest.update(part)
    return digest.intdigest() & 0xFFFFFFFF


def region_checksum_ok(data, checksum: int, flags: int) -> bool:
    if flags & REGION_XXH3:
        return xxh3_64_intdigest(data) & 0xFFFFFFFF == checksum
    return zlib.crc32(data) == checksum


@dataclass
class Index:
    """What a reader keeps in memory for a partition file."""
    meta: dict
    entries: np.ndarray
    keys: bytes

    @property
    def regions(self) -> int:
        return len(self.entries)

    def min_key(self, i: int) -> bytes:
        e = self.entries[i]
        return self.keys[int(e["min_key"]):int(e["min_key"]) + int(e["min_key_len"])]

    def max_key(self, i: int) -> bytes:
        e = self.entries[i]
        return self.keys[int(e["max_key"]):int(e["max_key"]) + int(e["max_key_len"])]

    def first_region(self, id_: int, key: bytes) -> int:
        """The first region whose last event is >= (id, key)."""
        i = int(np.searchsorted(self.entries["max_id"], np.uint64(id_), side="left"))
        while i < self.regions and int(self.entries["max_id"][i]) == id_ and self.max_key(i) < key:
            i += 1
        return i


class IndexBuilder:
    """Collects region entries while a partition file is written."""

    def __init__(self) -> None:
        self.entries: list[tuple] = []
        self.keys = bytearray()

    def add(self, offset: int, size: int, size_origin: int, events: int,
            min_id: int, min_key: bytes, max_id: int, max_key: bytes, crc: int,
            flags: int = 0) -> None:
        mk = len(self.keys)
        self.keys += min_key
        xk = len(self.keys)
        self.keys += max_key
        self.entries.append((offset, size, size_origin, events, min_id, max_id,
                             mk, len(min_key), xk, len(max_key), crc, flags))

    def encode(self, meta: dict) -> bytes:
        meta_bytes = json.dumps(meta, sort_keys=True).encode()
        entries = np.array(self.entries, dtype=ENTRY)
        return (struct.pack("<I", len(meta_bytes)) + meta_bytes + entries.tobytes()
                + bytes(self.keys))


def encode_footer(index_offset: int, index: bytes, flags: int = 0) -> bytes:
    head = struct.pack("<8sQQII", MAGIC, index_offset, len(index), zlib.crc32(index), flags)
    return head + struct.pack("<I", zlib.crc32(head))


def decode_footer(data: bytes, path: str) -> tuple[int, int, int, int]:
    """(index offset, index size, index crc, flags)."""
    if len(data) != FOOTER.size:
        raise CorruptionError(f"partition file {path}: truncated (no footer)")
    magic, offset, size, crc, flags, fcrc = FOOTER.unpack(data)
    if magic != MAGIC or zlib.crc32(data[:-4]) != fcrc:
        raise CorruptionError(f"partition file {path}: bad footer")
    return offset, size, crc, flags


def check_index(data: bytes, crc: int, path: str) -> None:
    if zlib.crc32(data) != crc:
        raise CorruptionError(f"partition file {path}: region index checksum mismatch")


def decode_index(data: bytes, crc: int, path: str) -> Index:
    check_index(data, crc, path)
    return parse_index(data, path)


def parse_index(data: bytes, path: str) -> Index:
    try:
        (meta_len,) = struct.unpack_from("<I", data, 0)
        meta = json.loads(data[4:4 + meta_len])
        count = int(meta["regions"])
        start = 4 + meta_len
        end = start + count * ENTRY.itemsize
        entries = np.frombuffer(data[start:end], ENTRY).copy()
    except (ValueError, KeyError, struct.error) as e:
        raise CorruptionError(f"partition file {path}: unreadable region index ({e})") from None
    return Index(meta, entries, bytes(data[end:]))
