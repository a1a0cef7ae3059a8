"""Partition file format: regions, then the region index, then a footer.

    [region 0][region 1]...[index][footer]

index  = meta length u32 | meta (JSON: min, max, lsn, events, ...) |
         entries (one ENTRY per region) | key blob (min/max keys of regions)
footer = magic | index offset u64 | index size u64 | index crc u32 | flags u32 |
         footer crc u32

A reader takes the footer (last bytes), then the index, and afterwards one
region at a time. With the storage's `crc` on, every region carries a checksum
of its stored bytes: the low 32 bits of xxh3-64 (flag REGION_XXH3; ~18 times
faster than zlib's crc32 here), or zlib's crc32 in files written before it. In
an encrypted file (flag ENCRYPTED) regions and index are sealed with AES-GCM;
the footer stays plain so a reader knows it needs a key.

Encryption and identity. The storage's settings, not the file, decide whether a
file must be encrypted: a reader given its storage's key refuses a file without
the ENCRYPTED flag (anyone who can write the storage's directory or bucket could
put a well-formed plaintext file there). An encrypted file is also bound to its
place: with flag BOUND (every file written since), the associated data of its
seals names the storage (uuid) and the partition (min) it belongs to:

    index:    b"index"  | identity | index offset u64 | index size u64 | flags u32
    region i: b"region" | identity | i u64 | offset u64
    identity = storage uuid length u32 | uuid (lowercase, UTF-8) | partition min u64

so a file moved to another partition's name, or into another storage with the
same key, fails to decrypt, and the footer's numbers and flags are authenticated
with the index (its crc is checked on its own). Each region's entry (offset,
size, size decoded, flags, crc) is in the sealed index. Files written before
BOUND (ENCRYPTED alone) were sealed with b"index" and b"region <offset>": they
are still read, and the next refresh of their partition rewrites them bound.
Such a file is not bound to its storage: copied into another storage with the
same key it would be read there. For every file, a reader that knows the
partition checks that the index's min is that partition's (a moved plain or
old-format file). Flags this version does not know are refused.

A file appended to (a refresh of events past its end: partition/merger.py) has the
flag GAPS: its earlier indexes and footers stay between its regions, which are in
order but not side by side. Readers that know only regions side by side refuse it
(flags they do not know).

Every number of a footer and index is a claim of whoever wrote the file, and a
well-checksummed lie is as easy to write as the truth: before anything is read or
allocated by such a number, it is checked against what holds it (the file's size,
the index's length) and against the limits below.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from xxhash import xxh3_64, xxh3_64_intdigest

from ..errors import CorruptionError, MonotoneError
from ..format.crypto import OVERHEAD
from ..format.region import HEADER as REGION_HEADER
from ..format.region import ROW_BYTES
from ..format.rows import MAX_KEY

MAGIC = b"MTNPART1"
FOOTER = struct.Struct("<8sQQIII")
ENCRYPTED = 1  # footer flag: index and regions are sealed (AES-GCM)
BOUND = 2      # footer flag: ... with the file's identity in their associated data
GAPS = 4       # footer flag: the file was appended to; earlier indexes lie between regions
FLAGS = ENCRYPTED | BOUND | GAPS  # the footer flags this version knows
ENTRY = np.dtype([
    ("offset", "<u8"), ("size", "<u8"), ("size_origin", "<u8"), ("events", "<u8"),
    ("min_id", "<u8"), ("max_id", "<u8"),
    ("min_key", "<u4"), ("min_key_len", "<u4"), ("max_key", "<u4"), ("max_key_len", "<u4"),
    ("crc", "<u4"), ("flags", "<u4"),
])
REGION_PLAIN = 1  # entry flag: the region is stored uncompressed (it did not compress)
REGION_XXH3 = 2  # entry flag: its checksum is xxh3-64's low 32 bits (else zlib's crc32)

# Limits of what a reader accepts, so that a region read from a hostile file costs
# at most this much memory. The writer keeps to them: a region is at most
# region_size (at most MAX_REGION_SIZE) plus one event (key <= MAX_KEY, value <=
# MAX_VALUE: format/rows.py), and a file that would pass them is not written.
MAX_REGION = 256 << 20   # a region's size decoded (size_origin)
MAX_REGION_SIZE = 64 << 20  # a storage's region_size: with one event past it (MAX_VALUE),
                            # a region stays under MAX_REGION
MAX_REGIONS = 1 << 18    # regions of one file: 32 GiB at the default region_size, and
                         # an index a reader holds stays under 150 MiB (MAX_INDEX)
MAX_META = 1 << 20       # the index's JSON meta (a few hundred bytes as written)
# the longest index: meta, entries, both keys of every region, and a seal
MAX_INDEX = 4 + MAX_META + MAX_REGIONS * (ENTRY.itemsize + 2 * MAX_KEY) + OVERHEAD


def max_stored(size_origin):
    """The most bytes a region of size_origin bytes is stored in: compressed ones
    grow at most by lz4's 1/255 or zstd's block headers when they do not compress
    (files from before plain regions were stored compressed anyway), sealed ones
    by the nonce and tag. Works on ints and arrays of u8 alike."""
    return size_origin + size_origin // 64 + (64 + OVERHEAD)


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
    keys: bytes | memoryview

    @property
    def regions(self) -> int:
        return len(self.entries)

    def min_key(self, i: int) -> bytes:
        e = self.entries[i]
        return bytes(self.keys[int(e["min_key"]):int(e["min_key"]) + int(e["min_key_len"])])

    def max_key(self, i: int) -> bytes:
        e = self.entries[i]
        return bytes(self.keys[int(e["max_key"]):int(e["max_key"]) + int(e["max_key_len"])])

    def first_region(self, id_: int, key: bytes) -> int:
        """The first region whose last event is >= (id, key)."""
        i = int(np.searchsorted(self.entries["max_id"], np.uint64(id_), side="left"))
        while i < self.regions and int(self.entries["max_id"][i]) == id_ and self.max_key(i) < key:
            i += 1
        return i


class IndexBuilder:
    """Collects region entries while a partition file is written."""

    def __init__(self) -> None:
        self.base = np.empty(0, ENTRY)  # entries of the file appended to, as they are
        self.entries: list[tuple] = []
        self.keys = bytearray()

    @classmethod
    def of(cls, index: "Index", keep: int) -> "IndexBuilder":
        """One that goes on from a file's index (an append), with its first keep
        regions: their entries kept as an array, not a tuple each."""
        builder = cls()
        builder.base = index.entries[:keep]
        builder.keys = bytearray(index.keys)
        return builder

    @property
    def regions(self) -> int:
        return len(self.base) + len(self.entries)

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
        if len(self.base):
            entries = np.concatenate([self.base, entries])
        return (struct.pack("<I", len(meta_bytes)) + meta_bytes + entries.tobytes()
                + bytes(self.keys))


class Identity(NamedTuple):
    """Which file a partition file must be: partition min of the storage with uuid
    storage. Encrypted files are sealed with it (flag BOUND)."""
    storage: str
    min: int

    def encode(self) -> bytes:
        uuid = self.storage.lower().encode()
        return struct.pack("<I", len(uuid)) + uuid + struct.pack("<Q", self.min)


def index_ad(identity: Identity | None, offset: int, size: int, flags: int) -> bytes:
    """The associated data the index is sealed with (flags: the footer's; without
    BOUND, a file written before it, and identity is not needed)."""
    if not flags & BOUND:
        return b"index"
    return b"index" + _known(identity).encode() + struct.pack("<QQI", offset, size, flags)


def region_ad(identity: Identity | None, flags: int, number: int, offset: int) -> bytes:
    """The associated data region `number` at offset is sealed with (flags: the
    file's footer flags)."""
    if not flags & BOUND:
        return b"region %d" % offset
    return b"region" + _known(identity).encode() + struct.pack("<QQ", number, offset)


def _known(identity: Identity | None) -> Identity:
    if identity is None:  # a caller's mistake: the check is never skipped
        raise MonotoneError("an encrypted partition file is read or written only as a "
                            "known partition of a known storage (no identity given)")
    return identity


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
    if flags & ~FLAGS or flags & BOUND and not flags & ENCRYPTED:
        raise CorruptionError(f"partition file {path}: footer flags {flags:#x} are not ones "
                              "this version writes (a newer format, or a damaged file)")
    if size > MAX_INDEX:
        raise CorruptionError(f"partition file {path}: its footer gives a region index of "
                              f"{size} bytes, more than the {MAX_INDEX} a reader takes")
    return offset, size, crc, flags


def check_index(data: bytes, crc: int, path: str) -> None:
    if zlib.crc32(data) != crc:
        raise CorruptionError(f"partition file {path}: region index checksum mismatch")


def decode_index(data: bytes, crc: int, path: str) -> Index:
    check_index(data, crc, path)
    return parse_index(data, path)


def parse_index(data: bytes, path: str) -> Index:
    """The index of its bytes (checked, decrypted), every entry checked on its own
    (check_layout then places the regions in the file)."""
    where = f"partition file {path}"
    if len(data) < 4:
        raise CorruptionError(f"{where}: region index is truncated")
    (meta_len,) = struct.unpack_from("<I", data, 0)
    if meta_len > min(MAX_META, len(data) - 4):
        raise CorruptionError(f"{where}: region index meta of {meta_len} bytes does not "
                              f"fit its index of {len(data)}")
    try:
        meta = json.loads(data[4:4 + meta_len])
        count = meta["regions"] if isinstance(meta, dict) else None
    except (ValueError, KeyError, RecursionError) as e:
        raise CorruptionError(f"{where}: unreadable region index ({e})") from None
    start = 4 + meta_len
    if type(count) is not int or not 0 <= count <= min(MAX_REGIONS, (len(data) - start) //
                                                       ENTRY.itemsize):
        raise CorruptionError(f"{where}: region index meta gives {count!r} regions, which "
                              f"its index of {len(data)} bytes cannot hold")
    end = start + count * ENTRY.itemsize
    entries = np.frombuffer(data, ENTRY, count, start).copy()
    keys = memoryview(data)[end:]  # not a copy: an index may be 150 MiB
    _check_entries(entries, len(keys), where)
    return Index(meta, entries, keys)


def _check_entries(e: np.ndarray, keys: int, where: str) -> None:
    """Each entry's numbers against the limits and the index's key bytes, for all
    entries at once (u8 throughout: no sum below can wrap)."""
    origin = np.minimum(e["size_origin"], np.uint64(MAX_REGION))
    events = np.minimum(e["events"], origin)
    kinds = [
        (e["size_origin"] > np.uint64(MAX_REGION), f"decodes to more than {MAX_REGION} bytes"),
        ((events == 0) | (e["events"] > origin) |
         (np.uint64(REGION_HEADER.size) + np.uint64(ROW_BYTES) * events > origin),
         "does not hold its events"),
        ((e["size"] == 0) | (e["size"] > max_stored(origin)),
         "is stored in more bytes than its size decoded allows"),
    ]
    for k in ("min_key", "max_key"):
        at, n = e[k].astype(np.uint64), e[k + "_len"].astype(np.uint64)
        kinds.append(((n > np.uint64(MAX_KEY)) | (at + n > np.uint64(keys)),
                      f"has a {k} beyond the index's {keys} key bytes"))
    for bad, what in kinds:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CorruptionError(f"{where}: region {i} {what} (its index entry is damaged)")


def check_layout(index: Index, end: int, path: str, gaps: bool = False) -> None:
    """The regions lie side by side from the file's start to the index (at end):
    each one read is within the file, and no two overlap. With gaps (a file
    appended to: flag GAPS), the bytes of earlier indexes and footers, and of a
    last region written again, may lie before and between them: they are in order,
    none overlaps the next, the last ends at the index."""
    sizes = index.entries["size"]
    offsets = index.entries["offset"]
    if not gaps:
        ends = np.cumsum(sizes, dtype=np.uint64)  # < 2**64: MAX_REGIONS stored MAX_REGIONs
        if index.regions and (int(offsets[0]) != 0 or
                              not np.array_equal(offsets[1:], ends[:-1])) or \
                (int(ends[-1]) if index.regions else 0) != end:
            raise CorruptionError(f"partition file {path}: its regions do not fill the file "
                                  f"up to its region index (at {end})")
        return
    ends = offsets + sizes  # each below end (checked), so no sum wraps past 2**64
    if index.regions and (np.any(offsets > np.uint64(end)) or
                          np.any(sizes > np.uint64(end)) or
                          np.any(offsets[1:] < ends[:-1]) or int(ends[-1]) != end):
        raise CorruptionError(f"partition file {path}: its regions are not in order within "
                              f"the file up to its region index (at {end})")
