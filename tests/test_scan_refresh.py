"""Scans while refreshes run: every event once, and memtables merged a window at a time."""
from __future__ import annotations

import numpy as np
import pytest
from event_rows import make_rows

import monotone
from monotone.format.rows import DELETE
from monotone.partition import merge as merge_module
from monotone.partition.merge import MergeIterator


def _merged(mems, *bounds, descending=False):
    return [(int(b.ids[i]), b.key(i), b.value(i))
            for b in MergeIterator(None, mems, *bounds, descending=descending)
            for i in range(len(b))]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_memtables_merge_forward_in_windows(monkeypatch, chunk):
    """Frozen and active memtables that overlap: an (id, key) in both is one event,
    the active one's; its deletes hide the frozen one; windows never split them."""
    monkeypatch.setattr(merge_module, "CHUNK", chunk)
    monkeypatch.setattr(merge_module, "FIRST_CHUNK", 1)
    frozen = [(i, k, b"old", 0) for i in range(10) for k in (b"", b"k", b"kk")]
    active = [(i, b"k", b"new", DELETE if i % 3 == 0 else 0) for i in range(2, 14)]
    model = {(i, k): v for i, k, v, _ in frozen}
    for i, k, v, f in active:
        if f:
            model.pop((i, k), None)
        else:
            model[(i, k)] = v
    mems = [make_rows(frozen), make_rows(active)]
    assert _merged(mems) == [(i, k, v) for (i, k), v in sorted(model.items())]
    # from inside both, up to a bound inside both
    start, end = (3, b"k"), (11, b"")
    assert _merged(mems, start, end) == \
        [(i, k, v) for (i, k), v in sorted(model.items()) if start <= (i, k) <= end]
    # the same walked downwards, from a window of one row, doubling
    assert _merged(mems, descending=True) == \
        [(i, k, v) for (i, k), v in sorted(model.items(), reverse=True)]


def test_memtables_apart_are_read_as_views(monkeypatch):
    """A frozen memtable and the active one after it (a refresh running while events
    are appended) are handed out as they are: no copy of either."""
    monkeypatch.setattr(merge_module, "CHUNK", 4)
    frozen = make_rows([(i, b"", b"f", 0) for i in range(10)])
    active = make_rows([(i, b"", b"a", 0) for i in range(10, 19)])
    batches = list(MergeIterator(None, [frozen, active]))
    assert [int(i) for b in batches for i in b.ids] == list(range(19))
    sources = [frozen.ids, active.ids]
    assert all(any(np.shares_memory(b.ids, s) for s in sources) for b in batches)


def test_scans_during_background_refreshes_see_every_event_once(repo):
    """Writes, a CHECKPOINT that refreshes in the workers, and a scan at once, over
    and over: each scan sees exactly the events written before it, once each, in
    order, whatever the refreshes are doing."""
    db = monotone.Monotone()
    db.execute("SET workers TO 2")
    db.execute("SET interval TO 20000")
    db.open(repo)
    try:
        rng = np.random.default_rng(5)
        written = 0
        for round_ in range(12):
            for _ in range(20):
                ids = np.arange(written, written + 500, dtype=np.uint64)
                db.write_batch(ids, rng.integers(0, 256, (500, 16), np.uint8))
                written += 500
            if round_ % 3 == 2:  # replace some older events too: memtables overlap files
                db.write_batch(np.arange(0, written, 7, dtype=np.uint64),
                               np.zeros((len(range(0, written, 7)), 16), np.uint8))
            db.execute("CHECKPOINT")
            with db.cursor() as cur:
                ids = np.concatenate([b.ids for b in cur.batches()])
            assert len(ids) == written
            assert (ids == np.arange(written, dtype=np.uint64)).all()
    finally:
        db.close()
