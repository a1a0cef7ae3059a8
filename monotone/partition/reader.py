"""Reading a partition file: its index once, then one region at a time.

The file comes through the storage I/O seam (a ReadHandle from a Store, or a
local path): each region is one read of a byte range, checked (crc, when the
file has them), decrypted and decompressed on its own. A scan reads a run of
regions at once (read_run), all of them decoded into one set of columns; a local
file's plain regions are read straight into those (one vectored read each).

The file is untrusted input: its footer and index are checked against the
file's size and the format's limits (fileformat.py) when it is opened, so that
every region read afterwards is a range within the file, of a bounded size,
decompressing to a bounded size.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import CorruptionError, MonotoneError
from ..format import region
from ..format.codec import codec as make_codec
from ..format.crypto import Cipher
from ..format.rows import Rows, concat
from ..store import LocalFile, ReadHandle
from . import fileformat as partition
from .fileformat import Identity

# codecs whose decompress() keeps no state, so that one reader's regions may be
# decompressed in several threads at once (a zstandard decompressor may not be)
STATELESS = ("none", "lz4")


class Reader:
    """An open partition file: its index in memory, regions read on demand.

    cipher: the storage's key when the storage is encrypted (None: it is not). The
    storage decides: with a cipher, a file that is not encrypted is refused; without
    one, an encrypted file is.
    identity: the partition the file must be (its storage's uuid and its min), when
    the caller knows it; needed to read an encrypted file (fileformat: BOUND). The
    index's min is checked against it, encrypted or not.
    """

    def __init__(self, source: str | ReadHandle, cipher: Cipher | None = None,
                 identity: Identity | None = None) -> None:
        self.file = LocalFile(source) if isinstance(source, str) else source
        self.path = path = self.file.name
        self.cipher = cipher
        self.identity = identity
        try:
            size = self.file.size
            if size < partition.FOOTER.size:
                raise CorruptionError(f"partition file {path}: truncated (no footer)")
            footer = self.file.read(size - partition.FOOTER.size, partition.FOOTER.size)
            offset, length, crc, flags = partition.decode_footer(footer, path)
            if offset + length + partition.FOOTER.size != size:
                raise CorruptionError(f"partition file {path}: index does not fit the file")
            self.flags = flags
            body = self.file.read(offset, length)  # length <= MAX_INDEX (decode_footer)
            partition.check_index(body, crc, path)
            body = self._open_index(body, offset, length)
            self.index = partition.parse_index(body, path)
            self._check_identity()
            partition.check_layout(self.index, offset, path, bool(flags & partition.GAPS))
            self.codec = self._codec(self.index.meta.get("compression", "none"))
            self.verify = bool(self.index.meta.get("crc", True))
            self.file.checked(self.verify)
            self.file_size = size
        except BaseException:
            self.file.close()
            raise

    @property
    def bound(self) -> bool:
        """Whether the file's seals name its storage and partition (fileformat)."""
        return bool(self.flags & partition.BOUND)

    def _open_index(self, body: bytes, offset: int, length: int) -> bytes:
        """The index's bytes, decrypted when the file is encrypted; a file that is not
        encrypted when its storage is (or the other way round) is refused."""
        path, cipher = self.path, self.cipher
        if not self.flags & partition.ENCRYPTED:
            if cipher is not None:
                raise CorruptionError(f"partition file {path} is not encrypted but its storage "
                                      "is: refused (it was not written there by monotone)")
            return body
        if cipher is None:
            raise MonotoneError(f"partition file {path} is encrypted and its storage "
                                "has no encryption key")
        if self.identity is None:
            raise MonotoneError(f"partition file {path}: an encrypted file is read only as "
                                "a known partition of a known storage (no identity given)")
        ad = partition.index_ad(self.identity, offset, length, self.flags)
        try:
            return cipher.open(body, ad, f"partition file {path}")
        except CorruptionError as e:
            if not self.bound:
                raise
            raise CorruptionError(f"{e}; or the file is not partition {self.identity.min} of "
                                  f"storage {self.identity.storage} (moved or copied there "
                                  "from elsewhere)") from None

    def _check_identity(self) -> None:
        """The index's min is the partition's the caller expects (a file moved from
        another partition's name)."""
        if self.identity is None:
            return
        found = self.index.meta.get("min")
        if type(found) is not int or found != self.identity.min:
            raise CorruptionError(f"partition file {self.path} holds partition {found!r}, "
                                  f"not {self.identity.min}: refused (moved or copied from "
                                  "another partition)")

    def _codec(self, name):
        try:
            return make_codec(name)
        except MonotoneError as e:
            raise CorruptionError(f"partition file {self.path}: {e}") from None

    @property
    def meta(self) -> dict:
        return self.index.meta

    def prefetch(self, first: int, count: int, ascending: bool = True) -> bool:
        """Start reading regions first.. first+count-1 when the file is remote (its
        handle fetches them in the background; a local file needs nothing). False:
        the read-ahead's budget stopped it before the last."""
        if not (self.file.prefetches and self.file.ranged):
            return True
        e = self.index.entries[first:first + count]
        return self.file.prefetch(e["offset"], e["size"], ascending)

    def read_stored(self, i: int) -> bytes:
        """Region i as stored (compressed, maybe encrypted), its crc checked."""
        e = self.index.entries[i]
        size = int(e["size"])
        data = self.file.read(int(e["offset"]), size)
        if len(data) != size:
            raise CorruptionError(f"partition file {self.path}: region {i} is truncated")
        if self.verify and not self._checksum_ok(data, e):
            # a copy of the bytes (a cache) may be what is damaged: the file's own next
            again = self.file.reread(int(e["offset"]), size)
            if again is not None and len(again) == size and self._checksum_ok(again, e):
                return again
            if self.file.rewritten():
                raise MonotoneError(f"partition file {self.path} was rewritten while this "
                                    "cursor read it from the cloud: open a new cursor")
            raise CorruptionError(f"partition file {self.path}: region {i} checksum mismatch")
        return data

    @staticmethod
    def _checksum_ok(data, e) -> bool:
        return partition.region_checksum_ok(data, int(e["crc"]), int(e["flags"]))

    def read_region(self, i: int) -> Rows:
        e = self.index.entries[i]
        raw = self._open_region(i, self.read_stored(i), int(e["offset"]), int(e["flags"]),
                                int(e["size_origin"]))
        rows = region.decode(raw, f"partition file {self.path}: region {i}")
        if len(rows) != int(e["events"]) or not len(rows) or \
                int(rows.ids[0]) != int(e["min_id"]) or int(rows.ids[-1]) != int(e["max_id"]):
            raise CorruptionError(f"partition file {self.path}: region {i} does not match its "
                                  "index entry")
        if not self.verify and not np.all(rows.ids[1:] >= rows.ids[:-1]):
            # without checksums, what structure can tell is all there is to check
            raise CorruptionError(f"partition file {self.path}: region {i}: ids out of order")
        return rows

    def _open_region(self, i: int, data, offset: int, flags: int, size_origin: int):
        """Region i's encoding of its stored bytes: decrypted, decompressed."""
        if self.cipher is not None:
            ad = partition.region_ad(self.identity, self.flags, i, offset)
            data = self.cipher.open(data, ad, f"partition file {self.path}: region {i}")
        try:
            if flags & partition.REGION_PLAIN:
                return data
            return self.codec.decompress(data, size_origin)
        except CorruptionError as err:
            raise CorruptionError(f"partition file {self.path}: region {i}: {err}") from None

    @property
    def parallel(self) -> bool:
        """Whether read_run may run in several threads at once: the file is local
        (read by position, a pread each), not encrypted, and decompressing keeps
        no state."""
        return isinstance(self.file, LocalFile) and self.cipher is None and \
            self.codec.name in STATELESS

    def read_run(self, first: int, end: int, allocate=None) -> Rows:
        """Regions first..end-1 as one Rows in columns of its own (allocate: see
        rows.empty): what concat() of their read_region gives, with the same checks.
        A region that fails one is read again by read_region, so the error (or a
        good second read) is the same. The columns are allocated as the regions'
        index entries give their sizes decoded, before anything is read: a caller
        keeps runs small (the cursor's RUN_BYTES)."""
        try:
            return self._run(first, end, allocate)
        except CorruptionError:
            return concat([self.read_region(i) for i in range(first, end)])

    def _run(self, first: int, end: int, allocate) -> Rows:
        e = self.index.entries[first:end]
        events, origins = e["events"].tolist(), e["size_origin"].tolist()
        # each entry was checked to hold its events in its size decoded (at most
        # MAX_REGION), so the counts summed are within what the run decodes to
        n = sum(events)
        decoder = region.Decoder(n, sum(origins) - len(events) * region.HEADER.size -
                                 n * region.ROW_BYTES, allocate)
        # a local file's plain regions are read straight into their places
        direct = isinstance(self.file, LocalFile) and self.cipher is None
        for i, offset, size, flags, crc, count, origin in zip(
                range(first, end), e["offset"].tolist(), e["size"].tolist(),
                e["flags"].tolist(), e["crc"].tolist(), events, origins):
            where = f"partition file {self.path}: region {i}"
            if direct and flags & partition.REGION_PLAIN and \
                    (flags & partition.REGION_XXH3 or not self.verify):
                parts = decoder.slots(count, size - region.HEADER.size -
                                      count * region.ROW_BYTES, where)
                if os.preadv(self.file.fd, parts, offset) != size:
                    raise CorruptionError(f"{where} is truncated")
                if self.verify and partition.region_checksum_of_parts(parts) != crc:
                    raise CorruptionError(f"{where} checksum mismatch")
                got = decoder.placed(where)
            else:
                data = self.file.read(offset, size)
                if len(data) != size:
                    raise CorruptionError(f"{where} is truncated")
                if self.verify and not partition.region_checksum_ok(data, crc, flags):
                    raise CorruptionError(f"{where} checksum mismatch")
                got = decoder.add(self._open_region(i, data, offset, flags, origin), where)
            if got != count:
                raise CorruptionError(f"{where} does not match its index entry")
        rows = decoder.rows()
        self._check_run(rows, e)
        return rows

    def _check_run(self, rows: Rows, e: np.ndarray) -> None:
        """What read_region checks of each region's ids, for all of a run at once."""
        ends = np.cumsum(e["events"]).astype(np.int64)
        starts = ends - e["events"].astype(np.int64)
        ids = rows.ids
        if not (np.array_equal(ids[starts], e["min_id"]) and
                np.array_equal(ids[ends - 1], e["max_id"])):
            raise CorruptionError(f"partition file {self.path}: a region does not match "
                                  "its index entry")
        if not self.verify:
            # without checksums, what structure can tell is all there is to check
            ascending = ids[1:] >= ids[:-1]
            ascending[ends[:-1] - 1] = True  # from one region to the next is not checked
            if not ascending.all():
                raise CorruptionError(f"partition file {self.path}: ids out of order")

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_all(path: str) -> Rows:
    with Reader(path) as r:
        return concat([r.read_region(i) for i in range(r.index.regions)])

