"""What a reader sees of a partition: its file and its memtables' rows, in order."""
from __future__ import annotations

from weakref import WeakKeyDictionary

from .format.rows import Rows, sort_dedup

# memtable -> (row count, its first rows sorted): sorted once per count and process
_sorted: WeakKeyDictionary = WeakKeyDictionary()


def sorted_rows(mt, n: int) -> Rows:
    """The first n rows of a memtable in (id, key) order, newest of equal keys only.

    Appends of ascending ids keep a memtable sorted (the common case), and then
    these are views of shared memory; otherwise the sort is kept per row count."""
    rows = Rows(*mt.rows(n))
    if mt.sorted_upto() >= n:
        return rows
    cached = _sorted.get(mt)
    if cached is not None and cached[0] == n:
        return cached[1]
    result = sort_dedup(rows)
    _sorted[mt] = (n, result)
    return result
