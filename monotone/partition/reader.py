"""Reading a partition file: its index once, then one region at a time.

The file comes through the storage I/O seam (a ReadHandle from a Store, or a
local path): each region is one read of a byte range, checked (crc, when the
file has them), decrypted and decompressed on its own.

The file is untrusted input: its footer and index are checked against the
file's size and the format's limits (fileformat.py) when it is opened, so that
every region read afterwards is a range within the file, of a bounded size,
decompressing to a bounded size.
"""
from __future__ import annotations

import numpy as np

from ..errors import CorruptionError, MonotoneError
from ..format import region
from ..format.codec import codec as make_codec
from ..format.crypto import Cipher
from ..format.rows import Rows, concat
from ..store import LocalFile, ReadHandle
from . import fileformat as partition
from .fileformat import Identity


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
        data = self.read_stored(i)
        if self.cipher is not None:
            ad = partition.region_ad(self.identity, self.flags, i, int(e["offset"]))
            data = self.cipher.open(data, ad, f"partition file {self.path}: region {i}")
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
        self.file.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_all(path: str) -> Rows:
    with Reader(path) as r:
        return concat([r.read_region(i) for i in range(r.index.regions)])

