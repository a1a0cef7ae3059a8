"""A writer killed at each named step of a batch that spans three partitions.

What it leaves is decided for the whole batch by whoever comes next: a reader
at once, a writer that locks one of its partitions, a refresh, a restart.
Before its WAL record is complete the batch goes (its record is cut off the
dead writer's file); once it is marked as logged, it is published. Either way
every reader, every later refresh and every replay agree.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, coordinator_pids, open_db

from monotone import faults

BATCH = np.arange(900, 2100, 3, dtype=np.uint64)  # partitions 0, 1000 and 2000
GONE = ("write.locked", "write.lsn", "write.appended", "write.logged")
KEPT = ("write.marked", "write.publishing", "write.published")

DEAD_WRITER = """
import sys
import numpy as np
import monotone
db = monotone.Monotone()
db.open(sys.argv[1])
ids = np.arange(900, 2100, 3, dtype=np.uint64)
db.write_batch(ids=ids, keys=[b"dead"] * len(ids), values=[b"v%d" % i for i in ids.tolist()])
print("not killed", flush=True)
"""


def kill_writer_at(repo: str, point: str) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT, **{faults.ENV: f"{point}:kill@1"})
    done = subprocess.run([sys.executable, "-c", DEAD_WRITER, repo], env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == -9, (done.returncode, done.stdout, done.stderr[-2000:])


def dead_events(db) -> int:
    """How many of the dead writer's events a cursor sees; they must be right."""
    seen = []
    with db.cursor() as cur:
        for ev in cur:
            if ev.key == b"dead":
                assert ev.value == b"v%d" % ev.id
                seen.append(ev.id)
    assert seen in ([], BATCH.tolist()), f"{len(seen)} of {len(BATCH)} events seen"
    return len(seen)


def wal_bytes(repo: str) -> int:
    wal = os.path.join(repo, "wal")
    return sum(os.path.getsize(os.path.join(wal, n)) for n in os.listdir(wal))


@pytest.mark.parametrize("point", GONE + KEPT)
def test_batch_of_a_dead_writer_is_decided_whole(repo, point):
    db = open_db(repo, interval=1000)
    try:
        db.write_batch(ids=np.array([10, 1010, 2010], np.uint64), values=[b"a", b"b", b"c"])
        kill_writer_at(repo, point)
        want = len(BATCH) if point in KEPT else 0
        before = wal_bytes(repo)
        # a reader, before anyone touches the partitions: all of it or nothing
        first = dead_events(db)
        assert first in (0, want)
        # a writer in one of its partitions decides it; a refresh gives that
        # partition a file newer than the dead batch
        db.write_batch(ids=np.array([950], np.uint64), values=[b"later"])
        assert dead_events(db) == want
        db.execute("REFRESH PARTITION 0")
        assert dead_events(db) == want
        if point in ("write.logged",):
            assert wal_bytes(repo) < before, "the record of a batch undone stays in the WAL"
    finally:
        db.close()
    db = open_db(repo)  # the replay agrees, whatever each partition's file holds
    try:
        assert dead_events(db) == want
        with db.cursor() as cur:
            others = [(e.id, e.value) for e in cur if e.key != b"dead"]
        assert others == [(10, b"a"), (950, b"later"), (1010, b"b"), (2010, b"c")]
    finally:
        db.close()


@pytest.mark.parametrize("point", ("write.appended", "write.logged", "write.marked",
                                   "write.publishing"))
def test_dead_writer_then_coordinator_crash(repo, point):
    """The coordinator dies too before anyone decides the batch: the restart does."""
    db = open_db(repo, interval=1000)
    db.write_batch(ids=np.array([950], np.uint64), values=[b"x"])
    kill_writer_at(repo, point)
    os.kill(coordinator_pids(repo)[0], 9)
    db.close()
    db = open_db(repo)
    try:
        assert dead_events(db) in (0, len(BATCH))
        db.execute("REFRESH PARTITIONS BETWEEN 0 AND 999")
        n = dead_events(db)
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert dead_events(db) == n
    finally:
        db.close()


def test_reader_completes_a_publish_its_writer_died_in(repo):
    """Killed between the stores of a publish across partitions: a reader sees the
    batch whole before any writer comes by to finish it."""
    db = open_db(repo, interval=1000)
    try:
        kill_writer_at(repo, "write.publishing")
        parts = {p["min"]: p["events_heap"] for p in json.loads(db.execute("SHOW PARTITIONS"))}
        assert sorted(parts) == [0, 1000, 2000]
        assert dead_events(db) == len(BATCH)
    finally:
        db.close()
