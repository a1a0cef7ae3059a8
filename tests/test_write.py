"""Writing: Event records, write() and write_batch() forms, serial ids, replace and
delete, key order, and a bulk round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ALL, open_db
from readback import read_all, read_batches

import monotone
from monotone import Event

# bulk round trip --------------------------------------------------------------

N_BULK = 1_000_000
BATCH = 10_000
WIDTH = 100


def bulk_values(lo, hi):
    ids = np.arange(lo, hi, dtype=np.uint64)
    vals = np.empty((hi - lo, WIDTH), np.uint8)
    # every byte depends on the id and the column: a misplaced row or byte shows
    vals[:] = ((ids[:, None] * np.uint64(31) + np.arange(WIDTH, dtype=np.uint64)[None, :])
               % np.uint64(251)).astype(np.uint8)
    return ids, vals


def check_bulk_batches(db):
    seen = 0
    with db.cursor() as cur:
        for b in cur.batches():
            n = len(b)
            assert isinstance(b, monotone.Batch)
            assert len(b.key_offsets) == n + 1 and len(b.value_offsets) == n + 1
            assert int(b.key_offsets[-1]) == 0 and len(b.key_data) == 0
            ids, vals = bulk_values(seen, seen + n)
            assert np.array_equal(b.ids, ids)
            assert np.array_equal(b.value_offsets, np.arange(n + 1, dtype=np.uint64) * WIDTH)
            assert np.array_equal(np.asarray(b.value_data)[:n * WIDTH].reshape(n, WIDTH), vals)
            seen += n
    assert seen == N_BULK


def check_bulk_events(db, start, count):
    ids, vals = bulk_values(start, min(start + count, N_BULK))
    got = 0
    with db.cursor(id=start) as cur:
        for i, ev in enumerate(cur):
            if i == len(ids):
                break
            assert ev.id == int(ids[i]) and ev.key == b"" and ev.value == vals[i].tobytes()
            got += 1
        else:
            pass
    assert got == len(ids)


def test_bulk_round_trip_1m(db):
    for lo in range(0, N_BULK, BATCH):
        ids, vals = bulk_values(lo, lo + BATCH)
        out = db.write_batch(ids=ids, values=vals)
        assert np.array_equal(out, ids)
    check_bulk_batches(db)
    check_bulk_events(db, 0, 50_000)
    check_bulk_events(db, N_BULK - 50_000, 50_000)
    db.execute(ALL)
    check_bulk_batches(db)
    check_bulk_events(db, 0, 50_000)
    check_bulk_events(db, N_BULK - 50_000, 50_000)
    check_bulk_events(db, 500_000 - 7, 100)  # a position inside a region


def test_bulk_past_the_end_is_empty(db):
    ids, vals = bulk_values(0, 1000)
    db.write_batch(ids=ids, values=vals)
    with db.cursor(id=1000) as cur:
        assert cur.read() is None
        assert list(cur.batches()) == []


# write() with Event objects ---------------------------------------------------


def test_write_events_round_trip(db):
    events = [Event(id=10, value=b"ten"), Event(id=2, key=b"k", value=b""),
              Event(id=2, value=b"two"), Event(id=2**64 - 2, key=b"\xff" * 255, value=b"x" * 5000)]
    assert db.write(events) == [10, 2, 2, 2**64 - 2]
    assert read_all(db) == [(2, b"", b"two"), (2, b"k", b""), (10, b"", b"ten"),
                            (2**64 - 2, b"\xff" * 255, b"x" * 5000)]
    assert db.write([]) == []
    assert read_batches(db) == read_all(db)


def test_write_accepts_generators_and_bytearray(db):
    ids = db.write(Event(id=i, key=bytearray(b"k"), value=memoryview(b"v%d" % i)) for i in range(5))
    assert ids == list(range(5))
    assert read_all(db) == [(i, b"k", b"v%d" % i) for i in range(5)]


def test_event_flags_and_repr():
    ev = Event(id=1, value=b"v", delete=True)
    assert ev.flags == 1 and ev.delete
    assert Event(id=1).flags == 0 and not Event(id=1).delete
    assert "delete=True" in repr(ev)
    assert Event(1, b"k", b"v") == Event(id=1, key=b"k", value=b"v")


def test_event_is_an_immutable_record():
    import pickle
    ev = Event(id=7, key=b"k", value=b"v", delete=True)
    assert (ev.id, ev.key, ev.value, ev.flags, ev.delete) == (7, b"k", b"v", 1, True)
    assert pickle.loads(pickle.dumps(ev)) == ev
    assert type(pickle.loads(pickle.dumps(ev))) is Event
    with pytest.raises(AttributeError):
        ev.id = 8
    assert Event(value=b"x").id is None and not Event(value=b"x").delete
    assert repr(ev) == "Event(id=7, key=b'k', value=b'v', delete=True)"


# serial mode ------------------------------------------------------------------


def test_serial_ids(db):
    """Serial ids come from ssn, which every explicit id moves past (a generated id
    never lands on one written), in its own batch too."""
    assert db.write([Event(value=b"a"), Event(value=b"b")]) == [0, 1]
    assert db.write([Event(value=b"c"), Event(id=100, value=b"x"), Event(value=b"d")]) == \
        [101, 100, 102]
    out = db.write_batch(values=[b"e", b"f"])
    assert out.dtype == np.uint64 and out.tolist() == [103, 104]
    ids = np.array([2**64 - 1, 50, 2**64 - 1], np.uint64)  # 2**64-1 means "serial"
    assert db.write_batch(ids=ids, values=[b"g", b"h", b"i"]).tolist() == [105, 50, 106]
    assert ids.tolist() == [2**64 - 1, 50, 2**64 - 1]  # the caller's array is left alone
    assert read_all(db) == [(0, b"", b"a"), (1, b"", b"b"), (50, b"", b"h"),
                            (100, b"", b"x"), (101, b"", b"c"), (102, b"", b"d"),
                            (103, b"", b"e"), (104, b"", b"f"), (105, b"", b"g"),
                            (106, b"", b"i")]
    assert json.loads(db.execute("SHOW ssn")) == 107


def test_serial_off_rejects_none(repo):
    db = open_db(repo, serial="false")  # serial is set before open only
    try:
        assert json.loads(db.execute("SHOW serial")) is False
        with pytest.raises(monotone.ConfigError, match="cannot be changed online"):
            db.execute("SET serial TO true")
        with pytest.raises(monotone.MonotoneError):
            db.write([Event(id=1, value=b"ok"), Event(value=b"no id")])
        with pytest.raises(monotone.MonotoneError):
            db.write_batch(values=[b"no id"])
        assert read_all(db) == []
        assert db.write([Event(id=1, value=b"ok")]) == [1]
    finally:
        db.close()
    db = open_db(repo, serial="true")
    try:
        assert json.loads(db.execute("SHOW serial")) is True
        # id 1 was written while serial was off: the counter moved past it then
        assert db.write([Event(value=b"serial again")]) == [2]
        assert read_all(db) == [(1, b"", b"ok"), (2, b"", b"serial again")]
    finally:
        db.close()


def test_set_ssn(db):
    db.execute("SET ssn TO 1000")
    assert db.write([Event(value=b"x")]) == [1000]
    assert json.loads(db.execute("SHOW ssn")) == 1001


# write_batch forms -----------------------------------------------------------


def test_write_batch_offsets_data_values_and_keys(db):
    values = [b"", b"one", b"", b"three33", b"4"]
    keys = [b"a", b"", b"ccc", b"d", b""]
    vo = np.array([0, 0, 3, 3, 10, 11], np.uint64)
    vd = np.frombuffer(b"".join(values), np.uint8)
    ko = np.array([0, 1, 1, 4, 5, 5], np.int64)
    kd = np.frombuffer(b"".join(keys), np.uint8)
    out = db.write_batch(ids=np.arange(5, dtype=np.uint64), values=(vo, vd), keys=(ko, kd))
    assert out.tolist() == [0, 1, 2, 3, 4]
    assert read_all(db) == [(i, keys[i], values[i]) for i in range(5)]


def test_write_batch_offsets_not_starting_at_zero(db):
    data = np.frombuffer(b"XXXabcdefYY", np.uint8)
    db.write_batch(ids=np.array([1, 2], np.uint64), values=(np.array([3, 6, 9]), data))
    assert read_all(db) == [(1, b"", b"abc"), (2, b"", b"def")]


def test_write_batch_lists_and_2d_keys(db):
    keys = np.frombuffer(b"ab" * 3, np.uint8).reshape(3, 2).copy()
    keys[1] = [ord("a"), ord("a")]
    db.write_batch(ids=[7, 7, 7], values=[b"x", b"y", b"z"], keys=keys)
    assert read_all(db) == [(7, b"aa", b"y"), (7, b"ab", b"z")]  # (7, ab) written twice: last wins
    db.write_batch(ids=np.array([8], np.int32), values=np.zeros((1, 0), np.uint8))
    assert read_all(db)[-1] == (8, b"", b"")


def test_write_batch_deletes(db):
    db.write_batch(ids=np.arange(10, dtype=np.uint64), values=[b"v%d" % i for i in range(10)])
    deletes = np.zeros(10, bool)
    deletes[::3] = True
    db.write_batch(ids=np.arange(10, dtype=np.uint64), values=[b"w%d" % i for i in range(10)],
                   deletes=deletes)
    assert read_all(db) == [(i, b"", b"w%d" % i) for i in range(10) if i % 3]


# replace and delete: memtable, file, both ------------------------------------


@pytest.mark.parametrize("where", ["memtable", "file", "both"])
def test_replace_and_delete(db, where):
    keys = [b"", b"k1", b"k2"]
    expect = {}
    for i in range(20):
        for k in keys:
            expect[(i, k)] = b"orig-%d-%s" % (i, k)
    db.write([Event(id=i, key=k, value=v) for (i, k), v in expect.items()])
    if where in ("file", "both"):
        db.execute(ALL)
    if where == "both":
        # half of the changes go into the file too, the rest stay in memory
        db.write([Event(id=i, key=b"k1", value=b"mid-%d" % i) for i in range(0, 20, 2)])
        for i in range(0, 20, 2):
            expect[(i, b"k1")] = b"mid-%d" % i
        db.write([Event(id=3, key=b"k2", delete=True)])
        del expect[(3, b"k2")]
        db.execute(ALL)
    db.write([Event(id=i, key=b"k1", value=b"new-%d" % i) for i in range(0, 20, 4)])
    for i in range(0, 20, 4):
        expect[(i, b"k1")] = b"new-%d" % i
    db.write([Event(id=i, key=b"", delete=True) for i in range(1, 20, 5)])
    for i in range(1, 20, 5):
        del expect[(i, b"")]
    db.write([Event(id=5, key=b"k2", value=b"gone"), Event(id=5, key=b"k2", delete=True)])
    del expect[(5, b"k2")]
    db.write([Event(id=999, key=b"never", delete=True)])  # delete of a missing event
    want = [(i, k, v) for (i, k), v in sorted(expect.items())]
    assert read_all(db) == want
    assert read_batches(db) == want
    db.execute(ALL)
    assert read_all(db) == want
    assert read_batches(db) == want
    # a delete of something only in the file, then re-insert in memory
    db.write([Event(id=0, key=b"k2", delete=True)])
    assert (0, b"k2", expect[(0, b"k2")]) not in read_all(db)
    db.write([Event(id=0, key=b"k2", value=b"back")])
    assert (0, b"k2", b"back") in read_all(db)
    db.execute(ALL)
    assert (0, b"k2", b"back") in read_all(db)


def test_delete_everything(db):
    db.write_batch(ids=np.arange(100, dtype=np.uint64), values=[b"x"] * 100)
    db.execute(ALL)
    db.write_batch(ids=np.arange(100, dtype=np.uint64), deletes=np.ones(100, bool))
    assert read_all(db) == []
    db.execute(ALL)
    assert read_all(db) == []
    assert db.cursor().read() is None


# keys ordering -----------------------------------------------------------------


def test_key_order_memcmp_shorter_first(db):
    keys = [b"b", b"a", b"ab", b"", b"a\x00", b"\x00", b"\xff", b"\xff\x00", b"aa", b"A"]
    db.write([Event(id=5, key=k, value=k) for k in keys])
    db.write([Event(id=4, key=b"zzz"), Event(id=6, key=b"")])
    want_keys = sorted(keys)  # Python bytes order is memcmp, shorter first on a tie
    assert want_keys[:3] == [b"", b"\x00", b"A"]
    want = [(4, b"zzz", b"")] + [(5, k, k) for k in want_keys] + [(6, b"", b"")]
    assert read_all(db) == want
    db.execute(ALL)
    assert read_all(db) == want
    # memtable keys interleaved with file keys
    db.write([Event(id=5, key=b"a\x00\x00", value=b"m"), Event(id=5, key=b"\x00\x00", value=b"m")])
    want_keys = sorted(want_keys + [b"a\x00\x00", b"\x00\x00"])
    assert [e[1] for e in read_all(db) if e[0] == 5] == want_keys
