"""Commands through execute(): SHOW and SET of the configuration, partitions
(CREATE, SHOW, the interval), and REFRESH."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import ALL, open_db
from readback import read_all, read_batches

import monotone
from monotone import Event

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
