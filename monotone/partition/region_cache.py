"""The repository's cache of cold regions: what was fetched of cloud objects, kept
on local disk so that reading it again costs a pread, not a GET.

One sparse file per object, in <repository>/cache, named by a hash of the
object's address and of its file's index and footer (a rewritten object is
another file; the old one ages out): its bytes sit at their offsets in the
object, the rest is holes. Whether a range is cached is asked of the file
system (SEEK_DATA, SEEK_HOLE), so there is no other bookkeeping to keep
consistent, and many processes may fill one file at once: they write the
same bytes at the same offsets. The file system answers by blocks, so what is
written always covers whole blocks (CachedObject.span: a GET is widened to
them), and a block holding data holds nothing but the object's bytes. Bytes
read from the cache are checked like any region (its checksum from the sealed
index); a range that fails is fetched again (partition/reader.py), so a torn
or damaged cache costs a request, never a wrong answer. Files whose regions
carry no checksum are not cached.

The cache holds at most mm_cache bytes (0: none, and what it held goes). Every
process counts what it writes; when its count says the limit may be passed, it
measures the directory (blocks allocated, so holes are free) and removes the
files used longest ago (a file's mtime: written, or opened for reading) until
it is under 7/8 of the limit. A file removed while another process reads it
stays readable to that process, which then writes to a file nobody will open.
The directory is reached through a descriptor opened without following a
link, and only names of the cache's own making are opened or removed there.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import threading

from ..shm import private
from ..shm.errors import Untrusted
from .read_stats import ReadStats

log = logging.getLogger("monotone.cache")

DIRECTORY = "cache"
_NAME = re.compile(r"[0-9a-f]{32}")  # a cache file's name: RegionCache.key
_BLOCK_MAX = 1 << 20  # blocks wider than this (a file system's odd answer) are not used
_OPEN = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class CachedObject:
    """An object's file in the cache: size bytes, the object's own offsets."""

    def __init__(self, cache: "RegionCache", name: str, fd: int, size: int,
                 block: int) -> None:
        self.cache, self.name, self.fd, self.size = cache, name, fd, size
        self.block = block
        self.stretch = (0, 0)  # a range known to be all data, asked for last
        self.lock = threading.Lock()  # writes come from read-ahead threads: the
        #                               descriptor is closed only between them
        self.failed = False  # a write failed (the disk full): no more writes

    def span(self, offset: int, size: int) -> tuple[int, int]:
        """The range to fetch for offset..offset+size so that what is kept covers
        whole blocks (the last one may end at the end of the file)."""
        lo = offset - offset % self.block
        hi = min(-(-(offset + size) // self.block) * self.block, self.size)
        return lo, max(hi, offset + size) - lo

    def present(self, offset: int, size: int) -> bool:
        """Whether offset..offset+size is all written (a range already written is
        never a hole again)."""
        lo, hi = self.stretch
        if lo <= offset and offset + size <= hi:
            return True
        try:
            if os.lseek(self.fd, offset, os.SEEK_DATA) != offset:
                return False
            end = os.lseek(self.fd, offset, os.SEEK_HOLE)
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: no data at or after offset
                log.warning("region cache: cannot look into %s: %s", self.name, e.strerror)
            return False
        self.stretch = (offset, end)
        return offset + size <= end

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def write(self, offset: int, data) -> None:
        """Keep bytes fetched at offset (a span()); a failure (the disk full) only
        means the cache does without them, and without this file's next ones."""
        if offset % self.block or (len(data) % self.block and offset + len(data) != self.size):
            return  # not whole blocks: a neighbour's bytes would seem present
        with self.lock:
            if self.fd < 0 or self.failed:
                return  # closed meanwhile (the reader is gone), or failed before
            try:
                os.pwrite(self.fd, data, offset)
            except OSError as e:
                self.failed = True
                log.warning("region cache: cannot write %s: %s", self.name, e.strerror)
                return
        self.cache.added(len(data))

    def close(self) -> None:
        with self.lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


