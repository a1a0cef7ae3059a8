"""Memtable pages are backed before they are written: by the writer's own reserve,
or by a prefault ahead of it that succeeded (then the writer skips the reserve);
never by neither, so a write never lands on an unbacked page."""
from __future__ import annotations

import secrets

import numpy as np
import pytest

from monotone.format.rows import Rows
from monotone.shm.memtable import BYTE_CHUNK, M_ALLOC_VALUES, Layout, Memtable
from monotone.shm.segment import PREFIX, unlink

LAYOUT = Layout(rows=1 << 17, keys=1 << 20, values=4 * BYTE_CHUNK)
VALUE = 1000
PER_BATCH = 1000  # a MB a batch: a value chunk every four


@pytest.fixture
def memtable():
    name = f"/{PREFIX}test.{secrets.token_hex(6)}.mt"
    mt = Memtable.create(name, 1, LAYOUT)
    try:
        yield mt
    finally:
        mt.close()
        unlink(name)


def _rows(i: int) -> Rows:
    ids = np.arange(i * PER_BATCH, (i + 1) * PER_BATCH, dtype=np.uint64)
    offsets = np.arange(0, (PER_BATCH + 1) * VALUE, VALUE, dtype=np.uint64)
    return Rows(ids, np.zeros(PER_BATCH, np.uint8), np.zeros(PER_BATCH + 1, np.uint64),
                np.zeros(0, np.uint8), offsets, np.full(PER_BATCH * VALUE, i + 1, np.uint8))


def _write_all(mt: Memtable, batches: int) -> list[int]:
    """Append batches; the value-area ends the writer reserved itself."""
    reserved = []
    segment = mt.segment
    own = segment.reserve

    def reserve(offset, length):
        if offset >= LAYOUT.values:
            reserved.append(offset - LAYOUT.values + length)
        own(offset, length)

    segment.reserve = reserve
    n = 0
    for i in range(batches):
        rows = _rows(i)
        mt.reserve(n, rows)
        n = mt.append(n, rows)
    return reserved


def _check(mt: Memtable, batches: int) -> None:
    values = mt.rows(batches * PER_BATCH).value_data
    assert np.array_equal(values, np.repeat(np.arange(1, batches + 1, dtype=np.uint8),
                                            PER_BATCH * VALUE))


def test_without_prefault_the_writer_backs_every_chunk(memtable):
    reserved = _write_all(memtable, 12)
    assert reserved == [BYTE_CHUNK, 2 * BYTE_CHUNK, 3 * BYTE_CHUNK]
    _check(memtable, 12)


def test_a_prefaulted_chunk_needs_no_reserve(memtable):
    memtable.ahead = lambda job, *args: job(*args)  # the prefault, done at once
    reserved = _write_all(memtable, 12)
    assert reserved == [BYTE_CHUNK]  # the first chunk only: the others came ahead
    assert int(memtable.header[M_ALLOC_VALUES]) == 3 * BYTE_CHUNK
    _check(memtable, 12)


def test_a_failed_prefault_leaves_the_reserve_to_the_writer(memtable):
    memtable.ahead = lambda job, *args: job(*args)
    memtable.segment.prefault = lambda offset, length: False  # e.g. /dev/shm was full
    reserved = _write_all(memtable, 12)
    assert reserved == [BYTE_CHUNK, 2 * BYTE_CHUNK, 3 * BYTE_CHUNK]
    _check(memtable, 12)
