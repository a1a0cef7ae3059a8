"""Where a storage's files live, behind one small interface: the storage I/O seam.

Partition files are read and written only through a Store: read a byte range
(one region per read), create a file written front to back, rename,
remove, list, size. LocalStore keeps them in a local directory; a copy in a
cloud is read through the same ReadHandle protocol (partition/cloud_file.py).
What the names mean (states of a partition file) is partition/files.py's
business.

LocalStore's files are private (shm/private.py): made 0600 under new names,
never written through a link; a file opened, renamed or removed must be a
regular file of our uid, else the error names it (a partition file someone
else put in a storage's directory is never read as ours).
"""
from __future__ import annotations

import errno
import os
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from .errors import AccessDenied, CorruptionError, MonotoneError, NoSpaceError
from .settings import Place
from .shm import libc, private
from .shm.errors import Untrusted

# bytes between asking the kernel to start writing a new file out: the flush is
# spread over the write, so the fsync at the end is short and other processes'
# writes (the WAL) do not queue behind one large flush of the whole file
WRITEBACK = 8 << 20
# blocks allocated past the end of a file being written, a chunk at a time: a write into
# allocated blocks skips the filesystem's block allocation (ext4: about a quarter of
# the cost of writing 100 KiB); what is left of them is freed when the file is finished
AHEAD = 4 << 20
NEVER = 1 << 62  # blocks ahead "reach" this far for a file that gets none


class ReadHandle(ABC):
    """A file open for reading: name (for messages), size, read(offset, size), close().

    Every handle declares what it can do, so a reader never probes for it:
      ranged      read() fetches only the range asked (a pread, one ranged GET);
                  otherwise the first read fetches the whole file
      prefetches  prefetch() starts reads ahead, in the background; otherwise
                  it does nothing
    and rewritten() says, after a region failed its check, whether the file
    went while it was read and another took its place (replaced, not damaged):
    never, for a file that cannot go. What a handle of a file that can go (a
    cloud object) does then, its opener tells it (a Fallback)."""
    name: str
    size: int
    ranged = True
    prefetches = False

    @abstractmethod
    def read(self, offset: int, size: int) -> bytes: ...

    def prefetch(self, offsets, sizes, ascending: bool = True) -> bool:
        """Start reading these ranges (numpy arrays of offsets and sizes); read()
        takes them, or any part of one, when asked. False: not all of them yet."""
        return True

    def checked(self, regions: bool) -> None:
        """Told by the file's reader whether its regions carry checksums."""

    def reread(self, offset: int, size: int) -> bytes | None:
        """A range that failed its check, read again from where the file really is,
        when the bytes read may have come from a copy (None: they did not)."""
        return None

    def rewritten(self) -> bool:
        return False

    @abstractmethod
    def close(self) -> None: ...


@dataclass(frozen=True)
class Fallback:
    """What a handle does when its file goes while it is read (a partition's cloud
    object dropped as a refresh of it begins): copy() opens the same file elsewhere
    (its local copy), or gives None when there is none; current() says whether the
    file is still the partition's."""
    copy: Callable[[], ReadHandle | None]
    current: Callable[[], bool]


class WriteHandle:
    """A new file written front to back: write(data), then finish(sync) (closes; the
    file's size) or abort() (closes and removes what was written)."""
    name: str
    offset: int

    def write(self, data) -> None:
        raise NotImplementedError

    def write_parts(self, parts: list) -> None:
        """The buffers' bytes one after another (a vectored write where there is one)."""
        self.write(b"".join(memoryview(part).cast("B") for part in parts))

    def settle(self) -> None:
        """What was written so far, on disk (before a write that commits it)."""
        raise NotImplementedError

    def finish(self, sync: bool) -> int:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class Store:
    """Where a storage's files live (location: for messages)."""
    location: str

    def open(self, name: str, size: int | None = None) -> ReadHandle:
        """size: the file's as it was written (an append in flight is past it)."""
        raise NotImplementedError

    def create(self, name: str, sync: bool) -> WriteHandle:
        raise NotImplementedError

    def append(self, name: str, at: int, sync: bool) -> WriteHandle:
        """An existing file written on after its first at bytes (what lies past them
        goes first); abort() cuts it back to them."""
        raise NotImplementedError

    def sync_dir(self) -> None:
        """The directory's entries on disk (a file created must stay)."""
        raise NotImplementedError

    def rename(self, src: str, dst: str, sync: bool) -> None:
        raise NotImplementedError

    def remove(self, name: str, sync: bool) -> bool:
        raise NotImplementedError

    def list(self) -> list[str]:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def path(self, name: str) -> str:
        """A file's local path (what a cloud upload reads, a download writes)."""
        raise NotImplementedError

    def fsync(self, name: str) -> None:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def touch(self, name: str) -> None:
        """The file's modification time set to now."""
        raise NotImplementedError

    def mtime(self, name: str) -> float:
        raise NotImplementedError

    def same(self, other: "Store", name: str) -> bool:
        raise NotImplementedError


