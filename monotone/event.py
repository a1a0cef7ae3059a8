"""The user-facing records: Event (one) and Batch (columns of many)."""
from __future__ import annotations

from .rows import DELETE, Rows


class Event:
    """One event: (id, key) is its primary key; delete marks a delete."""

    __slots__ = ("id", "key", "value", "flags")

    def __init__(self, id: int | None = None, key: bytes = b"", value: bytes = b"",
                 delete: bool = False, flags: int = 0) -> None:
        self.id = id
        self.key = key
        self.value = value
        self.flags = flags | (DELETE if delete else 0)

    @property
    def delete(self) -> bool:
        return bool(self.flags & DELETE)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.id, self.key, self.value, self.flags) == (other.id, other.key, other.value, other.flags)

    def __repr__(self) -> str:
        extra = ", delete=True" if self.delete else ""
        return f"Event(id={self.id}, key={self.key!r}, value={self.value!r}{extra})"


class Batch(Rows):
    """A chunk of events in (id, key) order, as numpy columns.

    ids (uint64), key_offsets / value_offsets (uint64, n+1 entries, zero-based)
    into key_data / value_data (uint8). Arrays may be read-only views of shared
    memory or of a decompressed region: copy them to keep them past the cursor.
    """

    @classmethod
    def of(cls, rows: Rows) -> "Batch":
        return cls(rows.ids, rows.flags, rows.key_offsets, rows.key_data,
                   rows.value_offsets, rows.value_data)

    def events(self) -> list[Event]:
        ids = self.ids.tolist()
        kd, vd = self.key_data.tobytes(), self.value_data.tobytes()
        ko, vo = self.key_offsets.tolist(), self.value_offsets.tolist()
        if ko[-1] == 0:
            return [Event(ids[i], b"", vd[vo[i]:vo[i + 1]]) for i in range(len(ids))]
        return [Event(ids[i], kd[ko[i]:ko[i + 1]], vd[vo[i]:vo[i + 1]]) for i in range(len(ids))]

    def __repr__(self) -> str:
        return f"Batch({len(self)} events)"
