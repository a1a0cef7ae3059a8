"""Reading a partition file whose object is in a cloud: CloudFile, the read
handle of cold reads (through the partition's local stub) and of readers with
no coordinator (monotone.offline, through the object alone)."""
from __future__ import annotations

import hashlib
import os
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..cloud import Cloud, ObjectMissing
from ..errors import CorruptionError, MonotoneError
from ..store import Fallback, ReadHandle
from . import fileformat as partition
from .read_stats import ReadStats

AHEAD = 4      # regions a descending cold read fetches ahead of the one it stands on
AHEAD_REGIONS = 256  # regions an ascending one offers at a time (the budget decides)
REQUEST = 8 << 20    # bytes of one read-ahead GET at most: neighbouring regions join
BUDGET = 64 << 20    # bytes a reader keeps fetched or in flight ahead of what it read
_THREADS = 16
TAIL = 256 * 1024  # bytes of an object's end a fetch takes for its index, by default
# an object is read whole (one GET, no ranges) only below this: its size is a
# number given by a manifest, a stub or the cloud, and a sparse object of 20 GiB
# must never be read into memory at once
WHOLE = 64 << 20
_CACHED = -1  # where a range offered lies that the cache holds

_pool = None
_pool_pid = 0


_NAMED = re.compile(r"(?:^|/)(\d{20})\.[0-9a-f]{16}\Z")  # an object named by its digest


def _check_digest(cloud: Cloud, name: str, min_: int, size: int, start: int,
                  data: bytes) -> None:
    """The object's index and footer are those its name was made of (fetch)."""
    where = cloud.where(name)
    offset, length, _, _ = partition.decode_footer(data[-partition.FOOTER.size:], where)
    if length > partition.MAX_INDEX or offset + length + partition.FOOTER.size != size:
        raise CorruptionError(f"cloud object {where}: its footer does not end its index")
    tail = data[offset - start:] if offset >= start else \
        cloud.read(name, offset, start - offset) + data
    if object_name(min_, tail) != name.rsplit("/", 1)[-1]:
        raise CorruptionError(f"cloud object {where}: not the object its name says (its "
                              "index differs): other bytes were put under its name")


def object_name(min_: int, tail: bytes) -> str:
    """The name of a partition file's object: its min and a digest of its tail
    (index and footer, which name every region's checksum and when the file was
    written), so that an object's name is never reused for other bytes: an
    object a reader was told of keeps its bytes until it is removed."""
    return f"{min_:020d}.{hashlib.blake2b(tail, digest_size=8).hexdigest()}"
_lock = threading.Lock()


def _threads():
    """The read-ahead threads of this process (a fork gets its own)."""
    global _pool, _pool_pid
    from concurrent.futures import ThreadPoolExecutor
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="monotone-cloud")
            _pool_pid = os.getpid()
        return _pool


stats = ReadStats()  # of the reads with no region cache (monotone.offline)


@dataclass
class Budget:
    """Bytes of read-ahead fetched or in flight and not yet read: a file's own, or
    shared by the files one cursor walks through, so that it reads ahead across
    partitions within one limit."""
    limit: int = field(default_factory=lambda: BUDGET)
    outstanding: int = 0

    @property
    def full(self) -> bool:
        return self.outstanding >= self.limit


@dataclass
class _Run:
    """One read-ahead GET: its bytes, and how many of the ranges in it are unread."""
    size: int
    future: Future
    left: int

    def view(self) -> memoryview:
        """The GET's bytes (waited for), to be sliced without a copy: a region read
        from it keeps them alive while its rows are (they are views of it)."""
        return memoryview(self.future.result())


