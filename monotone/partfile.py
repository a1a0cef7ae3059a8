"""Partition files on disk: the writer (used by refresh) and the reader (cursors).

The writer streams sorted Rows into regions of about region_size bytes,
compresses each, and finishes with the region index and footer. The reader
loads the footer and index once and then reads one region at a time.
"""
from __future__ import annotations

import os
import zlib

import numpy as np

from monotone.shm import libc

from .errors import CorruptionError, MonotoneError
from .format import partition, region
from .format.codec import codec as make_codec
from .format.crypto import Cipher
from .format.rows import Rows, concat

INCOMPLETE = ".incomplete"
COMPLETE = ".complete"
PLAIN_GAIN = 8  # a region is stored compressed when that saves at least 1/8 of it
# bytes between asking the kernel to start writing a new file out: the flush is
# spread over the refresh, so the fsync at the end is short and other processes'
# writes (the WAL) do not queue behind one large flush of the whole file
WRITEBACK = 8 << 20




def file_name(min_: int) -> str:
    return f"{min_:020d}"


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Writer:
    def __init__(self, path: str, compression: str, level: int, region_size: int,
                 cipher: Cipher | None = None, crc: bool = True, sync: bool = False) -> None:
        self.path = path
        self.codec = make_codec(compression, level)
        self.region_size = region_size
        self.cipher = cipher
        self.crc = crc
        self.sync = sync  # the file will be fsynced: start writing it out early
        self.index = partition.IndexBuilder()
        self.pending: list[Rows] = []
        self.pending_bytes = 0
        self.offset = 0
        self.events = 0
        self.size_origin = 0
        self.min_id: int | None = None
        self.max_id: int | None = None
        try:
            self.file = open(path, "wb")
        except OSError as e:
            raise MonotoneError(f"cannot create partition file {path}: {e.strerror}") from None

    def add(self, rows: Rows) -> None:
        """Append sorted rows (no deletes) after everything added before."""
        if not len(rows):
            return
        if self.min_id is None:
            self.min_id = int(rows.ids[0])
        self.max_id = int(rows.ids[-1])
        # cut into regions of about region_size bytes each
        per_row = max(1, rows.nbytes // len(rows))
        start = 0
        while start < len(rows):
            room = max(1, (self.region_size - self.pending_bytes) // per_row)
            end = min(len(rows), start + room)
            part = rows.slice(start, end)
            self.pending.append(part)
            self.pending_bytes += part.nbytes
            start = end
            if self.pending_bytes >= self.region_size:
                self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        rows = concat(self.pending)
        self.pending, self.pending_bytes = [], 0
        raw = region.encode(rows)
        data = self.codec.compress(raw)
        flags = 0
        if len(data) > len(raw) - len(raw) // PLAIN_GAIN:
            data, flags = raw, partition.REGION_PLAIN  # reads skip the decompression
        if self.cipher is not None:
            data = self.cipher.seal(data, b"region %d" % self.offset)
        n = len(rows)
        self._append(data, zlib.crc32(data) if self.crc else 0, flags, len(raw), n,
                     int(rows.ids[0]), rows.key(0), int(rows.ids[-1]), rows.key(n - 1))

    def add_stored(self, data: bytes, entry, min_key: bytes, max_key: bytes) -> None:
        """Append a region as it is stored in another file (entry: its index entry).

        For a refresh that leaves the region as it was: no decode, no encode.
        The caller makes sure the stored form is valid here: same codec, and
        when encrypted, the same key at the same offset.
        """
        self._flush()
        crc = 0
        if self.crc:
            crc = int(entry["crc"]) or zlib.crc32(data)
        self._append(data, crc, int(entry["flags"]), int(entry["size_origin"]),
                     int(entry["events"]), int(entry["min_id"]), min_key,
                     int(entry["max_id"]), max_key)

    def _append(self, data, crc: int, flags: int, size_origin: int, n: int,
                min_id: int, min_key: bytes, max_id: int, max_key: bytes) -> None:
        """Write a region's stored bytes and record it in the index."""
        self.file.write(data)
        end = self.offset + len(data)
        if self.sync and libc.sync_file_range is not None and \
                end // WRITEBACK != self.offset // WRITEBACK:
            self.file.flush()
            libc.sync_file_range(self.file.fileno(), end // WRITEBACK * WRITEBACK - WRITEBACK,
                                 WRITEBACK, libc.SYNC_FILE_RANGE_WRITE)
        self.index.add(self.offset, len(data), size_origin, n, min_id, min_key, max_id,
                       max_key, crc, flags)
        if self.min_id is None:
            self.min_id = min_id
        self.max_id = max_id
        self.offset = end
        self.events += n
        self.size_origin += size_origin

    def finish(self, meta: dict, sync: bool) -> dict:
        """Write index and footer, fsync when asked; return the meta written."""
        self._flush()
        meta = dict(meta, events=self.events, regions=len(self.index.entries),
                    size_uncompressed=self.size_origin, compression=self.codec.name,
                    crc=self.crc, encryption="aes" if self.cipher else "none")
        index_offset = self.offset
        meta["size"] = index_offset  # regions only; index and footer added below
        body = self.index.encode(meta)
        flags = 0
        if self.cipher is not None:
            body = self.cipher.seal(body, b"index")
            flags |= partition.ENCRYPTED
        self.file.write(body)
        self.file.write(partition.encode_footer(index_offset, body, flags))
        self.file.flush()
        if sync:
            os.fsync(self.file.fileno())
        self.file.close()
        return meta

    def abort(self) -> None:
        self.file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Reader:
    """An open partition file: its index in memory, regions read on demand.

    cipher: the storage's key, needed when the file is encrypted.
    """

    def __init__(self, path: str, cipher: Cipher | None = None) -> None:
        self.path = path
        self.cipher = cipher
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise MonotoneError(f"cannot open partition file {path}: {e.strerror}") from None
        try:
            size = os.fstat(self.fd).st_size
            if size < partition.FOOTER.size:
                raise CorruptionError(f"partition file {path}: truncated (no footer)")
            footer = os.pread(self.fd, partition.FOOTER.size, size - partition.FOOTER.size)
            offset, length, crc, flags = partition.decode_footer(footer, path)
            if offset + length + partition.FOOTER.size != size:
                raise CorruptionError(f"partition file {path}: index does not fit the file")
            body = os.pread(self.fd, length, offset)
            partition.check_index(body, crc, path)
            if flags & partition.ENCRYPTED:
                if cipher is None:
                    raise MonotoneError(f"partition file {path} is encrypted and its storage "
                                        "has no encryption key")
                body = cipher.open(body, b"index", f"partition file {path}")
            else:
                self.cipher = None
            self.index = partition.parse_index(body, path)
            self.codec = make_codec(self.index.meta.get("compression", "none"))
            self.verify = bool(self.index.meta.get("crc", True))
            self.file_size = size
        except BaseException:
            os.close(self.fd)
            raise

    @property
    def meta(self) -> dict:
        return self.index.meta

    def read_stored(self, i: int) -> bytes:
        """Region i as stored (compressed, maybe encrypted), its crc checked."""
        e = self.index.entries[i]
        size = int(e["size"])
        data = os.pread(self.fd, size, int(e["offset"]))
        if len(data) != size:
            raise CorruptionError(f"partition file {self.path}: region {i} is truncated")
        if self.verify and zlib.crc32(data) != int(e["crc"]):
            raise CorruptionError(f"partition file {self.path}: region {i} checksum mismatch")
        return data

    def read_region(self, i: int) -> Rows:
        e = self.index.entries[i]
        data = self.read_stored(i)
        if self.cipher is not None:
            data = self.cipher.open(data, b"region %d" % int(e["offset"]),
                                    f"partition file {self.path}: region {i}")
        try:
            if int(e["flags"]) & partition.REGION_PLAIN:
                raw = data
            else:
                raw = self.codec.decompress(data, int(e["size_origin"]))
        except CorruptionError as err:
            raise CorruptionError(f"partition file {self.path}: region {i}: {err}") from None
        rows = region.decode(raw, f"partition file {self.path}: region {i}")
        if len(rows) != int(e["events"]) or not len(rows) or \
                int(rows.ids[0]) != int(e["min_id"]) or int(rows.ids[-1]) != int(e["max_id"]):
            raise CorruptionError(f"partition file {self.path}: region {i} does not match its "
                                  "index entry")
        if not self.verify and not np.all(rows.ids[1:] >= rows.ids[:-1]):
            # without checksums, what structure can tell is all there is to check
            raise CorruptionError(f"partition file {self.path}: region {i}: ids out of order")
        return rows

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_all(path: str) -> Rows:
    with Reader(path) as r:
        return concat([r.read_region(i) for i in range(r.index.regions)])

