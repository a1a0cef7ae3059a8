"""The repository's cache of cold regions: what was fetched of cloud objects, kept
on local disk so that reading it again costs a pread, not a GET.

One sparse file per object, in <repository>/cache, named by a hash of the
object's address and of its file's index and footer (a rewritten object is
another file; the old one ages out): its bytes sit at their offsets in the
object, the rest is holes. Whether a range is cached is asked of the file
system (SEEK_DATA, SEEK_HOLE), so there is no other bookkeeping to keep
consistent, and many processes may fill one file at once: they write the
same bytes at the same offsets. Bytes read from the cache are checked like
any region (its checksum from the sealed index); a range that fails is
fetched again (partition/reader.py), so a torn or damaged cache costs a
request, never a wrong answer. Files whose regions carry no checksum are not
cached.

The cache holds at most mm_cache bytes (0: none). Every process counts what
it writes; when its count says the limit may be passed, it measures the
directory (blocks allocated, so holes are free) and removes the files used
longest ago (a file's mtime: written, or opened for reading) until it is
under 7/8 of the limit. A file removed while another process reads it stays
readable to that process, which then writes to a file nobody will open.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading

from ..shm import private
from ..shm.errors import Untrusted
from .read_stats import ReadStats

log = logging.getLogger("monotone.cache")

DIRECTORY = "cache"


class CachedObject:
    """An object's file in the cache: size bytes, the object's own offsets."""

    def __init__(self, cache: "RegionCache", name: str, fd: int, size: int) -> None:
        self.cache, self.name, self.fd, self.size = cache, name, fd, size
        self.stretch = (0, 0)  # a range known to be all data, asked for last
        self.lock = threading.Lock()  # writes come from read-ahead threads: the
        #                               descriptor is closed only between them

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
        """Keep bytes fetched at offset; a failure (the disk full) only means the
        cache does without them."""
        if offset + len(data) > self.size:
            return
        with self.lock:
            if self.fd < 0:
                return  # closed meanwhile: the reader is gone
            try:
                os.pwrite(self.fd, data, offset)
            except OSError as e:
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

    def __init__(self, base: str, limit: int) -> None:
        self.directory = os.path.join(base, DIRECTORY)
        self.limit = limit
        self.lock = threading.Lock()
        self.usable = True        # False: the directory cannot be used (said once)
        self.known = -1           # bytes the directory held when last measured
        self.written = 0          # bytes this process wrote since
        self.evictions = 0        # files removed by this process, not yet counted
        self.made = False
        self.stats = ReadStats()  # what the cold reads through it cost, not yet counted

    def take_counts(self) -> dict[str, int]:
        """The cold reads' counts and evictions since last taken."""
        counts = self.stats.take()
        with self.lock:
            counts["evictions"], self.evictions = self.evictions, 0
        return counts

    def key(self, address: str, tail: bytes) -> str:
        h = hashlib.blake2b(address.encode(), digest_size=16)
        h.update(b"\0")
        h.update(tail)
        return h.hexdigest()

    def open(self, address: str, tail: bytes, size: int) -> CachedObject | None:
        """The cache file of an object whose file ends with tail, its regions in its
        first size bytes; None when there is no cache (limit 0, or it cannot be used)."""
        if self.limit <= 0 or not self.usable or size <= 0:
            return None
        name = self.key(address, tail)
        path = os.path.join(self.directory, name)
        try:
            if not self.made:
                private.make_dir(self.directory, ancestors=False)
                self.made = True
            fd = private.open_own(path, os.O_RDWR, create=True)
        except (OSError, Untrusted) as e:
            self._unusable(str(e))
            return None
        try:
            st = os.fstat(fd)
            if st.st_size != size:
                fresh = st.st_size == 0
                os.ftruncate(fd, size)
                if fresh and not self._holes(fd):
                    os.close(fd)
                    os.unlink(path)
                    self._unusable("its file system keeps no holes in files")
                    return None
            else:
                os.utime(fd)  # opened for reading: used now
        except OSError as e:
            os.close(fd)
            self._unusable(e.strerror or str(e))
            return None
        return CachedObject(self, name, fd, size)

    @staticmethod
    def _holes(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_DATA)
        except OSError as e:
            return e.errno == errno.ENXIO
        return False

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
            self._shrink()

    def _shrink(self) -> None:
        files = []
        try:
            with os.scandir(self.directory) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        files.append((st.st_mtime_ns, entry.name, st.st_blocks * 512))
        except OSError as e:
            log.warning("region cache: cannot list %s: %s", self.directory, e.strerror)
            return
        total = sum(f[2] for f in files)
        if total > self.limit:
            files.sort()
            for _, name, used in files:
                if total <= self.limit * 7 // 8:
                    break
                try:
                    os.unlink(os.path.join(self.directory, name))
                except FileNotFoundError:
                    continue  # another process took it
                total -= used
                self.evictions += 1
        self.known, self.written = total, 0

    def usage(self) -> tuple[int, int]:
        """(files, bytes) in the cache now."""
        return usage(self.directory)


def usage(directory: str) -> tuple[int, int]:
    """(files, bytes allocated) of a cache directory (none: (0, 0))."""
    files = used = 0
    try:
        with os.scandir(directory) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    files += 1
                    used += st.st_blocks * 512
    except FileNotFoundError:
        pass
    return files, used
