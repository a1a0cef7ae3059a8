"""Injected failures (error_refresh_N, error_wal): the half-done refresh or write is
recovered, the instance stays usable, and the retry works."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ALL, coordinator_pids, open_db
from readback import read_all
from repo_files import partition_files, wal_files

import monotone
from monotone import Event

# injected refresh failures ----------------------------------------------------------------


def leftovers(repo):
    return [n for n in partition_files(repo) if n.endswith((".incomplete", ".complete"))]


@pytest.mark.parametrize("had_file", [True, False], ids=["old-file", "first-refresh"])
@pytest.mark.parametrize("point", [1, 2, 3])
def test_error_refresh(repo, point, had_file):
    db = open_db(repo)
    want = {}
    db.write_batch(ids=np.arange(1000, dtype=np.uint64), values=[b"a%d" % i for i in range(1000)])
    want.update({i: b"a%d" % i for i in range(1000)})
    if had_file:
        db.execute(ALL)
    db.write_batch(ids=np.arange(0, 500, dtype=np.uint64), values=[b"b%d" % i for i in range(500)])
    want.update({i: b"b%d" % i for i in range(500)})
    db.write_batch(ids=np.arange(500, 600, dtype=np.uint64), deletes=np.ones(100, bool))
    for i in range(500, 600):
        del want[i]
    db.write_batch(ids=np.arange(1000, 1500, dtype=np.uint64), values=[b"c"] * 500)
    want.update({i: b"c" for i in range(1000, 1500)})
    expect = [(i, b"", v) for i, v in sorted(want.items())]
    assert read_all(db) == expect
    db.execute(f"SET error_refresh_{point} TO true")
    with pytest.raises(monotone.MonotoneError, match=f"error_refresh_{point}|crash point {point}"):
        db.execute(ALL)
    db.close()
    assert not coordinator_pids(repo), "close() after an injected refresh failure hung"
    if point < 3:
        assert leftovers(repo), "the injected failure left no half-done refresh to recover"
    else:  # crash point 3 comes after the atomic switch of files: the new one is in place
        assert not leftovers(repo) and partition_files(repo)
    db = open_db(repo)
    try:
        assert read_all(db) == expect
        assert not leftovers(repo)
        db.execute(ALL)  # the switch is not persisted: refresh works now
        assert read_all(db) == expect
        assert not leftovers(repo)
        assert not wal_files(repo)
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert read_all(db) == expect
        p = json.loads(db.execute("SHOW PARTITION 0"))
        assert p["events"] == len(expect) and p["events_heap"] == 0
    finally:
        db.close()


def refresh_fails_at(db, point):
    """Ten events refreshed, five of them rewritten, then a refresh that fails at point."""
    db.write([Event(id=i, value=b"a") for i in range(10)])
    db.execute(ALL)
    db.write([Event(id=i, value=b"b") for i in range(5)])
    db.execute(f"SET error_refresh_{point} TO true")
    with pytest.raises(monotone.MonotoneError):
        db.execute(ALL)


@pytest.mark.parametrize("point", [1, 2, 3])
def test_error_refresh_instance_stays_usable(repo, point):
    """After a failed refresh the open instance still reads and writes, and refresh retries."""
    db = open_db(repo)
    try:
        refresh_fails_at(db, point)
        want = [(i, b"", b"b" if i < 5 else b"a") for i in range(10)]
        assert read_all(db) == want
        db.write([Event(id=20, value=b"c")])
        db.execute(f"SET error_refresh_{point} TO false")
        db.execute(ALL)
        assert read_all(db) == want + [(20, b"", b"c")]
        assert not leftovers(repo)
    finally:
        db.close()


@pytest.mark.parametrize("point", [1, 2])
def test_refresh_after_failed_refresh_refreshes_everything(repo, point):
    db = open_db(repo)
    try:
        refresh_fails_at(db, point)
        db.write([Event(id=20, value=b"c")])
        db.execute(f"SET error_refresh_{point} TO false")
        db.execute(ALL)
        p = json.loads(db.execute("SHOW PARTITION 0"))
        assert (p["events"], p["events_heap"]) == (11, 0)
        assert wal_files(repo) == []
    finally:
        db.close()


@pytest.mark.parametrize("wal", ["true", "false"])
def test_error_wal_fails_the_write_and_leaves_nothing(repo, wal):
    """error_wal makes the WAL step of a write fail: the batch is neither visible nor
    replayed, and the next write goes through."""
    db = open_db(repo, wal=wal, interval=1000)
    try:
        db.write([Event(id=1, value=b"before")])
        db.execute("SET error_wal TO true")
        with pytest.raises(monotone.InjectedError, match="error_wal"):
            db.write([Event(id=500, value=b"lost"), Event(id=1500, value=b"lost")])
        assert read_all(db) == [(1, b"", b"before")]
        db.execute("SET error_wal TO false")
        db.write([Event(id=2, value=b"after")])
        assert read_all(db) == [(1, b"", b"before"), (2, b"", b"after")]
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert read_all(db) == [(1, b"", b"before"), (2, b"", b"after")]
    finally:
        db.close()
