"""Clean restarts: WAL replay, the serial number, WAL files collected once refreshed,
and a batch over hundreds of partitions, across close and open."""
from __future__ import annotations

import json

import numpy as np
from conftest import ALL, open_db
from readback import read_all
from repo_files import wal_files

from monotone import Event

# clean restarts -------------------------------------------------------------------------


def test_write_close_reopen(repo):
    db = open_db(repo)
    db.write([Event(id=i, key=b"k%d" % (i % 3), value=b"v%d" % i) for i in range(1000)])
    db.write_batch(ids=np.arange(1000, 2000, dtype=np.uint64), values=[b"b"] * 1000)
    db.write([Event(id=5, key=b"k2", value=b"replaced"), Event(id=6, key=b"k0", delete=True)])
    want = read_all(db)
    assert len(want) == 1999
    db.close()
    assert wal_files(repo), "unrefreshed data must be in the WAL"
    db = open_db(repo)
    try:
        assert read_all(db) == want
    finally:
        db.close()
    db = open_db(repo)  # a second replay gives the same
    try:
        assert read_all(db) == want
    finally:
        db.close()


def test_wal_replayed_in_lsn_order_across_sessions(repo):
    for i, value in enumerate([b"first", b"second", b"third"]):
        db = open_db(repo)
        db.write([Event(id=1, value=value), Event(id=100 + i, value=value)])
        if i == 1:
            db.write([Event(id=100, delete=True)])
        db.close()
    assert len(wal_files(repo)) >= 2
    db = open_db(repo)
    try:
        assert read_all(db) == [(1, b"", b"third"), (101, b"", b"second"), (102, b"", b"third")]
    finally:
        db.close()


def test_replay_skips_what_files_hold(repo):
    db = open_db(repo, interval=10)
    db.write([Event(id=i, value=b"a%d" % i) for i in range(20)])  # partitions 0 and 10
    db.execute("REFRESH PARTITION 0")
    db.write([Event(id=3, value=b"b3"), Event(id=13, value=b"b13"), Event(id=4, delete=True)])
    want = read_all(db)
    db.close()
    db = open_db(repo)
    try:
        assert read_all(db) == want
        parts = {p["min"]: p for p in json.loads(db.execute("SHOW PARTITIONS"))}
        # the file holds 10; 2 more in memory (events counts both, as the original)
        assert parts[0]["events"] == 12 and parts[0]["events_heap"] == 2
        assert parts[10]["events_heap"] >= 10
        db.execute(ALL)
        assert read_all(db) == want
    finally:
        db.close()


def test_ssn_persists_across_restarts(repo):
    db = open_db(repo)
    assert db.write([Event(value=b"%d" % i) for i in range(10)]) == list(range(10))
    db.close()
    db = open_db(repo)
    assert db.write([Event(value=b"x")]) == [10]
    db.execute(ALL)  # every WAL file goes: ssn must come from the files / config
    db.close()
    assert not wal_files(repo)
    db = open_db(repo)
    assert db.write([Event(value=b"y")]) == [11]
    db.execute("SET ssn TO 500")
    db.close()
    db = open_db(repo)
    try:
        assert json.loads(db.execute("SHOW ssn")) == 500
        assert db.write([Event(value=b"z")]) == [500]
        assert [e[0] for e in read_all(db)] == list(range(12)) + [500]
    finally:
        db.close()


def test_wal_off_clean_close_keeps_everything(repo):
    db = open_db(repo, wal="false")
    db.write([Event(id=i, value=b"v%d" % i) for i in range(100)])
    db.close()
    assert not wal_files(repo)
    db = open_db(repo)
    try:
        assert json.loads(db.execute("SHOW CONFIG wal")) is False
        assert read_all(db) == [(i, b"", b"v%d" % i) for i in range(100)]
    finally:
        db.close()


def test_wal_deleted_after_refresh_of_everything(repo):
    db = open_db(repo, interval=1000)
    db.write_batch(ids=np.arange(0, 5000, 7, dtype=np.uint64), values=[b"v"] * 715)
    db.write([Event(id=1, value=b"one")])
    assert len(wal_files(repo)) == 1
    db.execute("REFRESH PARTITION 0")
    assert len(wal_files(repo)) == 1  # other partitions still need it
    db.execute(ALL)
    assert wal_files(repo) == []
    assert json.loads(db.execute("SHOW WAL"))["files"] == 0
    want = read_all(db)
    db.write([Event(id=2, value=b"two")])
    assert len(wal_files(repo)) == 1
    db.execute("REFRESH PARTITIONS BETWEEN 0 AND 999")
    assert wal_files(repo) == []
    want = read_all(db)
    db.close()
    assert wal_files(repo) == []
    db = open_db(repo)
    try:
        assert read_all(db) == want
        assert wal_files(repo) == []
    finally:
        db.close()


def test_batch_across_hundreds_of_partitions(repo):
    """A batch is atomic however many partitions it spans (300 here)."""
    db = open_db(repo, interval=1)
    try:
        db.write_batch(ids=np.arange(300, dtype=np.uint64), values=[b"x%d" % i for i in range(300)])
        assert read_all(db) == [(i, b"", b"x%d" % i) for i in range(300)]
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert len(read_all(db)) == 300
        assert len(json.loads(db.execute("SHOW PARTITIONS"))) == 300
    finally:
        db.close()