class RegionCache:
    """<base>/cache, at most limit bytes."""

    def __init__(self, base: str, limit: int = -1) -> None:
        self.directory = os.path.join(base, DIRECTORY)
        self.limit = limit  # -1: not known yet (resize() gives it)
        self.lock = threading.Lock()
        self.dirfd = -1           # the directory, opened and checked (-1: not yet)
        self.block = 4096         # its file system's block (asked when it is opened)
        self.usable = True        # False: the directory cannot be used (said once)
        self.known = -1           # bytes the directory held when last measured
        self.written = 0          # bytes this process wrote since
        self.evictions = 0        # files removed by this process, not yet counted
        self.stats = ReadStats()  # what the cold reads through it cost, not yet counted

    def take_counts(self) -> dict[str, int]:
        """The cold reads' counts and evictions since last taken."""
        counts = self.stats.take()
        with self.lock:
            counts["evictions"], self.evictions = self.evictions, 0
        return counts

    def resize(self, limit: int) -> None:
        """A new mm_cache: past it, the oldest files go now (all of them for 0)."""
        if limit == self.limit:
            return
        self.limit = limit
        with self.lock:
            if self.dirfd >= 0 or os.path.isdir(self.directory):
                fd = self._directory()
                if fd >= 0:
                    self._shrink(fd)

    @staticmethod
    def key(address: str, tail: bytes) -> str:
        h = hashlib.blake2b(address.encode(), digest_size=16)
        h.update(b"\0")
        h.update(tail)
        return h.hexdigest()

    def open(self, address: str, tail: bytes, size: int) -> CachedObject | None:
        """The cache file of an object whose file ends with tail, its regions in its
        first size bytes; None when there is no cache (limit 0, or it cannot be used)."""
        if self.limit <= 0 or not self.usable or size <= 0:
            return None
        with self.lock:
            dirfd = self._directory()
        if dirfd < 0:
            return None
        name = self.key(address, tail)
        try:
            fd = os.open(name, _OPEN, private.FILE_MODE, dir_fd=dirfd)
        except OSError as e:
            log.warning("region cache: cannot open %s/%s: %s", self.directory, name,
                        e.strerror)
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise OSError(errno.EPERM, "not a regular file of the repository's owner")
            os.set_blocking(fd, True)
            if st.st_size != size:
                os.ftruncate(fd, size)
            os.utime(fd)  # used now: the last to go
        except OSError as e:
            os.close(fd)
            log.warning("region cache: cannot use %s/%s: %s", self.directory, name,
                        e.strerror)
            return None
        return CachedObject(self, name, fd, size, self.block)

    def _directory(self) -> int:
        """The directory's descriptor (self.lock held): made, checked and opened
        once, and again when it was removed meanwhile; -1 when it cannot be used."""
        if self.dirfd >= 0:
            try:
                if os.fstat(self.dirfd).st_nlink:
                    return self.dirfd
            except OSError:
                pass
            os.close(self.dirfd)  # removed (by hand): made again
            self.dirfd = -1
        if not self.usable:
            return -1
        try:
            private.make_dir(self.directory, ancestors=False)
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                         os.O_CLOEXEC)
        except (OSError, Untrusted) as e:
            self._unusable(str(e))
            return -1
        try:
            self.block = self._probe(fd)
        except OSError as e:
            os.close(fd)
            self._unusable(e.strerror or str(e))
            return -1
        self.dirfd = fd
        return fd

    @staticmethod
    def _probe(dirfd: int) -> int:
        """The file system's block, from a file of our own: it must keep holes."""
        name = f".probe-{os.getpid()}-{os.urandom(4).hex()}"
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     private.FILE_MODE, dir_fd=dirfd)
        try:
            os.ftruncate(fd, 1 << 20)
            try:
                os.lseek(fd, 0, os.SEEK_DATA)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
            else:
                raise OSError(errno.EOPNOTSUPP, "its file system keeps no holes in files")
            block = os.fstat(fd).st_blksize
            if not 512 <= block <= _BLOCK_MAX:
                raise OSError(errno.EOPNOTSUPP, f"its file system's blocks are {block} bytes")
            return block
        finally:
            os.close(fd)
            os.unlink(name, dir_fd=dirfd)

    def _unusable(self, why: str) -> None:
        if self.usable:
            log.warning("region cache %s not used: %s", self.directory, why)
        self.usable = False

    def added(self, n: int) -> None:
        """n bytes written: past what the limit allows, the oldest files go."""
        with self.lock:
            self.written += n
            if self.known >= 0 and self.known + self.written <= self.limit and \
                    self.written < self.limit // 8:
                return
            if self.dirfd >= 0:
                self._shrink(self.dirfd)

    def _shrink(self, dirfd: int) -> None:
        files = []
        for name, st in _entries(dirfd):
            files.append((st.st_mtime_ns, name, st.st_blocks * 512))
        total = sum(f[2] for f in files)
        if total > self.limit:
            files.sort()
            for _, name, used in files:
                if total <= self.limit * 7 // 8:
                    break
                try:
                    os.unlink(name, dir_fd=dirfd)
                except FileNotFoundError:
                    continue  # another process took it
                total -= used
                self.evictions += 1
        self.known, self.written = total, 0


def _entries(dirfd: int):
    """(name, lstat) of the cache files in a directory: regular files of the cache's
    own naming; others (and those gone meanwhile) are passed over."""
    try:
        names = os.listdir(dirfd)
    except OSError as e:
        log.warning("region cache: cannot list it: %s", e.strerror)
        return
    for name in names:
        if not _NAME.fullmatch(name):
            continue
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield name, st


def usage(directory: str) -> tuple[int, int]:
    """(files, bytes allocated) of a cache directory (none: (0, 0))."""
    try:
        dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0, 0
    try:
        files = used = 0
        for _, st in _entries(dirfd):
            files += 1
            used += st.st_blocks * 512
        return files, used
    finally:
        os.close(dirfd)
