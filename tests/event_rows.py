"""Rows built from lists of (id, key, value, flags) events, and back."""
from __future__ import annotations

import numpy as np

from monotone.format.rows import Rows, pack_bytes


def make_rows(events) -> Rows:
    """[(id, key, value, flags)] -> Rows, in the given order."""
    ids = np.array([e[0] for e in events], np.uint64)
    ko, kd = pack_bytes([e[1] for e in events])
    vo, vd = pack_bytes([e[2] for e in events])
    flags = np.array([e[3] for e in events], np.uint8)
    return Rows(ids, flags, ko, kd.copy(), vo, vd.copy())


def as_list(rows: Rows) -> list[tuple[int, bytes, bytes, int]]:
    return [(int(rows.ids[i]), rows.key(i), rows.value(i), int(rows.flags[i]))
            for i in range(len(rows))]


def check_offsets(rows: Rows) -> None:
    """Offsets are zero-based, n+1 long, and end at the data length."""
    n = len(rows)
    assert len(rows.key_offsets) == n + 1 and len(rows.value_offsets) == n + 1
    assert int(rows.key_offsets[0]) == 0 and int(rows.value_offsets[0]) == 0
    assert int(rows.key_offsets[-1]) == len(rows.key_data)
    assert int(rows.value_offsets[-1]) == len(rows.value_data)