def allocate_ahead(fd: int, ahead: int, size: int, end: int) -> int:
    """Make the blocks of fd, a file of size bytes, allocated past its end (its size
    stays) reach end, when those allocated so far reach only ahead; how far they reach
    now. Best effort: where the filesystem cannot, or the disk is too full to give a
    chunk, what the call took is given back and nothing more is asked for this file
    (NEVER: a write then meets a full disk itself)."""
    if end <= ahead:
        return ahead
    target = max(end, ahead + AHEAD)
    if libc.fallocate is None or \
            libc.fallocate(fd, libc.FALLOC_FL_KEEP_SIZE, ahead, target - ahead) != 0:
        try:
            os.ftruncate(fd, size)  # frees what a failed call allocated past the end
        except OSError:
            pass
        return NEVER
    return target


def sync_path(path: str) -> None:
    """fsync a file or directory by its path (a directory: so renames in it last)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalFile(ReadHandle):
    """A file open for reading: one pread per read. own: it must be a regular file of
    ours, reached without a link (the engine's files); a reader of files copied or
    shared for it (monotone.dask) takes what it is given."""

    def __init__(self, path: str, own: bool = True, size: int | None = None) -> None:
        self.name = path
        try:
            self.fd = private.open_own(path) if own else \
                os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except Untrusted as e:
            raise AccessDenied(f"partition file {e}") from None
        except OSError as e:
            raise MonotoneError(f"cannot open partition file {path}: {e.strerror}") from None
        self.size = os.fstat(self.fd).st_size
        if size is not None:  # the file as committed: an append in flight is past it
            if size > self.size:
                os.close(self.fd)
                raise CorruptionError(f"partition file {path}: {self.size} bytes, fewer than "
                                      f"the {size} it was written with (truncated)")
            self.size = size

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LocalWriter(WriteHandle):
    """A new file, written front to back; with sync, written out as it grows.

    Unbuffered: regions are large, and written as their parts (os.writev)
    straight from the arrays that hold them."""

    def __init__(self, path: str, sync: bool, at: int | None = None) -> None:
        self.name = path
        self.sync = sync
        self.offset = 0
        self.ahead = 0  # blocks are allocated up to here (allocate_ahead)
        self.at = at  # appending after this many bytes of an existing file (None: new)
        try:
            if at is None:  # a temporary of ours left by a failed attempt goes first
                fd = private.create(path, os.O_WRONLY, replace=True)
            else:
                fd = private.open_own(path, os.O_WRONLY)
                try:
                    size = os.fstat(fd).st_size
                    if size < at:
                        raise CorruptionError(f"partition file {path}: shorter than the {at} "
                                              "bytes it was written with (truncated)")
                    # what a failed append left past it goes, and blocks allocated past
                    # the end by an append cut short before its finish
                    os.ftruncate(fd, at)
                    if size > at and sync:
                        os.fsync(fd)
                    os.lseek(fd, at, os.SEEK_SET)
                except BaseException:
                    os.close(fd)
                    raise
                self.offset = self.ahead = at
            self.file = open(fd, "wb", buffering=0)
        except Untrusted as e:
            raise AccessDenied(f"partition file {e}") from None
        except OSError as e:
            raise MonotoneError(f"cannot create partition file {path}: {e.strerror}") from None

    def write(self, data) -> None:
        self.write_parts([data])

    def write_parts(self, parts: list) -> None:
        parts = [memoryview(part).cast("B") for part in parts]
        total = sum(len(part) for part in parts)
        try:
            self.ahead = allocate_ahead(self.file.fileno(), self.ahead, self.offset,
                                        self.offset + total)
            done = os.writev(self.file.fileno(), parts)
            if done < total:  # short: the rest as one buffer, until all of it is written
                rest = memoryview(b"".join(parts))[done:]
                while rest:
                    rest = rest[os.write(self.file.fileno(), rest):]
        except OSError as e:
            cls = NoSpaceError if e.errno == errno.ENOSPC else MonotoneError
            raise cls(f"cannot write partition file {self.name}: {e.strerror}") from None
        end = self.offset + total
        if self.sync and libc.sync_file_range is not None and \
                end // WRITEBACK != self.offset // WRITEBACK:
            libc.sync_file_range(self.file.fileno(), end // WRITEBACK * WRITEBACK - WRITEBACK,
                                 WRITEBACK, libc.SYNC_FILE_RANGE_WRITE)
        self.offset = end

    def settle(self) -> None:
        """What was written so far, on disk (before a write that commits it)."""
        os.fsync(self.file.fileno())

    def finish(self, sync: bool) -> int:
        self.file.flush()
        if self.ahead > self.offset:
            os.ftruncate(self.file.fileno(), self.offset)  # frees the blocks ahead
        if sync:
            os.fsync(self.file.fileno())
        self.file.close()
        return self.offset

    def abort(self) -> None:
        if self.at is not None:  # an append: the file as it was
            try:
                os.ftruncate(self.file.fileno(), self.at)
                if self.sync:
                    os.fsync(self.file.fileno())
            finally:
                self.file.close()
            return
        self.file.close()
        try:
            os.unlink(self.name)
        except FileNotFoundError:
            pass


class LocalStore(Store):
    """A storage's files in a local directory."""

    def __init__(self, directory: str) -> None:
        self.location = directory

    def path(self, name: str) -> str:
        return os.path.join(self.location, name)

    def open(self, name: str, size: int | None = None) -> LocalFile:
        return LocalFile(self.path(name), size=size)

    def create(self, name: str, sync: bool) -> LocalWriter:
        return LocalWriter(self.path(name), sync)

    def append(self, name: str, at: int, sync: bool) -> LocalWriter:
        with _ours():
            return LocalWriter(self.path(name), sync, at)

    def sync_dir(self) -> None:
        sync_path(self.location)

    def rename(self, src: str, dst: str, sync: bool) -> None:
        """Atomically: dst is the old file or the new one, whatever happens. Only a
        file of ours moves (nor is one put in place of another's)."""
        for name in (src, dst):
            try:
                with _ours():
                    private.owned(self.path(name))
            except FileNotFoundError:
                if name == src:
                    raise
        os.replace(self.path(src), self.path(dst))
        if sync:
            sync_path(self.location)

    def remove(self, name: str, sync: bool) -> bool:
        with _ours():
            if not private.remove_own(self.path(name)):
                return False
        if sync:
            sync_path(self.location)
        return True

    def list(self) -> list[str]:
        try:
            return sorted(os.listdir(self.location))
        except FileNotFoundError:
            return []

    def size(self, name: str) -> int:
        return os.lstat(self.path(name)).st_size

    def fsync(self, name: str) -> None:
        fd = private.open_own(self.path(name))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def exists(self, name: str) -> bool:
        return os.path.lexists(self.path(name))

    def touch(self, name: str) -> None:
        with _ours():
            fd = private.open_own(self.path(name))
        try:
            os.utime(fd)
        finally:
            os.close(fd)

    def mtime(self, name: str) -> float:
        return os.lstat(self.path(name)).st_mtime

    def same(self, other: "LocalStore", name: str) -> bool:
        """Whether name here and in other is one file (two storages, one directory)."""
        try:
            return os.path.samefile(self.path(name), other.path(name))
        except OSError:
            return False


@contextmanager
def _ours():
    """A file that is not ours (another's, a link) is an AccessDenied naming it."""
    try:
        yield
    except Untrusted as e:
        raise AccessDenied(f"partition file {e}") from None


def store_of(place: Place) -> LocalStore:
    """The store of a storage's files (where a client or a job finds them)."""
    return LocalStore(place.directory)

