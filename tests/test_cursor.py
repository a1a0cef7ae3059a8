"""Cursors: positioning, read()/next(), iteration and batches(), partition exclusion,
snapshots across refreshes, and the Batch records they yield."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ALL, open_db
from readback import read_all, read_batches

from monotone import Event

# cursor positioning -----------------------------------------------------------


POSITIONED = [(10, b""), (10, b"b"), (10, b"bb"), (20, b"a"), (30, b"")]
POSITIONS = [  # (id, key) -> index in POSITIONED of the first event the cursor stands on
    (None, None, 0), (0, None, 0), (10, None, 0), (10, b"", 0), (10, b"a", 1), (10, b"b", 1),
    (10, b"b\x00", 2), (10, b"bb", 2), (10, b"c", 3), (11, None, 3), (20, b"", 3), (20, b"a", 3),
    (20, b"a\x00", 4), (25, b"zz", 4), (30, None, 4), (30, b"\x00", 5), (31, None, 5),
    (2**64 - 1, b"\xff" * 255, 5), (None, b"a", 0), (0, b"a", 0),
]


@pytest.mark.parametrize("refreshed", [False, True])
def test_cursor_position(db, refreshed):
    evs = POSITIONED
    db.write([Event(id=i, key=k, value=b"%d%s" % (i, k)) for i, k in evs])
    if refreshed:
        db.execute(ALL)
    for id_, key, first in POSITIONS:
        want = [(i, k, b"%d%s" % (i, k)) for i, k in evs[first:]]
        assert read_all(db, id_, key) == want, (id_, key)
        assert read_batches(db, id_, key) == want, (id_, key)
        with db.cursor(id=id_, key=key) as cur:
            ev = cur.read()
            assert (ev is None) == (first == len(evs)), (id_, key)
            if ev is not None:
                assert (ev.id, ev.key) == evs[first], (id_, key)


def test_cursor_position_across_file_and_memtable(db):
    db.write_batch(ids=np.arange(0, 100, 2, dtype=np.uint64), values=[b"f"] * 50)
    db.execute(ALL)
    db.write_batch(ids=np.arange(1, 100, 2, dtype=np.uint64), values=[b"m"] * 50)
    for start in (0, 1, 2, 49, 50, 98, 99, 100):
        got = read_all(db, start)
        assert [e[0] for e in got] == list(range(start, 100))
        assert all(e[2] == (b"f" if e[0] % 2 == 0 else b"m") for e in got)


# read()/next() and batches() ---------------------------------------------------


def test_read_next_c_style(db):
    db.write([Event(id=i, value=b"v%d" % i) for i in range(5)])
    cur = db.cursor()
    seen = []
    while True:
        ev = cur.read()
        if ev is None:
            break
        assert cur.read() == ev  # read() does not advance
        seen.append(ev.id)
        if not cur.next():
            break
    assert seen == [0, 1, 2, 3, 4]
    assert cur.read() is None
    assert cur.next() is False
    assert cur.read() is None
    cur.close()


def test_batches_continue_after_next(db):
    ids = np.arange(200_000, dtype=np.uint64)  # more than one memtable chunk
    db.write_batch(ids=ids, values=(ids % np.uint64(256)).astype(np.uint8).reshape(-1, 1))
    for refreshed in (False, True):
        if refreshed:
            db.execute(ALL)
        with db.cursor(id=10) as cur:
            for _ in range(5):
                assert cur.next()
            assert cur.read().id == 15
            got = np.concatenate([np.asarray(b.ids) for b in cur.batches()])
            assert np.array_equal(got, np.arange(15, 200_000, dtype=np.uint64))
            assert cur.read() is None
        with db.cursor() as cur:
            it = iter(cur)
            assert [next(it).id for _ in range(3)] == [0, 1, 2]
            assert cur.read().id == 3
            first = next(cur.batches())
            assert int(first.ids[0]) == 3
            assert first.value(0) == bytes([3])


def test_iteration_after_next(db):
    db.write([Event(id=i) for i in range(10)])
    with db.cursor(id=3) as cur:
        cur.next()
        assert [e.id for e in cur] == list(range(4, 10))


def test_cursor_is_a_snapshot_of_partitions(db):
    db.write([Event(id=i, value=b"a") for i in range(3)])
    with db.cursor() as cur:
        db.write([Event(id=2_999_999 + 10, value=b"later")])  # a new partition
        assert [e.id for e in cur] == [0, 1, 2]


# partition exclusion -------------------------------------------------------------


def test_partition_exclusion(repo):
    db = open_db(repo, interval=10)
    try:
        db.write_batch(ids=np.arange(100, dtype=np.uint64), values=[b"%d" % i for i in range(100)])
        parts = json.loads(db.execute("SHOW PARTITIONS"))
        assert [(p["min"], p["max"]) for p in parts] == [(i, i + 9) for i in range(0, 100, 10)]
        with db.cursor(id=55) as cur:
            assert cur.read().id == 55
            assert [e.id for e in cur] == list(range(55, 100))
        db.execute("REFRESH PARTITIONS BETWEEN 20 AND 59")
        parts = json.loads(db.execute("SHOW PARTITIONS"))
        assert [p["on_storage"] for p in parts] == [p["min"] in (20, 30, 40, 50) for p in parts]
        assert [e.id for e in db.cursor(id=55)] == list(range(55, 100))
        assert [e.value for e in db.cursor(id=38)][:3] == [b"38", b"39", b"40"]
    finally:
        db.close()


def test_read_after_iteration_stops_at_partition_end(db):
    db.write([Event(id=i) for i in range(3)] + [Event(id=3_000_000 + i) for i in range(3)])
    with db.cursor() as cur:
        for ev in cur:
            if ev.id == 2:
                break
        assert cur.read() == Event(id=3_000_000)
        assert cur.next()
        assert cur.read() == Event(id=3_000_001)


def test_read_after_iteration_stops_mid_batch(db):
    db.write([Event(id=i) for i in range(3)] + [Event(id=3_000_000 + i) for i in range(3)])
    with db.cursor() as cur:
        for ev in cur:
            if ev.id == 1:
                break
        assert cur.read() == Event(id=2)
        assert cur.next()
        assert cur.read() == Event(id=3_000_000)


def test_batches_after_iteration_stops_at_partition_end(db):
    db.write([Event(id=i) for i in range(3)] + [Event(id=3_000_000 + i) for i in range(3)])
    with db.cursor() as cur:
        for ev in cur:
            if ev.id == 2:
                break
        batches = list(cur.batches())
    assert np.concatenate([b.ids for b in batches]).tolist() == [3_000_000 + i for i in range(3)]
    assert all(len(b) for b in batches), "an empty batch was yielded"


def test_batches_cannot_change_the_database(db):
    db.write([Event(id=i, value=b"abc") for i in range(3)])
    for refreshed in (False, True):
        if refreshed:
            db.execute(ALL)
        with db.cursor() as cur:
            b = next(cur.batches())
            for arr in (b.ids, b.flags, b.value_data, b.value_offsets, b.key_offsets):
                try:
                    arr[:] = 1
                except ValueError:
                    pass  # read-only: fine
        # scribbling on a batch never changes the database
        assert read_all(db) == [(i, b"", b"abc") for i in range(3)]


def test_cursor_keeps_going_across_a_refresh(db):
    db.write([Event(id=3_000_000 * k + i, value=b"v%d" % k) for k in range(3) for i in range(3)])
    with db.cursor() as cur:
        assert cur.read().id == 0
        assert cur.next()
        db.execute(ALL)
        db.write([Event(id=3_000_000 + 1, value=b"new")])
        rest = [(e.id, e.value) for e in cur]
    assert [i for i, _ in rest] == [1, 2] + [3_000_000 * k + i for k in (1, 2) for i in range(3)]
    assert dict(rest)[3_000_001] in (b"v1", b"new")  # either is a consistent answer


def test_iteration_resumes_where_a_loop_stopped(db):
    db.write([Event(id=i) for i in range(5)] + [Event(id=3_000_000 + i) for i in range(5)])
    with db.cursor() as cur:
        for ev in cur:
            if ev.id == 3:
                break
        assert [ev.id for ev in cur] == [4] + [3_000_000 + i for i in range(5)]
        assert cur.read() is None


@pytest.mark.parametrize("refreshed", [False, True])
def test_loops_next_and_read_mixed_across_event_windows(db, refreshed):
    """Events are made a window at a time: loops that stop anywhere, next() and read()
    in any order still step through every event once, across windows and batches."""
    from monotone import cursor as cursor_module
    n = 3 * cursor_module.EVENTS + 7
    ids = np.arange(n, dtype=np.uint64) * 3
    db.write_batch(ids, [b"v%d" % i for i in range(n)])
    if refreshed:
        db.execute(ALL)
    rng = np.random.default_rng(5)
    for _ in range(20):
        got = []
        with db.cursor() as cur:
            while len(got) < n:
                step = int(rng.integers(0, 3))
                if step == 0:  # a loop that breaks after some events
                    stop = int(rng.integers(1, cursor_module.EVENTS + 2))
                    for i, ev in enumerate(cur, 1):
                        got.append(ev.id)
                        if i == stop:
                            break
                elif step == 1:
                    ev = cur.read()
                    got.append(ev.id)
                    assert cur.read() == ev  # read() does not move
                    cur.next()
                else:  # a loop of a few events, then next() past one unread
                    for ev in cur:
                        got.append(ev.id)
                        break
                    if cur.read() is not None:
                        got.append(cur.read().id)
                        cur.next()
            assert cur.read() is None and list(cur) == []
        assert got == ids.tolist()


@pytest.mark.parametrize("values", [
    [b"ab\x00\x00", b"\x00\x00\x00\x00", b"cdef"],        # one width, NUL bytes kept
    [b"a", b"", b"abc\x00"],                              # widths differ
    [b"", b"", b""],
])
def test_batch_events_keep_every_byte(values):
    from monotone.event import Batch
    from monotone.format.rows import pack_bytes
    keys = [b"k\x00", b"", b"\x00"]
    ko, kd = pack_bytes(keys)
    vo, vd = pack_bytes(values)
    batch = Batch(np.arange(3, dtype=np.uint64), np.array([0, 1, 0], np.uint8), ko, kd, vo, vd)
    assert batch.events() == [Event(id=i, key=keys[i], value=values[i], delete=i == 1)
                              for i in range(3)]
    assert batch.events(1, 3) == batch.events()[1:]
