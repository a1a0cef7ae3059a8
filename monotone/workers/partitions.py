"""The partitions as the coordinator's tasks use them: found, read, made and
forgotten, over the partition map (shm/partition_map.py) and its memtables.

One method per question a task asks of a partition. The map's counters, the
batches writers publish and a refresh's own steps (freeze, switch) stay the
map's: the protocols that own them (append, refresh, recovery) say when.
"""
from __future__ import annotations

import logging
import time

from monotone.append import Shared
from monotone.ddl import commands as cmd
from monotone.errors import MonotoneError
from monotone.repository import Layout
from monotone.settings import Storage
from monotone.shm import segment
from monotone.shm.memtable import Memtable, MemtableCache
from monotone.shm.partition_map import PartitionMap, Slot
from monotone.shm.segment import NameTaken

log = logging.getLogger("monotone")


def untaken(make, what: str):
    """make() again, under its next name, while someone else took the name first (a
    few times: names nobody can guess are not taken by chance)."""
    for _ in range(16):
        try:
            return make()
        except NameTaken as e:
            log.warning("%s: skipped", e)
    raise MonotoneError(f"no free shared memory name for {what} in {segment.SHM_DIR}")


class Partitions:
    def __init__(self, shared: Shared, layout: Layout) -> None:
        self.shared = shared
        self.pmap: PartitionMap = shared.pmap
        self.memtables: MemtableCache = shared.memtables
        self.layout = layout

    # finding
    def live(self) -> list[int]:
        """The live partitions' slots, by min."""
        return self.pmap.live().tolist()

    def slot(self, i: int) -> Slot:
        """A partition's row (a view of the map: each field read when asked)."""
        return self.pmap.slot(i)

    def current(self, i: int, min_: int) -> bool:
        """Whether slot i still holds the partition starting at min_ (it may have been
        dropped, and the slot reused, while a task waited)."""
        s = self.pmap.slot(i)
        return s.live and s.min == min_

    def find(self, min_: int) -> int | None:
        """The slot of the partition starting at min_."""
        return self.pmap.find(min_)

    def containing(self, id_: int) -> int | None:
        """The slot of the partition holding id_."""
        return self.pmap.partition_of(id_)

    def in_range(self, lo: int, hi: int) -> list[int]:
        """The partitions a range command acts on (cmd.range_members), by slot."""
        live, mins, maxs = self.pmap.bounds()
        slots = live.tolist()
        return [slots[i] for i in cmd.range_members(zip(mins.tolist(), maxs.tolist()), lo, hi)]

    def in_storage(self, storage: Storage) -> list[int]:
        """The live partitions whose files are in a storage, by min."""
        return [i for i in self.live() if self.pmap.slot(i).storage == storage.id]

    def in_memory(self) -> list[int]:
        """The partitions with events in memtables."""
        return [i for i in self.live()
                if (s := self.pmap.slot(i)).rows or s.frozen or s.lsn_min]

    def heap(self) -> int:
        """Bytes of events in every memtable (active and frozen)."""
        return self.pmap.heap_total()

    # making and forgetting
    def new_memtable(self) -> int:
        """A new memtable segment, its segno."""
        def memtable():
            segno = self.pmap.bump("segno")
            self.memtables.add(Memtable.create(self.layout.memtable(segno), segno))
            return segno
        return untaken(memtable, "a memtable")

    def drop_memtable(self, segno: int) -> None:
        self.memtables.forget(segno)
        segment.unlink(self.layout.memtable(segno))

    def add(self, lo: int, hi: int, storage: Storage, created: int | None = None) -> int:
        """A new partition [lo, hi] with an empty memtable, its file to be in storage."""
        segno = self.new_memtable()
        try:
            return self.pmap.add(lo, hi, segno, storage.id,
                                 created if created is not None else int(time.time() * 1e6))
        except ValueError as e:
            self.drop_memtable(segno)
            raise MonotoneError(f"too many partitions: {e}") from None

    def forget(self, i: int) -> None:
        """Forget a partition: its slot and memtables (files are the caller's)."""
        for segno in self.pmap.remove(i):
            self.drop_memtable(segno)

    def set_places(self, i: int, add: int = 0, remove: int = 0) -> None:
        """The file got or lost a copy (ON_STORAGE, ON_CLOUD), under PUBLISH: no
        reader chooses a copy halfway through the change."""
        with self.shared.publishing():
            places = self.pmap.slot(i).places
            self.pmap.set_places(i, (places | add) & ~remove)
