"""The public API: writing, reading, replace/delete, cursors, commands."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import ALL, open_db

import monotone
from monotone import Event


def read_all(db, id=None, key=None):
    with db.cursor(id=id, key=key) as cur:
        return [(e.id, e.key, e.value) for e in cur]


def read_batches(db, id=None, key=None):
    """(ids, keys, values) of everything via Cursor.batches()."""
    out = []
    with db.cursor(id=id, key=key) as cur:
        for b in cur.batches():
            for i in range(len(b)):
                out.append((int(b.ids[i]), b.key(i), b.value(i)))
    return out


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

# serial mode ------------------------------------------------------------------


def test_serial_ids(db):
    assert db.write([Event(value=b"a"), Event(value=b"b")]) == [0, 1]
    assert db.write([Event(value=b"c"), Event(id=100, value=b"x"), Event(value=b"d")]) == [2, 100, 3]
    out = db.write_batch(values=[b"e", b"f"])
    assert out.dtype == np.uint64 and out.tolist() == [4, 5]
    ids = np.array([2**64 - 1, 50, 2**64 - 1], np.uint64)  # 2**64-1 means "serial"
    assert db.write_batch(ids=ids, values=[b"g", b"h", b"i"]).tolist() == [6, 50, 7]
    assert ids.tolist() == [2**64 - 1, 50, 2**64 - 1]  # the caller's array is left alone
    assert read_all(db) == [(0, b"", b"a"), (1, b"", b"b"), (2, b"", b"c"), (3, b"", b"d"),
                            (4, b"", b"e"), (5, b"", b"f"), (6, b"", b"g"), (7, b"", b"i"),
                            (50, b"", b"h"), (100, b"", b"x")]
    assert json.loads(db.execute("SHOW ssn")) == 8


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
        assert db.write([Event(value=b"serial again")]) == [0]
        assert read_all(db) == [(0, b"", b"serial again"), (1, b"", b"ok")]
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

# errors keep the instance usable; context managers ------------------------------


def test_usable_after_errors(db):
    db.write([Event(id=1, value=b"one")])
    for bad in (lambda: db.write([Event(id=-1)]),
                lambda: db.execute("SET nope TO 1"),
                lambda: db.execute("garbage"),
                lambda: db.execute("REFRESH PARTITION 7000077"),  # no partition holds it
                lambda: db.write_batch(ids=[1, 2], values=[b"x"]),
                lambda: db.open("/tmp"),
                lambda: db.cursor(id=-5)):
        with pytest.raises(monotone.MonotoneError):
            bad()
        db.write([Event(id=2, value=b"two")])
        assert read_all(db)[:2] == [(1, b"", b"one"), (2, b"", b"two")]
    db.execute(ALL)
    assert read_all(db) == [(1, b"", b"one"), (2, b"", b"two")]


def test_context_managers_and_reopen(repo):
    with monotone.Monotone() as db:
        db.execute("SET workers TO 0")
        db.open(repo)
        db.write([Event(id=1, value=b"x")])
        with db.cursor() as cur:
            assert cur.read().value == b"x"
        assert cur.read() is None  # closed cursor
    with pytest.raises(monotone.MonotoneError):
        db.write([Event(id=2)])  # closed
    with pytest.raises(monotone.MonotoneError):
        db.cursor()
    db.close()  # closing twice is fine
    db.open(repo)  # the same environment opens again
    try:
        assert read_all(db) == [(1, b"", b"x")]
    finally:
        db.close()


def test_open_twice_is_an_error(db, tmp_path):
    with pytest.raises(monotone.MonotoneError):
        db.open(str(tmp_path / "other"))
    assert not os.path.exists(tmp_path / "other")

# SHOW and config -----------------------------------------------------------------


def test_show_config_vars_closed_and_open(repo):
    env = monotone.Monotone()
    assert json.loads(env.execute("SHOW interval")) == 3_000_000
    assert json.loads(env.execute("SHOW serial")) is True
    assert json.loads(env.execute("SHOW CONFIG wal")) is True
    assert json.loads(env.execute("SHOW CONFIG workers")) == 3  # SHOW WORKERS: the pool
    assert json.loads(env.execute("SHOW compression")) in ("lz4", "zstd")
    env.execute("SET workers TO 0")
    env.execute("set INTERVAL to 1000")
    env.execute("SET wal_rotate_wm TO 1MiB")
    assert json.loads(env.execute("SHOW wal_rotate_wm")) == 1024 * 1024
    assert json.loads(env.execute("SHOW interval, CONFIG workers, serial")) == [1000, 0, True]
    env.open(repo)
    try:
        assert json.loads(env.execute("SHOW interval")) == 1000
        assert json.loads(env.execute("SHOW interval, CONFIG workers, CONFIG wal")) == [1000, 0, True]
        assert json.loads(env.execute("SHOW CONFIG wal, WAL"))[1]["active"] is True
        assert json.loads(env.execute("SHOW directory")) == os.path.realpath(repo)
        uuid = json.loads(env.execute("SHOW uuid"))
        assert isinstance(uuid, str) and len(uuid) >= 32
        cfg = json.loads(env.execute("SHOW CONFIG"))
        assert cfg["interval"] == 1000 and cfg["uuid"] == uuid
        assert "error_refresh_1" not in cfg
        assert json.loads(env.execute("SHOW ALL"))["workers"] == 0
        env.execute("SET interval TO 20")
        assert json.loads(env.execute("SHOW interval")) == 20
        env.write([Event(id=45)])
        assert [(p["min"], p["max"]) for p in json.loads(env.execute("SHOW PARTITIONS"))] == [(40, 59)]
        with open(os.path.join(repo, "config.json")) as f:
            assert json.load(f)["interval"] == 20
    finally:
        env.close()
    env2 = open_db(repo)
    try:  # persisted
        assert json.loads(env2.execute("SHOW interval")) == 20
        assert json.loads(env2.execute("SHOW uuid")) == uuid
    finally:
        env2.close()


def test_show_wal_and_partition(db):
    db.write([Event(id=5, value=b"abc")])
    w = json.loads(db.execute("SHOW WAL"))
    assert w["active"] is True and w["files"] == 1 and w["lsn"] >= 1
    p = json.loads(db.execute("SHOW PARTITION 0"))
    assert (p["min"], p["max"], p["events_heap"], p["on_storage"]) == (0, 2_999_999, 1, False)
    with pytest.raises(monotone.MonotoneError, match="3000000"):
        db.execute("SHOW PARTITION 3000000")


def test_show_missing_partition_is_partition_not_found(db):
    db.write([Event(id=5, value=b"abc")])
    with pytest.raises(monotone.PartitionNotFound):
        db.execute("SHOW PARTITION 3000000")

@pytest.mark.parametrize("setup", ["create-partition", "interval-change"])
def test_write_into_an_interval_partly_covered(repo, setup):
    db = open_db(repo, interval=10)
    try:
        if setup == "create-partition":
            db.execute("CREATE PARTITION 300 300")
            db.write([Event(id=301, value=b"x")])   # [300, 309] minus [300, 300]
            want = [(300, 300), (301, 309)]
            got_id = 301
        else:
            db.write([Event(id=5, value=b"a")])      # [0, 9]
            db.execute("SET interval TO 20")
            db.write([Event(id=15, value=b"x")])     # [0, 19] minus [0, 9]
            want = [(0, 9), (10, 19)]
            got_id = 15
        assert [(p["min"], p["max"]) for p in json.loads(db.execute("SHOW PARTITIONS"))] == want
        assert (got_id, b"", b"x") in read_all(db)
    finally:
        db.close()


# REFRESH ---------------------------------------------------------------------------


def test_refresh_missing_partition(db):
    with pytest.raises(monotone.PartitionNotFound) as info:
        db.execute("REFRESH PARTITION 12345")
    assert isinstance(info.value, monotone.MonotoneError)
    assert "12345" in str(info.value)
    assert db.execute("REFRESH PARTITION IF EXISTS 12345") is None
    assert db.execute("REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615") is None
    assert db.execute("REFRESH PARTITIONS BETWEEN 5 AND 3") is None
    db.write([Event(id=3_000_000)])
    assert db.execute("REFRESH PARTITIONS BETWEEN 0 AND 2999999") is None  # nothing in range
    p = json.loads(db.execute("SHOW PARTITION 3000000"))
    assert p["on_storage"] is False and p["events_heap"] == 1
    db.execute("REFRESH PARTITION 3000000")
    p = json.loads(db.execute("SHOW PARTITION 3000000"))
    assert p["on_storage"] is True and p["events"] == 1 and p["events_heap"] == 0
    db.execute("REFRESH PARTITION 3000000")  # nothing new: fine
    assert read_all(db) == [(3_000_000, b"", b"")]


def test_refresh_then_more_writes_many_times(db):
    want = {}
    for round_ in range(5):
        ids = np.arange(round_, 1000, 3, dtype=np.uint64)
        vals = [b"r%d-%d" % (round_, i) for i in ids.tolist()]
        db.write_batch(ids=ids, values=vals)
        want.update(zip(ids.tolist(), vals))
        db.execute(ALL)
    assert read_all(db) == [(i, b"", v) for i, v in sorted(want.items())]
    p = json.loads(db.execute("SHOW PARTITION 0"))
    assert p["refreshes"] == 5 and p["events"] == len(want)


def test_many_regions_with_keys_across_region_bounds(repo):
    """Small regions: equal ids with different keys straddle region bounds in the file."""
    db = open_db(repo)
    try:
        db.execute("ALTER STORAGE main SET (region_size 1KiB)")
        keys = [b"", b"a", b"a\x00", b"b", b"bb"]
        want = {(i // 5, keys[i % 5]): b"f%05d" % i for i in range(2000)}
        db.write([Event(id=i, key=k, value=v) for (i, k), v in want.items()])
        db.execute(ALL)
        p = json.loads(db.execute("SHOW PARTITION 0"))
        assert p["regions"] > 20
        changes = []
        for i in range(0, 400, 7):
            k = keys[i % 5]
            if i % 3:
                changes.append(Event(id=i, key=k, value=b"m%d" % i))
                want[(i, k)] = b"m%d" % i
            else:
                changes.append(Event(id=i, key=k, delete=True))
                want.pop((i, k), None)
            changes.append(Event(id=i, key=k + b"\x01", value=b"new"))
            want[(i, k + b"\x01")] = b"new"
        db.write(changes)
        ref = [(i, k, v) for (i, k), v in sorted(want.items())]
        for refresh in (False, True):
            if refresh:
                db.execute(ALL)
            assert read_all(db) == ref
            assert read_batches(db) == ref
            for id_, key in [(0, b""), (13, b"a"), (13, b"a\x00\x00"), (57, b"b"), (57, b"bb\x01"),
                             (200, b"\x00"), (399, b"zz"), (400, b"")]:
                expect = [e for e in ref if (e[0], e[1]) >= (id_, key)]
                assert read_all(db, id_, key) == expect, (id_, key)
                assert read_batches(db, id_, key) == expect, (id_, key)
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


READER = """
import sys, monotone
db = monotone.Monotone()
db.open(sys.argv[1])
print(repr([(e.id, e.key, e.value) for e in db.cursor()]), flush=True)
db.write([monotone.Event(id=99, value=b"from child")])
db.close()
"""


def test_writes_visible_to_another_process(db, repo):
    import ast
    import subprocess

    from conftest import run_python
    db.write([Event(id=1, key=b"k", value=b"parent")])
    proc = run_python(READER, repo, stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert ast.literal_eval(out.decode().strip()) == [(1, b"k", b"parent")]
    assert read_all(db) == [(1, b"k", b"parent"), (99, b"", b"from child")]


def test_iteration_resumes_where_a_loop_stopped(db):
    db.write([Event(id=i) for i in range(5)] + [Event(id=3_000_000 + i) for i in range(5)])
    with db.cursor() as cur:
        for ev in cur:
            if ev.id == 3:
                break
        assert [ev.id for ev in cur] == [4] + [3_000_000 + i for i in range(5)]
        assert cur.read() is None


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
