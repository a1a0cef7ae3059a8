"""Event records built in C (monotone._events) against the Python construction.

Both must give the same records for every shape of column a cursor meets:
keys or none, flags or none, empty and uneven values, views at any offset.
The compiled module is part of an install with a C compiler (pip install -e .
builds it in place); without one only the Python half runs here, and says so.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest

from monotone.event import Batch, Event

try:
    from monotone._events import build
except ImportError:
    build = None

needs_c = pytest.mark.skipif(build is None, reason="monotone._events was not compiled "
                                                   "(installed without a C compiler)")


def _column(rng, n: int, widths) -> tuple[np.ndarray, np.ndarray]:
    sizes = rng.choice(widths, n)
    offsets = np.zeros(n + 1, np.uint64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets, rng.integers(0, 256, int(offsets[-1]), dtype=np.uint8)


def _batch(seed: int, n: int, key_widths, value_widths, deletes: bool) -> Batch:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.integers(0, 2**64 - 1, n, dtype=np.uint64))
    flags = (rng.random(n) < 0.3).astype(np.uint8) if deletes else np.zeros(n, np.uint8)
    ko, kd = _column(rng, n, key_widths)
    vo, vd = _column(rng, n, value_widths)
    return Batch(ids, flags, ko, kd, vo, vd)


SHAPES = {
    "fixed values, no keys": ([0], [100], False),
    "uneven values and keys": ([0, 1, 8, 255], [0, 1, 7, 300], False),
    "deletes": ([3], [0, 16], True),
    "empty values": ([0], [0], False),
}


@needs_c
@pytest.mark.parametrize("shape", SHAPES)
def test_same_records_as_python(shape):
    batch = _batch(len(shape), 3000, *SHAPES[shape])
    for a, b in [(0, 3000), (17, 2100), (2999, 3000), (5, 5)]:
        got = batch.events(a, b)
        assert got == batch._events(a, b)
        assert all(type(e) is Event for e in got)
        if got:
            i, e = b - 1, got[-1]
            ko, vo = batch.key_offsets, batch.value_offsets
            assert (e.id, e.key, e.value, e.delete) == (
                int(batch.ids[i]), batch.key_data[ko[i]:ko[i + 1]].tobytes(),
                batch.value_data[vo[i]:vo[i + 1]].tobytes(), bool(batch.flags[i]))


@needs_c
def test_records_are_untracked_and_freed():
    batch = _batch(1, 500, [0], [100], False)
    events = batch.events()
    assert not any(gc.is_tracked(e) for e in events)
    value = events[7].value
    del events, batch
    gc.collect()
    assert len(value) == 100  # a record's bytes outlive the batch they came from


@needs_c
def test_views_at_odd_addresses():
    n = 64
    raw = np.zeros(8 * (n + 1) + 1, np.uint8)
    offsets = raw[1:].view(np.uint64)  # one byte past an 8-byte boundary
    offsets[:] = np.arange(0, 4 * (n + 1), 4, dtype=np.uint64)
    ids_raw = np.zeros(8 * n + 3, np.uint8)
    ids = ids_raw[3:].view(np.uint64)
    ids[:] = np.arange(n, dtype=np.uint64) * 3
    values = np.arange(4 * n, dtype=np.uint8)
    keys = np.zeros(n + 1, np.uint64)
    batch = Batch(ids, np.zeros(n, np.uint8), keys, np.zeros(0, np.uint8), offsets, values)
    assert batch.events() == batch._events(0, n)
    assert batch.events()[2] == Event(6, b"", bytes([8, 9, 10, 11]))


@needs_c
@pytest.mark.parametrize("damage", ["descending", "past the data", "short offsets"])
def test_bad_offsets_raise(damage):
    n = 10
    ids, flags = np.arange(n, dtype=np.uint64), np.zeros(n, np.uint8)
    values = np.zeros(40, np.uint8)
    offsets = np.arange(0, 4 * (n + 1), 4, dtype=np.uint64)
    if damage == "descending":
        offsets[5] = 30
    elif damage == "past the data":
        offsets[-1] = 41
    else:
        offsets = offsets[:-1]
    with pytest.raises(ValueError):
        build(Event, ids, flags, np.zeros(n + 1, np.uint64), np.zeros(0, np.uint8), offsets,
              values)


@needs_c
def test_refuses_a_type_that_is_not_a_tuple():
    n = 2
    with pytest.raises(TypeError):
        build(dict, np.zeros(n, np.uint64), np.zeros(n, np.uint8), np.zeros(n + 1, np.uint64),
              np.zeros(0, np.uint8), np.zeros(n + 1, np.uint64), np.zeros(0, np.uint8))


def test_python_records():
    """The construction used without the compiled module (always run)."""
    batch = _batch(3, 200, [0, 2], [0, 5], True)
    events = batch._events(10, 20)
    assert len(events) == 10
    for i, e in enumerate(events, 10):
        ko, vo = batch.key_offsets, batch.value_offsets
        assert e == Event(int(batch.ids[i]), batch.key_data[ko[i]:ko[i + 1]].tobytes(),
                          batch.value_data[vo[i]:vo[i + 1]].tobytes(), bool(batch.flags[i]))


@needs_c
def test_refuses_a_record_type_with_a_dict():
    class Loose(tuple):
        pass
    n = 1
    with pytest.raises(TypeError, match="__dict__"):
        build(Loose, np.zeros(n, np.uint64), np.zeros(n, np.uint8), np.zeros(n + 1, np.uint64),
              np.zeros(0, np.uint8), np.zeros(n + 1, np.uint64), np.zeros(0, np.uint8))


def test_strided_columns_fall_back_to_python():
    n = 8
    ids = np.arange(2 * n, dtype=np.uint64)[::2]  # every other: not contiguous
    batch = Batch(ids, np.zeros(n, np.uint8), np.zeros(n + 1, np.uint64), np.zeros(0, np.uint8),
                  np.arange(n + 1, dtype=np.uint64), np.arange(n, dtype=np.uint8))
    assert [e.id for e in batch.events()] == list(range(0, 2 * n, 2))
    assert {e: 1 for e in batch.events()}[Event(4, b"", bytes([2]))] == 1  # hashes as built
