"""The partition map in shared memory: counters, and one slot per partition.

One segment: a header of counters and a table of slots. Every process maps
it; the coordinator alone adds and removes partitions, writers publish their
appends into it, readers copy it to take a snapshot. This module alone knows
the layout; everyone else reads and writes by name (Slot, the counters).

The published row count of a memtable lives here, not in the memtable, so a
snapshot of every partition is one copy of the table. Publishing a single
partition is one aligned 8-byte store; publishing several at once (a batch
that crosses a partition bound) happens under the PUBLISH lock with the
`publishing` counter naming the batch, so a reader that finds it set knows
the publisher died half-way and completes the publish in its copy.

A writer marks each partition it appends to as pending (the pending_*
fields) until its batch is published: whoever next locks such a partition
knows the writer died and finishes or undoes its batch (monotone/append.py).
Who holds which lock while changing what is the callers' protocol; the map
only does what it is told.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from .errors import ShmError
from .segment import Segment

MAGIC = 0x4D544E50414D31  # "MTNPAM1"
HEADER_WORDS = 512
SLOT_WORDS = 32
FREE, LIVE = 0, 1
APPENDED, LOGGED = 1, 2  # pending stages: rows written; and the WAL record too
ON_STORAGE, ON_CLOUD = 1, 2  # where a partition's file is (places): bits
U64 = np.uint64

# header words
(_MAGIC, _PID, _MAP_VERSION, _LSN, _SSN, _SLOTS, _SEGNO, _CONFIG_VERSION, _PUBLISHING,
 _WAL_NEEDED, _LIMIT_HITS, _NAME_KEY) = range(12)  # the key: two words
# what cold reads cost, as the processes that made them add it (under locks.STATS)
(_COLD_REQUESTS, _COLD_BYTES, _CACHE_HITS, _CACHE_HIT_BYTES, _CACHE_EVICTIONS) = range(13, 18)
COLD_READS = {"requests": _COLD_REQUESTS, "bytes": _COLD_BYTES, "hits": _CACHE_HITS,
              "hit_bytes": _CACHE_HIT_BYTES, "evictions": _CACHE_EVICTIONS}
NAME_KEY_BYTES = 16
# slot columns
(_STATE, _MIN, _MAX, _GEN, _ACTIVE, _ROWS, _FROZEN, _FROZEN_ROWS, _LSN_MIN, _FROZEN_LSN_MIN,
 _FILE_LSN, _FILE_EVENTS, _CREATED, _REFRESHED, _REFRESHES, _STORAGE, _FILE_SIZE,
 _FILE_SIZE_ORIGIN, _REGIONS, _HEAP, _HINTED, _FROZEN_HEAP,
 # a batch appended to the active memtable but not yet published: its lsn (set
 # last, cleared first), the row counts before and after it, how far it got,
 # and where its WAL record starts (file: the first lsn in its name)
 _PENDING_LSN, _PENDING_START, _PENDING_END, _PENDING_STAGE, _PENDING_WAL,
 _PENDING_OFFSET,
 # where the partition file is: ON_STORAGE (a local copy), ON_CLOUD (an object)
 _PLACES) = range(29)


def _field(column: int, doc: str) -> property:
    def get(self) -> int:
        return int(self.row[column])

    def put(self, value: int) -> None:
        self.row[column] = value

    return property(get, put, doc=doc)


class Slot:
    """A partition's row of the map, by name: a view of shared memory (writes go
    there) or a copy (a snapshot's)."""

    __slots__ = ("row",)

    def __init__(self, row: np.ndarray) -> None:
        self.row = row

    state = _field(_STATE, "FREE or LIVE (set last when a partition is added)")
    min = _field(_MIN, "first id of the partition")
    max = _field(_MAX, "last id of the partition")
    gen = _field(_GEN, "partition file generation: 0 = no file yet")
    active = _field(_ACTIVE, "segment number of the memtable writers append to")
    rows = _field(_ROWS, "published rows of the active memtable")
    frozen = _field(_FROZEN, "segment number of the memtable a refresh merges (0: none)")
    frozen_rows = _field(_FROZEN_ROWS, "rows of the frozen memtable")
    lsn_min = _field(_LSN_MIN, "oldest lsn in the active memtable (0: none)")
    frozen_lsn_min = _field(_FROZEN_LSN_MIN, "oldest lsn in the frozen memtable")
    file_lsn = _field(_FILE_LSN, "newest lsn the partition file holds")
    file_events = _field(_FILE_EVENTS, "events in the partition file")
    created = _field(_CREATED, "creation time, microseconds since the epoch")
    refreshed = _field(_REFRESHED, "time of the last refresh")
    refreshes = _field(_REFRESHES, "refreshes so far")
    storage = _field(_STORAGE, "id of the storage the file is in")
    file_size = _field(_FILE_SIZE, "bytes of the partition file")
    file_size_origin = _field(_FILE_SIZE_ORIGIN, "bytes of its regions uncompressed")
    regions = _field(_REGIONS, "regions in the partition file")
    heap = _field(_HEAP, "bytes of events in the active memtable")
    hinted = _field(_HINTED, "1 once a writer asked for a background refresh")
    frozen_heap = _field(_FROZEN_HEAP, "bytes of events in the frozen memtable")
    pending_lsn = _field(_PENDING_LSN, "lsn of a batch appended, not yet published (0: none)")
    pending_start = _field(_PENDING_START, "active rows before that batch")
    pending_end = _field(_PENDING_END, "active rows after it")
    pending_stage = _field(_PENDING_STAGE, "APPENDED, or LOGGED once its WAL record is whole")
    pending_wal = _field(_PENDING_WAL, "its WAL file (the first lsn in the name; 0: none)")
    pending_offset = _field(_PENDING_OFFSET, "where its record starts in that file")
    places = _field(_PLACES, "where the file is: ON_STORAGE and/or ON_CLOUD bits (0: no file)")

    @property
    def live(self) -> bool:
        return int(self.row[_STATE]) == LIVE

    def holds(self, first: int, last: int) -> bool:
        """Whether the partition is live and covers ids first..last."""
        row = self.row
        return int(row[_STATE]) == LIVE and int(row[_MIN]) <= first and last <= int(row[_MAX])

    def tables(self) -> tuple[int, int, int]:
        """(file generation, active, frozen): what a refresh changes."""
        row = self.row
        return int(row[_GEN]), int(row[_ACTIVE]), int(row[_FROZEN])

    def memtables(self, empty: bool = False) -> list[tuple[int, int]]:
        """(segment number, rows) of the frozen then the active memtable, those with
        rows (and the empty ones too when asked)."""
        row = self.row
        return [(int(seg), int(n)) for seg, n in ((row[_FROZEN], row[_FROZEN_ROWS]),
                                                 (row[_ACTIVE], row[_ROWS]))
                if seg and (n or empty)]

    def mark(self, lsn: int, start: int, end: int, wal: int, offset: int) -> None:
        """Mark a batch appended past the published rows (the lsn last: valid from there)."""
        row = self.row
        row[_PENDING_START] = start
        row[_PENDING_END] = end
        row[_PENDING_STAGE] = APPENDED
        row[_PENDING_WAL] = wal
        row[_PENDING_OFFSET] = offset
        row[_PENDING_LSN] = lsn

    def copy(self) -> "Slot":
        return Slot(self.row.copy())


class FileStats(NamedTuple):
    """What the map keeps of a partition file."""
    lsn: int
    events: int
    size: int
    size_origin: int
    regions: int
    refreshed: int
    refreshes: int


def _counter(word: int, doc: str) -> property:
    def get(self) -> int:
        return int(self.header[word])

    def put(self, value: int) -> None:
        self.header[word] = U64(value)

    return property(get, put, doc=doc)


class PartitionMap:
    def __init__(self, segment: Segment) -> None:
        self.segment = segment
        words = np.frombuffer(segment.map, np.uint64)
        self.header = words[:HEADER_WORDS]
        nslots = int(self.header[_SLOTS]) or (len(words) - HEADER_WORDS) // SLOT_WORDS
        if HEADER_WORDS + nslots * SLOT_WORDS > len(words):  # read from shared memory
            raise ShmError(f"shared memory segment {segment.name}: its header describes "
                           f"{nslots} slots, more than the segment holds")
        self.table = words[HEADER_WORDS:HEADER_WORDS + nslots * SLOT_WORDS].reshape(
            nslots, SLOT_WORDS)

    @classmethod
    def create(cls, name: str, nslots: int) -> "PartitionMap":
        size = (HEADER_WORDS + nslots * SLOT_WORDS) * 8
        seg = Segment(name, size, create=True)
        seg.reserve(0, size)
        pm = cls(seg)
        pm.header[_SLOTS] = nslots
        pm.header[_NAME_KEY:_NAME_KEY + 2] = np.frombuffer(os.urandom(NAME_KEY_BYTES), U64)
        pm.header[_MAGIC] = MAGIC
        return pm

    @classmethod
    def attach(cls, name: str) -> "PartitionMap":
        seg = Segment(name)
        if len(seg.map) < HEADER_WORDS * 8 or \
                int(np.frombuffer(seg.map, np.uint64, 1)[0]) != MAGIC:
            seg.close()
            raise ShmError(f"shared memory segment {name} is not a partition map")
        return cls(seg)

    @property
    def name_key(self) -> bytes:
        """The key memtable names are made with (segment.memtable_kind): it lives here, where
        only the owner's processes can read it, so nobody else can tell the next name."""
        return self.header[_NAME_KEY:_NAME_KEY + 2].tobytes()

    def __reduce__(self):
        return (PartitionMap.attach, (self.segment.name,))

    def close(self) -> None:
        self.header = self.table = None
        self.segment.close()

    # counters
    pid = _counter(_PID, "the coordinator's process id")
    lsn = _counter(_LSN, "the last lsn handed out (under SEQUENCE)")
    ssn = _counter(_SSN, "the next serial id (under SEQUENCE)")
    segno = _counter(_SEGNO, "the last memtable segment number handed out")
    map_version = _counter(_MAP_VERSION, "changes when partitions or their memtables do")
    config_version = _counter(_CONFIG_VERSION, "changes when the config does")
    publishing = _counter(_PUBLISHING, "lsn of a batch being published across partitions")
    wal_needed = _counter(_WAL_NEEDED, "WAL records below this lsn are all in files")
    limit_hits = _counter(_LIMIT_HITS, "writes that met mm_limit")

    def cold_reads(self) -> dict[str, int]:
        """What cold reads cost since the coordinator started (COLD_READS)."""
        return {name: int(self.header[word]) for name, word in COLD_READS.items()}

    def add_cold_reads(self, counts: dict[str, int]) -> None:
        """Add a process's counts (locks.STATS held)."""
        for name, n in counts.items():
            self.header[COLD_READS[name]] += U64(n)

    def bump(self, counter: str) -> int:
        """Add one to a counter (its owner serialises the changes); the new value."""
        value = getattr(self, counter) + 1
        setattr(self, counter, value)
        return value

    # finding partitions
    def slot(self, i: int) -> Slot:
        return Slot(self.table[i])

    def live(self) -> np.ndarray:
        """Indices of live slots, ordered by partition min."""
        idx = np.flatnonzero(self.table[:, _STATE] == LIVE)
        return idx[np.argsort(self.table[idx, _MIN], kind="stable")]

    def find(self, min_: int) -> int | None:
        """The live slot of the partition starting at min_."""
        hit = np.flatnonzero((self.table[:, _STATE] == LIVE) & (self.table[:, _MIN] == U64(min_)))
        return int(hit[0]) if len(hit) else None

    def bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(live slots, their mins, their maxes), ordered by min: what routing needs (copies)."""
        live = self.live()
        return live, self.table[live, _MIN].copy(), self.table[live, _MAX].copy()

    @staticmethod
    def route(bounds, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For sorted or unsorted ids: the position in bounds' live slots of the partition
        each falls in, and whether one does."""
        live, mins, maxs = bounds
        which = np.searchsorted(maxs, ids, side="left")
        inside = which < len(live)
        inside[inside] &= mins[which[inside]] <= ids[inside]
        return which, inside

    def partition_of(self, id_: int) -> int | None:
        """The live slot of the partition holding id_."""
        live, mins, maxs = self.bounds()
        i = int(np.searchsorted(maxs, U64(id_), side="left"))
        return int(live[i]) if i < len(live) and int(mins[i]) <= id_ else None

    def in_use(self) -> set[int]:
        """Segment numbers of every memtable of a live partition."""
        rows = self.table[self.live()]
        return set(rows[:, [_ACTIVE, _FROZEN]].ravel().tolist()) - {0}

    # a partition's life (callers hold the locks their protocol asks for)
    def add(self, lo: int, hi: int, active: int, storage: int, created: int) -> int:
        """A new live partition [lo, hi] with an empty memtable; its slot."""
        free = np.flatnonzero(self.table[:, _STATE] == FREE)
        if not len(free):
            raise ValueError(f"no free slot (at most {len(self.table)} partitions)")
        i = int(free[0])
        row = np.zeros(SLOT_WORDS, np.uint64)
        row[_MIN], row[_MAX], row[_ACTIVE], row[_STORAGE] = lo, hi, active, storage
        row[_CREATED] = created
        self.table[i, 1:] = row[1:]
        self.table[i, _STATE] = LIVE      # visible only now, complete
        self.bump("map_version")
        return i

    def remove(self, i: int) -> list[int]:
        """Forget a partition; the segment numbers of the memtables it had."""
        s = self.table[i]
        segnos = [int(x) for x in (s[_ACTIVE], s[_FROZEN]) if x]
        s[_STATE] = FREE
        s[1:] = 0
        self.bump("map_version")
        return segnos

    def freeze(self, i: int, segno: int) -> None:
        """The active memtable becomes the frozen one; segno the new, empty active."""
        s = self.table[i]
        s[_FROZEN_ROWS] = s[_ROWS]
        s[_FROZEN_LSN_MIN] = s[_LSN_MIN]
        s[_FROZEN_HEAP] = s[_HEAP]
        s[_FROZEN] = s[_ACTIVE]
        s[_ROWS] = 0
        s[_LSN_MIN] = 0
        s[_HEAP] = 0
        s[_HINTED] = 0
        s[_ACTIVE] = segno

    def set_file(self, i: int, stats: FileStats, storage: int | None = None,
                 places: int = ON_STORAGE) -> None:
        """Point a partition at a (new) file, a local one unless places says."""
        s = self.table[i]
        s[_GEN] += 1
        s[_PLACES] = places
        s[_FILE_LSN], s[_FILE_EVENTS], s[_FILE_SIZE] = stats.lsn, stats.events, stats.size
        s[_FILE_SIZE_ORIGIN], s[_REGIONS] = stats.size_origin, stats.regions
        s[_REFRESHED], s[_REFRESHES] = stats.refreshed, stats.refreshes
        if storage is not None:
            s[_STORAGE] = storage

    def switch(self, i: int, stats: FileStats, storage: int) -> int:
        """A refresh's new file in place of the frozen memtable; the segment dropped."""
        s = self.table[i]
        segno = int(s[_FROZEN])
        self.set_file(i, stats, storage)
        s[_FROZEN_ROWS] = 0
        s[_FROZEN_LSN_MIN] = 0
        s[_FROZEN_HEAP] = 0
        s[_FROZEN] = 0
        self.bump("map_version")  # clients unmap the frozen memtable
        return segno

    def set_places(self, i: int, places: int) -> None:
        """The file got or lost a copy (an upload, a download, a drop of one copy)."""
        self.table[i, _PLACES] = places
        self.bump("map_version")

    # batches being published
    def pending_in(self, slots: list[int]) -> list[int]:
        """Lsns of the batches pending in these slots."""
        return sorted({int(self.table[s, _PENDING_LSN]) for s in slots
                       if self.table[s, _PENDING_LSN]})

    def pending(self, lsn: int) -> list[int]:
        """Slots the batch lsn is pending in."""
        return np.flatnonzero(self.table[:, _PENDING_LSN] == U64(lsn)).tolist()

    def all_pending(self) -> list[int]:
        return sorted(set(self.table[:, _PENDING_LSN].tolist()) - {0})

    def logged(self, slots: list[int]) -> bool:
        """Whether any of these slots says its pending batch is LOGGED (decided)."""
        return any(int(self.table[s, _PENDING_STAGE]) >= LOGGED for s in slots)

    # reading
    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Live slot indices and a copy of their rows, by min (under PUBLISH shared)."""
        live = self.live()
        rows = self.table[live].copy()
        self.visible(rows)
        return live, rows

    def visible(self, rows: np.ndarray) -> np.ndarray:
        """Complete in a copy of slot rows the publish of a writer that died inside it.

        Only meaningful under PUBLISH shared: a live publisher holds PUBLISH
        exclusive while the publishing counter is set."""
        publishing = self.header[_PUBLISHING]
        if publishing:
            rows = rows.reshape(-1, SLOT_WORDS)
            hit = rows[:, _PENDING_LSN] == publishing
            rows[hit, _ROWS] = rows[hit, _PENDING_END]
        return rows

    def lsn_needed(self) -> int:
        """The oldest lsn still only in memory: WAL records below it may be deleted.

        Take it under SEQUENCE: writers set a partition's lsn_min as they take an
        lsn, so no record in flight is missed."""
        mins = self.table[self.live()][:, [_LSN_MIN, _FROZEN_LSN_MIN]].ravel()
        mins = mins[mins > 0]
        return int(mins.min()) if len(mins) else self.lsn + 1

    def heap_total(self) -> int:
        """Bytes of events in every memtable (active and frozen)."""
        rows = self.table[self.live()]
        return int(rows[:, _HEAP].sum() + rows[:, _FROZEN_HEAP].sum())
