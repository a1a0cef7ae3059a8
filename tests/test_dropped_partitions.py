"""Dropped partitions stay dropped across restarts, WAL collection and crashes."""
from __future__ import annotations

import json
import os

import pytest
from conftest import coordinator_pids, open_db
from process_kill import kill9
from readback import read_all
from storage_catalog import files_by_storage

import monotone
from monotone import Event

# dropped partitions -------------------------------------------------------------------


def wal_names(repo):
    d = os.path.join(repo, "wal")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_dropped_partition_stays_dropped(repo):
    """The drop is in the WAL: replay does not bring the partition back, and deleting WAL
    files that are no longer needed never deletes the drop before the data it cancels."""
    db = open_db(repo, interval=10)
    try:
        db.write([Event(id=1, value=b"a"), Event(id=11, value=b"dropped")])   # one batch
        db.execute("REFRESH PARTITION 11")
        db.write([Event(id=12, value=b"dropped too")])
        db.execute("DROP PARTITION 11")  # in a file and in memory
        db.write([Event(id=21, value=b"c")])
        db.execute("REFRESH PARTITION 0")  # the batch of id 11 is needed no more by 0...
        assert read_all(db) == [(1, b"", b"a"), (21, b"", b"c")]
    finally:
        db.close()
    for round_ in range(3):
        db = open_db(repo)
        try:
            assert read_all(db) == [(1, b"", b"a"), (21, b"", b"c")], round_
            assert [p["min"] for p in json.loads(db.execute("SHOW PARTITIONS"))] == [0, 20]
            with pytest.raises(monotone.MonotoneError):
                db.execute("SHOW PARTITION 11")
            if round_ == 1:  # ...and 20 still needs the WAL: collect what can go
                db.execute("REFRESH PARTITIONS BETWEEN 0 AND 9")
            if round_ == 2:  # everything refreshed: no WAL left at all
                db.execute("REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615")
                assert wal_names(repo) == []
        finally:
            db.close()
    db = open_db(repo)
    try:
        assert read_all(db) == [(1, b"", b"a"), (21, b"", b"c")]
        db.write([Event(id=13, value=b"new")])  # the range can be written again
        assert read_all(db, id=10) == [(13, b"", b"new"), (21, b"", b"c")]
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert read_all(db) == [(1, b"", b"a"), (13, b"", b"new"), (21, b"", b"c")]
    finally:
        db.close()


def test_dropped_range_after_crash(repo):
    db = open_db(repo, interval=10)
    try:
        db.write([Event(id=i, value=b"v%d" % i) for i in range(0, 60, 5)])
        db.execute("REFRESH PARTITIONS BETWEEN 20 AND 29")
        db.execute("DROP PARTITIONS BETWEEN 10 AND 39")
        db.write([Event(id=2, value=b"after")])  # the client fetches the config again
        kill9(coordinator_pids(repo)[0])
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert read_all(db) == [(0, b"", b"v0"), (2, b"", b"after"), (5, b"", b"v5"),
                                (40, b"", b"v40"), (45, b"", b"v45"), (50, b"", b"v50"),
                                (55, b"", b"v55")]
        assert files_by_storage(repo)["main"] == []
    finally:
        db.close()
