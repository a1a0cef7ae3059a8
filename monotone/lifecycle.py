"""Partition files through their states: the only place that knows their names.

In a storage, partition <min> has at most one file in each state:
  <min>.incomplete   being written (refresh and move, step 2): recovery removes it
  <min>.complete     written and synced, not yet switched in: recovery puts it in
                     place of <min>
  <min>              the partition file
Every change of state is one rename (atomic), followed by a sync of the
directory when the storage syncs; removal likewise. Refresh, move, drop and
recovery go through PartitionFiles; readers open <min> through it.
"""
from __future__ import annotations

import re

from .store import ReadHandle, Store, WriteHandle

INCOMPLETE = ".incomplete"
COMPLETE = ".complete"
STATES = (INCOMPLETE, COMPLETE)
_NAME = re.compile(r"^(\d{1,20})(\.incomplete|\.complete)?$")


def file_name(min_: int, state: str = "") -> str:
    return f"{min_:020d}{state}"


def parse(name: str) -> tuple[int, str] | None:
    """(min, state) of a partition file's name, or None for other files."""
    m = _NAME.match(name)
    return (int(m.group(1)), m.group(2) or "") if m else None


class PartitionFiles:
    """The partition files of one storage (sync: its `sync` option)."""

    def __init__(self, store: Store, sync: bool = True) -> None:
        self.store = store
        self.sync = sync

    def where(self, min_: int, state: str = "") -> str:
        """The file's place, for messages."""
        return f"{self.store.location}/{file_name(min_, state)}"

    def open(self, min_: int) -> ReadHandle:
        return self.store.open(file_name(min_))

    def create(self, min_: int) -> WriteHandle:
        """A new <min>.incomplete to write a partition file into."""
        return self.store.create(file_name(min_, INCOMPLETE), self.sync)

    def size(self, min_: int, state: str = "") -> int:
        return self.store.size(file_name(min_, state))

    def complete(self, min_: int) -> None:
        """<min>.incomplete -> <min>.complete: written whole (and synced)."""
        self.store.rename(file_name(min_, INCOMPLETE), file_name(min_, COMPLETE), self.sync)

    def install(self, min_: int) -> None:
        """<min>.complete -> <min>, in place of the old file in one step."""
        self.store.rename(file_name(min_, COMPLETE), file_name(min_), self.sync)

    def remove(self, min_: int) -> bool:
        """The partition file goes (a drop, or the source of a move)."""
        return self.store.remove(file_name(min_), self.sync)

    def same(self, other: "PartitionFiles", min_: int) -> bool:
        """Whether <min> here and in other is one file (storages sharing a place)."""
        return self.store.same(other.store, file_name(min_))

    def discard(self, min_: int) -> None:
        """Whatever a refresh of the partition left half done goes too."""
        for state in STATES:
            self.store.remove(file_name(min_, state), False)

    def settle(self) -> list[int]:
        """After a crash: finish or undo each half-done state; the partitions with a
        file (recovery, before anyone reads)."""
        found: dict[int, set[str]] = {}
        for name in self.store.list():
            parsed = parse(name)
            if parsed:
                found.setdefault(parsed[0], set()).add(parsed[1])
        for min_, states in found.items():
            if INCOMPLETE in states:  # the old file and the WAL are intact
                self.store.remove(file_name(min_, INCOMPLETE), self.sync)
            if COMPLETE in states:    # written whole: it replaces the old one
                self.install(min_)
                states.add("")
        return sorted(m for m, states in found.items() if "" in states)
