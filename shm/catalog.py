"""The partition map in shared memory.

One segment: a header of counters and a table of partition slots. Every
process maps it; the coordinator alone adds and removes partitions, writers
publish their appends into it, readers copy it to take a snapshot.

A slot row is 24 u64 words (see the S_* columns). The published row count of
a memtable lives here, not in the memtable, so that a snapshot of every
partition is one copy of the table. Publishing a single partition is one
aligned 8-byte store; publishing several at once (a batch that crosses a
partition boundary) goes through the journal under the PUBLISH lock, so a
reader never sees part of a batch and a writer that dies half-way through is
finished by the next one to take the lock.
"""
from __future__ import annotations

import numpy as np

from .segment import Segment

MAGIC = 0x4D544E43415431  # "MTNCAT1"
HEADER_WORDS = 512
# header words
H_MAGIC, H_PID, H_MAP_VERSION, H_LSN, H_SSN, H_SLOTS, H_SEGNO, H_CONFIG_VERSION = range(8)
H_JOURNAL = 8          # number of (slot, rows) pairs being published; 0 = none
H_WAL_NEEDED = 9       # WAL records below this lsn are all in partition files
H_LIMIT_HITS = 10      # writes that met mm_limit
H_JOURNAL_BASE = 16    # pairs follow
JOURNAL_MAX = 240
# slot columns
(S_STATE, S_MIN, S_MAX, S_GEN, S_ACTIVE, S_ROWS, S_FROZEN, S_FROZEN_ROWS,
 S_LSN_MIN, S_FROZEN_LSN_MIN, S_FILE_LSN, S_FILE_EVENTS, S_CREATED, S_REFRESHED,
 S_REFRESHES, S_STORAGE, S_FILE_SIZE, S_FILE_SIZE_ORIGIN, S_REGIONS, S_HEAP,
 S_HINTED, S_FROZEN_HEAP) = range(22)
SLOT_WORDS = 24
FREE, LIVE = 0, 1


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
        self.apply_journal(live, rows)
        return live, rows

    # multi-partition publish (caller holds PUBLISH exclusive)
    def publish_many(self, pairs: list[tuple[int, int]]) -> None:
        base = H_JOURNAL_BASE
        for i, (slot, rows) in enumerate(pairs):
            self.header[base + 2 * i] = np.uint64(slot)
            self.header[base + 2 * i + 1] = np.uint64(rows)
        self.header[H_JOURNAL] = np.uint64(len(pairs))     # intent is recorded
        self.finish_journal()

    def finish_journal(self) -> None:
        """Apply a recorded publish (ours, or a dead writer's) and clear it."""
        count = int(self.header[H_JOURNAL])
        for i in range(count):
            slot = int(self.header[H_JOURNAL_BASE + 2 * i])
            self.slots[slot, S_ROWS] = self.header[H_JOURNAL_BASE + 2 * i + 1]
        self.header[H_JOURNAL] = np.uint64(0)

    def apply_journal(self, live: np.ndarray, rows: np.ndarray) -> None:
        """Apply a dead writer's unfinished publish to a snapshot copy."""
        count = int(self.header[H_JOURNAL])
        for i in range(count):
            slot = int(self.header[H_JOURNAL_BASE + 2 * i])
            hit = np.flatnonzero(live == slot)
            if len(hit):
                rows[hit[0], S_ROWS] = self.header[H_JOURNAL_BASE + 2 * i + 1]

    def close(self) -> None:
        self.header = self.slots = None
        self.segment.close()


def lsn_needed(catalog: Catalog) -> int:
    """The oldest lsn still only in memory: WAL records below it may be deleted."""
    live = catalog.live()
    mins = catalog.slots[live][:, [S_LSN_MIN, S_FROZEN_LSN_MIN]].ravel()
    mins = mins[mins > 0]
    return int(mins.min()) if len(mins) else catalog.get(H_LSN) + 1


def heap_total(catalog: Catalog) -> int:
    """Bytes of events in every memtable (active and frozen)."""
    rows = catalog.slots[catalog.live()]
    return int(rows[:, S_HEAP].sum() + rows[:, S_FROZEN_HEAP].sum())
