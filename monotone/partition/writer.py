"""Writing a partition file: sorted rows into regions, then the index and footer.

The writer streams sorted Rows into regions of at most region_size bytes,
compresses each (a region compression does not shrink by an eighth is stored
plain, so reading it skips the decompression), and finishes with the region
index and footer. It writes through the storage I/O seam (a WriteHandle).
An encrypted file is sealed for its partition (identity: fileformat, BOUND).
"""
from __future__ import annotations

import numpy as np

from .. import faults
from ..errors import MonotoneError
from ..format import region
from ..format.codec import codec as make_codec
from ..format.crypto import OVERHEAD, Cipher
from ..format.rows import Rows, concat
from ..store import LocalWriter, WriteHandle
from . import fileformat as partition
from .fileformat import Identity

PLAIN_GAIN = 8  # a region is stored compressed when that saves at least 1/8 of it
# after PLAIN_STREAK regions in a row that did not compress (random bytes, already
# compressed payloads), compression is tried on every PLAIN_PROBE-th region only
PLAIN_STREAK, PLAIN_PROBE = 8, 16


class Writer:
    """A new partition file. cipher: the storage's key (None: not encrypted);
    identity: the partition the file is for (its storage's uuid and min), which an
    encrypted file is sealed for and whose min the meta must give."""

    def __init__(self, target: str | WriteHandle, compression: str, level: int,
                 region_size: int, cipher: Cipher | None = None, crc: bool = True,
                 sync: bool = False, identity: Identity | None = None) -> None:
        if cipher is not None and identity is None:
            raise MonotoneError("an encrypted partition file is written only for a known "
                                "partition of a known storage (no identity given)")
        self.identity = identity
        self.flags = partition.ENCRYPTED | partition.BOUND if cipher is not None else 0
        self.file = LocalWriter(target, sync) if isinstance(target, str) else target
        self.path = self.file.name
        self.codec = make_codec(compression, level)
        self.region_size = region_size
        self.cipher = cipher
        self.crc = crc
        self.index = partition.IndexBuilder()
        self.pending: list[Rows] = []
        self.pending_bytes = 0
        self.incompressible = 0  # regions in a row that did not compress
        self.offset = 0
        self.events = 0
        self.size_origin = 0
        self.min_id: int | None = None
        self.max_id: int | None = None
        self.dead = 0  # bytes of earlier indexes and footers between regions (GAPS)

    def extend(self, index: partition.Index, end: int, keep: int) -> None:
        """Write on after an existing file of `end` bytes (its index; the handle
        appends at end), keeping its first keep regions: the new index names them
        too, and the rest of its bytes (its old index and footer, a last region
        written again) stay where they are, between regions (footer flag GAPS).
        Before anything is added."""
        entries = index.entries[:keep]
        self.index = partition.IndexBuilder.of(index, keep)
        self.offset = end
        self.events = int(entries["events"].sum())
        self.size_origin = int(entries["size_origin"].sum())
        if keep:
            self.min_id, self.max_id = int(entries["min_id"][0]), int(entries["max_id"][-1])
        self.dead = end - int(entries["size"].sum())
        self.flags |= partition.GAPS

    def add(self, rows: Rows) -> None:
        """Append sorted rows (no deletes) after everything added before.

        A region takes events while its encoding stays within region_size bytes
        (before compression), and always at least one event."""
        n = len(rows)
        if not n:
            return
        if self.min_id is None:
            self.min_id = int(rows.ids[0])
        self.max_id = int(rows.ids[-1])
        # where each row's encoding ends, counted from the first row (offsets are
        # cumulative already: no diff and sum over the rows)
        ko, vo = rows.key_offsets.astype(np.int64), rows.value_offsets.astype(np.int64)
        ends = np.arange(region.ROW_BYTES, region.ROW_BYTES * (n + 1), region.ROW_BYTES,
                         dtype=np.int64)
        ends += ko[1:]
        ends += vo[1:]
        ends -= int(ko[0]) + int(vo[0])
        start = 0
        while start < n:
            before = int(ends[start - 1]) if start else 0
            room = self.region_size - region.HEADER.size - self.pending_bytes
            end = int(np.searchsorted(ends, before + room, "right"))
            if end <= start:  # not one more event fits
                if self.pending:
                    self._flush()
                    continue
                end = start + 1
            self.pending.append(rows.slice(start, end))
            self.pending_bytes += int(ends[end - 1]) - before
            start = end
            if start < n:
                self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        rows = concat(self.pending)
        self.pending, self.pending_bytes = [], 0
        n = len(rows)
        bounds = int(rows.ids[0]), rows.key(0), int(rows.ids[-1]), rows.key(n - 1)
        size = region.encoded_size(rows)
        probe = self.incompressible < PLAIN_STREAK or self.incompressible % PLAIN_PROBE == 0
        self.incompressible += 1
        if self.cipher is None and (self.codec.name == "none" or not probe):
            # stored plain: written from the rows' own arrays, with no joined copy
            parts = region.encode_parts(rows)
            crc, flags = 0, partition.REGION_PLAIN
            if self.crc:
                crc = partition.region_checksum_of_parts(parts)
                flags |= partition.REGION_XXH3
            self._append(parts, size, crc, flags, size, n, *bounds)
            return
        raw = region.encode(rows)
        data, flags = raw, partition.REGION_PLAIN  # reads skip the decompression
        if probe:
            packed = self.codec.compress(raw)
            if len(packed) <= len(raw) - len(raw) // PLAIN_GAIN:
                data, flags, self.incompressible = packed, 0, 0
        if self.cipher is not None:
            data = self.cipher.seal(data, self._region_ad())
        crc = 0
        if self.crc:
            crc, flags = partition.region_checksum(data), flags | partition.REGION_XXH3
        self._append([data], len(data), crc, flags, size, n, *bounds)

    def add_stored(self, data: bytes, entry, min_key: bytes, max_key: bytes) -> None:
        """Append a region as it is stored in another file (entry: its index entry).

        For a refresh that leaves the region as it was: no decode, no encode.
        The caller makes sure the stored form is valid here: same codec, and
        when encrypted, the same key, sealed bound for the same partition of the
        same storage, as the same region number at the same offset.
        """
        self._flush()
        crc, flags = 0, int(entry["flags"]) & ~partition.REGION_XXH3
        if self.crc:  # the region's own checksum, or a new one if it had none
            if int(entry["crc"]):
                crc, flags = int(entry["crc"]), int(entry["flags"])
            else:
                crc, flags = partition.region_checksum(data), flags | partition.REGION_XXH3
        self._append([data], len(data), crc, flags, int(entry["size_origin"]),
                     int(entry["events"]), int(entry["min_id"]), min_key,
                     int(entry["max_id"]), max_key)

    def _region_ad(self) -> bytes:
        """The associated data of the region written next."""
        return partition.region_ad(self.identity, self.flags, self.index.regions,
                                   self.offset)

    def _append(self, parts: list, size: int, crc: int, flags: int, size_origin: int, n: int,
                min_id: int, min_key: bytes, max_id: int, max_key: bytes) -> None:
        """Write a region's stored bytes (size of them, in parts) and record it in the index.
        A file is never written that a reader would refuse (fileformat's limits): the
        refresh fails instead, its rows still in memory and the WAL."""
        if size_origin > partition.MAX_REGION or self.index.regions >= partition.MAX_REGIONS:
            raise MonotoneError(
                f"a partition file holds at most {partition.MAX_REGIONS} regions of at most "
                f"{partition.MAX_REGION} bytes: partition {min_id} needs a larger region_size "
                "or a smaller interval")
        self.file.write_parts(parts)
        end = self.offset + size
        self.index.add(self.offset, size, size_origin, n, min_id, min_key, max_id,
                       max_key, crc, flags)
        if self.min_id is None:
            self.min_id = min_id
        self.max_id = max_id
        self.offset = end
        self.events += n
        self.size_origin += size_origin

    def finish(self, meta: dict, sync: bool, before_footer=None) -> dict:
        """Write index and footer, fsync when asked; return the meta written (with
        file_size). before_footer: called once the regions and index are on disk,
        before the footer that makes them count is written (an append: the footer
        at the end is what says it is whole)."""
        self._flush()
        meta = dict(meta, events=self.events, regions=self.index.regions,
                    size_uncompressed=self.size_origin, compression=self.codec.name,
                    crc=self.crc, encryption="aes" if self.cipher else "none")
        if self.flags & partition.GAPS:
            meta["dead"] = self.dead
        if self.identity is not None and meta.get("min") != self.identity.min:
            raise MonotoneError(f"partition file {self.path}: meta min {meta.get('min')!r} "
                                f"is not its partition's ({self.identity.min})")
        index_offset = self.offset
        meta["size"] = index_offset  # regions only; index and footer added below
        body = self.index.encode(meta)
        flags = self.flags
        if self.cipher is not None:
            ad = partition.index_ad(self.identity, index_offset, len(body) + OVERHEAD, flags)
            body = self.cipher.seal(body, ad)
        self.file.write(body)
        if before_footer is not None:
            if sync:
                self.file.settle()
            before_footer()
        self.file.write(partition.encode_footer(index_offset, body, flags))
        if before_footer is not None:
            faults.point("append.footer")
        meta["file_size"] = self.file.finish(sync)
        return meta

    def abort(self) -> None:
        self.file.abort()