class CloudFile(ReadHandle):
    """A partition file that lives in a cloud, read by byte ranges of its object.

    The file's tail (index and footer) is held in memory, so a reader opens it
    with no request of its own: from the local stub (from_stub: no request at
    all), or fetched with the object (fetch). Regions are then read by ranged
    GETs, or from the region cache (cache: the object's file there, None: no
    cache), which keeps what was fetched. When the object goes while it is
    read, fallback says what to do.

    Read-ahead: the ranges offered to prefetch() are fetched in order as far as
    the budget allows (bytes fetched or in flight and not yet read: the file's
    own, or one shared by the files a cursor walks), neighbouring ones joined
    into GETs of up to REQUEST bytes, several in flight; ranges the cache holds
    cost no GET and break a run. A GET whose ranges have all been read gives its
    bytes back to the budget, so a slow reader holds the read-ahead back."""

    prefetches = True

    def __init__(self, cloud: Cloud, name: str, size: int, tail: bytes,
                 fallback: Fallback | None = None, cache=None) -> None:
        self.cloud = cloud
        self.object = name
        self.name = cloud.where(name)
        self.size = size
        self.ranged = cloud.ranged_reads
        self.tail = tail
        self.start = size - len(tail)  # where the tail begins in the object
        self.fallback = fallback
        self.stats = cache.stats if cache is not None else stats
        self.caches = cache if self.ranged else None  # the region cache, once checked()
        self.cache = None  # this object's file there
        self.hit = (-1, 0)  # the last range read from it, until its check passes
        self.budget = Budget()
        self.ahead: dict[int, _Run] = {}    # read-ahead GETs by where they start
        self.parts: dict[int, int] = {}     # a range offered, by offset: where its GET
        #                                     starts (_CACHED: in the cache)
        self.frontier = 0                   # ascending offers below it are all planned
        self.local: ReadHandle | None = None  # the same file, after the object went

    @classmethod
    def from_stub(cls, stub: ReadHandle, cloud: Cloud, min_: int,
                  fallback: Fallback | None = None, cache=None) -> "CloudFile":
        """The file of partition min_'s stub: the file's tail as it is in the object
        (whose name it gives, object_name)."""
        try:
            if stub.size > partition.MAX_INDEX + partition.FOOTER.size:
                raise CorruptionError(f"cloud stub {stub.name}: {stub.size} bytes, more than "
                                      "the index and footer of any partition file")
            tail = stub.read(0, stub.size)
        finally:
            stub.close()
        if len(tail) < partition.FOOTER.size:
            raise CorruptionError(f"cloud stub {stub.name}: truncated")
        offset, length, _, _ = partition.decode_footer(tail[-partition.FOOTER.size:],
                                                       stub.name)
        if length + partition.FOOTER.size != len(tail):
            raise CorruptionError(f"cloud stub {stub.name}: does not hold the file's index")
        return cls(cloud, object_name(min_, tail), offset + len(tail), tail, fallback, cache)

    @classmethod
    def fetch(cls, cloud: Cloud, name: str, tail: int = 0, size: int = 0) -> "CloudFile":
        """An object read without a stub: its last `tail` bytes in one ranged GET,
        all of it when tail is 0 and it is below WHOLE bytes (else its last TAIL);
        never more than WHOLE. size: the object's (0: asked for).

        An object named by its digest (object_name) is refused unless its index and
        footer are the ones the name was made of (the rest of the index fetched when
        the tail did not hold it): as the index holds every region's checksum, other
        bytes under the name (another version of the partition, or anyone's) are
        not read."""
        size = size or cloud.size(name)
        if size < partition.FOOTER.size:
            raise CorruptionError(f"cloud object {cloud.where(name)}: {size} bytes is too "
                                  "few for a partition file")
        tail = min(tail or (size if size <= WHOLE else TAIL), WHOLE)
        start = max(0, size - tail)
        data = cloud.read(name, start, size - start)
        stats.add(requests=1, bytes=len(data))
        if len(data) != size - start:
            raise CorruptionError(f"cloud object {cloud.where(name)}: ends before the "
                                  f"{size} bytes it was said to have")
        named = _NAMED.search(name)
        if named is not None:
            _check_digest(cloud, name, int(named.group(1)), size, start, data)
        return cls(cloud, name, size, data)

    def checked(self, regions: bool) -> None:
        """What the file's reader found (before it reads a region): whether its
        regions carry checksums. Only those of a file whose regions do are cached
        (nothing else would tell a torn cache file from the object's bytes)."""
        if regions and self.caches is not None and self.cache is None:
            self.cache = self.caches.open(self.name, self.tail, self.start)

    def share(self, budget: Budget) -> None:
        """Read ahead within a budget shared with other files (before any read)."""
        if not self.ahead:
            self.budget = budget

    def read(self, offset: int, size: int) -> bytes:
        if offset >= self.start:
            return self.tail[offset - self.start:offset - self.start + size]
        if self.local is not None:
            return self.local.read(offset, size)
        try:
            return self._get(offset, size)
        except ObjectMissing as e:
            return self._fall_back(offset, size, e)

    def _fall_back(self, offset: int, size: int, missing: ObjectMissing) -> bytes:
        """The object went: the range from the same file elsewhere (the fallback's)."""
        if self.fallback is None:
            raise missing
        self.local = self.fallback.copy()
        if self.local is None:
            raise ObjectMissing(f"{self.name}: the partition was rewritten while this "
                                "cursor read it from the cloud: open a new cursor") from None
        return self.local.read(offset, size)

    def reread(self, offset: int, size: int) -> bytes | None:
        """A range that failed its check, read again from the object when it may have
        come from the cache (None: it did not, reading again would not help)."""
        if self.cache is None or offset >= self.start or self.local is not None:
            return None
        if self.hit == (offset, size):  # not a hit after all
            self.stats.add(hits=-1, hit_bytes=-size)
            self.hit = (-1, 0)
        try:
            return self._fetch(offset, size)
        except ObjectMissing as e:
            return self._fall_back(offset, size, e)

    def _get(self, offset: int, size: int) -> bytes:
        """A range of the object: fetched ahead, cached, or one GET (without ranged
        reads: the whole object, once)."""
        if not self.ranged:
            if self.size > WHOLE:
                raise MonotoneError(f"{self.name}: an object of {self.size} bytes is too large "
                                    f"to read whole (over {WHOLE}), and its cloud reads no "
                                    "ranges")
            whole = self.cloud.read(self.object)
            self.stats.add(requests=1, bytes=len(whole))
            if len(whole) != self.size:
                raise CorruptionError(f"{self.name}: {len(whole)} bytes where its file has "
                                      f"{self.size}")
            self.tail, self.start = whole, 0
            return self.tail[offset:offset + size]
        at = self.parts.pop(offset, None)
        if at == _CACHED or at is None and self.cache is not None and \
                self.cache.present(offset, size):
            self.stats.add(hits=1, hit_bytes=size)
            self.hit = (offset, size)
            return self.cache.read(offset, size)
        if at is not None:  # a range offered to prefetch: once read, its run has it no more
            run = self.ahead[at]
            data = run.view()[offset - at:offset - at + size]
            run.left -= 1
            if not run.left:
                del self.ahead[at]
                self.budget.outstanding -= run.size
            return data
        for at, run in self.ahead.items():
            if at <= offset and offset + size <= at + run.size:
                return run.view()[offset - at:offset - at + size]
        return self._fetch(offset, size)

    def _fetch(self, offset: int, size: int) -> bytes | memoryview:
        """One GET, its bytes kept in the cache (in a read-ahead thread, or not):
        then widened to whole blocks of the cache's file system."""
        cache = self.cache
        if cache is None:
            data = self.cloud.read(self.object, offset, size)
            self.stats.add(requests=1, bytes=len(data))
            return data
        lo, n = cache.span(offset, size)
        data = self.cloud.read(self.object, lo, n)
        self.stats.add(requests=1, bytes=len(data))
        if len(data) != n:  # the reader says what is wrong with it
            return data[offset - lo:offset - lo + size]
        cache.write(lo, data)
        return memoryview(data)[offset - lo:offset - lo + size]

    def prefetch(self, offsets, sizes, ascending: bool = True) -> bool:
        """Start GETs of these ranges (numpy arrays; with ascending, the offsets
        ascend: the ranges ahead of a reader walking up, offered again and again as
        it goes); False when the budget stopped it before the last."""
        if self.local is not None:
            return True
        budget = self.budget
        first = 0
        if ascending:  # offered again at every region: what was planned costs little
            if not len(offsets) or self.frontier > int(offsets[-1]):
                return True
            if budget.full:
                return False
            first = int(np.searchsorted(offsets, self.frontier))
        run: list[tuple[int, int]] = []  # neighbouring ranges, to be one GET
        for offset, size in zip(offsets[first:].tolist(), sizes[first:].tolist()):
            if offset >= self.start or offset in self.parts:
                continue
            if self.cache is not None and self.cache.present(offset, size):
                self.parts[offset] = _CACHED
                if run:
                    self._request(run)
                    run = []
                continue
            if run and offset == run[-1][0] + run[-1][1] and \
                    offset + size - run[0][0] <= REQUEST:
                run.append((offset, size))
                continue
            if run:
                self._request(run)
                run = []
            if budget.full:
                if ascending:
                    self.frontier = offset
                return False
            run = [(offset, size)]
        if run:
            self._request(run)
        if ascending and len(offsets):
            self.frontier = int(offsets[-1]) + 1
        return True

    def _request(self, run: list[tuple[int, int]]) -> None:
        at = run[0][0]
        size = run[-1][0] + run[-1][1] - at
        future = _threads().submit(self._fetch, at, size)
        self.ahead[at] = _Run(size, future, len(run))
        self.budget.outstanding += size
        for offset, _ in run:
            self.parts[offset] = at

    def rewritten(self) -> bool:
        return self.fallback is not None and not self.fallback.current()

    def close(self) -> None:
        for run in self.ahead.values():
            run.future.cancel()
            self.budget.outstanding -= run.size
        self.ahead.clear()
        self.parts.clear()
        if self.cache is not None:
            self.cache.close()
            self.cache = None
        if self.local is not None:
            self.local.close()
