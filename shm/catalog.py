"""The partition map in shared memory.

One segment: a header of counters and a table of partition slots. Every
process maps it; the coordinator alone adds and removes partitions, writers
publish their appends into it, readers copy it to take a snapshot.

A slot row is SLOT_WORDS u64 words (see the S_* columns). The published row
count of a memtable lives here, not in the memtable, so that a snapshot of
every partition is one copy of the table. Publishing a single partition is one
aligned 8-byte store; publishing several at once (a batch that crosses a
partition boundary) happens under the PUBLISH lock with the header's
PUBLISHING word naming the batch, so a reader that finds it set knows the
publisher died half-way and completes the publish in its copy.

A writer marks each partition it appends to as pending (the S_PENDING_*
columns) until its batch is published: whoever next locks such a partition
knows the writer died and finishes or undoes its batch (monotone/writer.py).
"""
from __future__ import annotations

import numpy as np

from .segment import Segment

MAGIC = 0x4D544E43415431  # "MTNCAT1"
HEADER_WORDS = 512
# header words
H_MAGIC, H_PID, H_MAP_VERSION, H_LSN, H_SSN, H_SLOTS, H_SEGNO, H_CONFIG_VERSION = range(8)
H_PUBLISHING = 8       # lsn of a batch being published across partitions; 0 = none
H_WAL_NEEDED = 9       # WAL records below this lsn are all in partition files
H_LIMIT_HITS = 10      # writes that met mm_limit
# slot columns
(S_STATE, S_MIN, S_MAX, S_GEN, S_ACTIVE, S_ROWS, S_FROZEN, S_FROZEN_ROWS,
 S_LSN_MIN, S_FROZEN_LSN_MIN, S_FILE_LSN, S_FILE_EVENTS, S_CREATED, S_REFRESHED,
 S_REFRESHES, S_STORAGE, S_FILE_SIZE, S_FILE_SIZE_ORIGIN, S_REGIONS, S_HEAP,
 S_HINTED, S_FROZEN_HEAP,
 # a batch appended to the active memtable but not yet published: its lsn (set
 # last, cleared first), the row counts before and after it, how far it got,
 # and where its WAL record starts (file: the first lsn in its name)
 S_PENDING_LSN, S_PENDING_START, S_PENDING_END, S_PENDING_STAGE, S_PENDING_WAL,
 S_PENDING_OFFSET) = range(28)
SLOT_WORDS = 32
FREE, LIVE = 0, 1
APPENDED, LOGGED = 1, 2  # pending stages: rows written; and the WAL record too


class Catalog:
    def __init__(self, segment: Segment) -> None:
        self.segment = segment
        words = np.frombuffer(segment.map, np.uint64)
        self.header = words[:HEADER_WORDS]
        nslots = int(self.header[H_SLOTS]) or (len(words) - HEADER_WORDS) // SLOT_WORDS
        self.slots = words[HEADER_WORDS:HEADER_WORDS + nslots * SLOT_WORDS].reshape(nslots, SLOT_WORDS)

    @classmethod
    def create(cls, name: str, nslots: int) -> "Catalog":
        size = (HEADER_WORDS + nslots * SLOT_WORDS) * 8
        seg = Segment(name, size, create=True)
        seg.reserve(0, size)
        cat = cls(seg)
        cat.header[H_SLOTS] = nslots
        cat.header[H_MAGIC] = MAGIC
        return cat

    @classmethod
    def attach(cls, name: str) -> "Catalog":
        return cls(Segment(name))

    def __reduce__(self):
        return (Catalog.attach, (self.segment.name,))

    # counters
    def get(self, word: int) -> int:
        return int(self.header[word])

    def put(self, word: int, value: int) -> None:
        self.header[word] = np.uint64(value)

    def bump(self, word: int) -> int:
        value = int(self.header[word]) + 1
        self.header[word] = np.uint64(value)
        return value

    # slots
    def live(self) -> np.ndarray:
        """Indices of live slots, ordered by partition min."""
        idx = np.flatnonzero(self.slots[:, S_STATE] == LIVE)
        return idx[np.argsort(self.slots[idx, S_MIN], kind="stable")]

    def find(self, min_: int) -> int | None:
        hit = np.flatnonzero((self.slots[:, S_STATE] == LIVE) & (self.slots[:, S_MIN] == np.uint64(min_)))
        return int(hit[0]) if len(hit) else None

    def free_slot(self) -> int | None:
        hit = np.flatnonzero(self.slots[:, S_STATE] == FREE)
        return int(hit[0]) if len(hit) else None

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Live slot indices and a copy of their rows, by min (take it under PUBLISH shared)."""
        live = self.live()
        rows = self.slots[live].copy()
        self.visible(rows)
        return live, rows

    def visible(self, rows: np.ndarray) -> np.ndarray:
        """Complete in a copy of slot rows the publish of a writer that died inside it.

        Only meaningful under PUBLISH shared: a live publisher holds PUBLISH
        exclusive while the PUBLISHING word is set."""
        publishing = self.header[H_PUBLISHING]
        if publishing:
            rows = rows.reshape(-1, SLOT_WORDS)
            hit = rows[:, S_PENDING_LSN] == publishing
            rows[hit, S_ROWS] = rows[hit, S_PENDING_END]
        return rows

    def close(self) -> None:
        self.header = self.slots = None
        self.segment.close()


def lsn_needed(catalog: Catalog) -> int:
    """The oldest lsn still only in memory: WAL records below it may be deleted.

    Take it under SEQUENCE: writers set a partition's lsn_min as they take an
    lsn, so no record in flight is missed."""
    live = catalog.live()
    mins = catalog.slots[live][:, [S_LSN_MIN, S_FROZEN_LSN_MIN]].ravel()
    mins = mins[mins > 0]
    return int(mins.min()) if len(mins) else catalog.get(H_LSN) + 1


def heap_total(catalog: Catalog) -> int:
    """Bytes of events in every memtable (active and frozen)."""
    rows = catalog.slots[catalog.live()]
    return int(rows[:, S_HEAP].sum() + rows[:, S_FROZEN_HEAP].sum())
