"""Counts of what cold reads cost: GETs and their bytes, and regions read from the
region cache instead (hits) and their bytes."""
from __future__ import annotations

import threading


class ReadStats:
    """Counts since last taken, added to from read-ahead threads."""
    FIELDS = ("requests", "bytes", "hits", "hit_bytes")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                self.counts[name] += n

    def take(self) -> dict[str, int]:
        with self.lock:
            counts, self.counts = self.counts, dict.fromkeys(self.FIELDS, 0)
        return counts
