"""Crashes: kill -9 of writers and coordinators, with and without the WAL; what was
acknowledged survives and every batch is whole or absent."""
from __future__ import annotations

import os
import signal
import textwrap

import numpy as np
import pytest
from conftest import ALL, coordinator_pids, open_db, run_python
from process_kill import kill9
from readback import read_all
from repo_files import wal_files

from monotone import Event


def kill_proc(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


# crashes ------------------------------------------------------------------------------------

CRASH_WRITER = textwrap.dedent("""
    import sys
    import monotone
    from monotone import Event
    db = monotone.Monotone()
    db.execute("SET workers TO 0")
    if sys.argv[2] == "off":
        db.execute("SET wal TO false")
    db.open(sys.argv[1])
    db.write([Event(id=i, value=b"refreshed") for i in range(0, 100)])
    ids = db.write([Event(value=b"serial") for _ in range(10)])
    db.execute("REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615")
    db.write([Event(id=i, value=b"memory") for i in range(50, 150)])
    db.write([Event(id=7, delete=True)])
    ids += db.write([Event(value=b"serial2") for _ in range(5)])
    print(" ".join(map(str, ids)), flush=True)
    sys.stdin.readline()  # stay open until killed
""")


def crash(repo, mode):
    """Run CRASH_WRITER, then kill -9 it and its coordinator; return the serial ids it got."""
    proc = run_python(CRASH_WRITER, repo, mode, stdin=-1, stdout=-1)
    try:
        line = proc.stdout.readline().decode()
        assert line.strip(), "writer failed"
        ids = [int(x) for x in line.split()]
        coords = coordinator_pids(repo)
        assert len(coords) == 1
        # freeze the coordinator so it cannot stop cleanly when its client goes,
        # kill the client, then the coordinator
        os.kill(coords[0], signal.SIGSTOP)
        kill_proc(proc)
        kill9(coords[0])
    finally:
        kill_proc(proc)
        for pid in coordinator_pids(repo):
            kill9(pid)
    return ids


SERIAL_IDS = list(range(100, 110)) + list(range(150, 155))  # past the explicit ids before


def test_wal_off_crash_keeps_only_refreshed(repo):
    ids = crash(repo, "off")
    assert ids == SERIAL_IDS
    db = open_db(repo)
    try:
        got = read_all(db)
        # only what was refreshed: 0..99 "refreshed" and the first ten serial ids
        assert got == [(i, b"", b"refreshed") for i in range(100)] + \
            [(i, b"", b"serial") for i in range(100, 110)]
        assert not wal_files(repo)
        # the ids of the events that survived are not handed out again
        assert db.write([Event(value=b"next")])[0] >= 110
        assert db.write([Event(id=5000, value=b"after")]) == [5000]
    finally:
        db.close()


def test_wal_on_crash_keeps_everything_and_ssn(repo):
    ids = crash(repo, "on")
    assert ids == SERIAL_IDS
    db = open_db(repo)
    try:
        want = {i: b"refreshed" for i in range(100)}
        want.update({i: b"serial" for i in range(100, 110)})
        want.update({i: b"memory" for i in range(50, 150)})  # replaces 100..109 too
        del want[7]
        want.update({i: b"serial2" for i in range(150, 155)})
        assert read_all(db) == [(i, b"", v) for i, v in sorted(want.items())]
        # serial ids are never handed out twice, nor on an explicit id
        assert db.write([Event(value=b"next")]) == [155]
    finally:
        db.close()


STREAM_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    import monotone
    repo, n, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    db = monotone.Monotone()
    db.execute("SET workers TO 0")
    db.execute("SET interval TO 5000")
    db.open(repo)
    for i in range(batches):
        ids = np.arange(i * n, (i + 1) * n, dtype=np.uint64)
        values = np.empty((n, 2), np.uint64)
        values[:, 0] = i
        values[:, 1] = ids
        db.write_batch(ids=ids, values=values.view(np.uint8).reshape(n, 16))
        sys.stdout.write(f"{i}\\n")
        sys.stdout.flush()
    sys.stdout.write("done\\n")
    sys.stdout.flush()
    sys.stdin.readline()
""")


def check_stream(db, n, acked, batches):
    """Every acknowledged batch is there, every batch whole or absent, nothing else."""
    ids, values = [], []
    with db.cursor() as cur:
        for b in cur.batches():
            ids.append(np.array(b.ids))
            values.append(np.array(b.value_data))
    ids = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
    values = np.concatenate(values) if values else np.zeros(0, np.uint8)
    assert len(values) == 16 * len(ids)
    pairs = values.view(np.uint64).reshape(-1, 2)
    assert np.array_equal(pairs[:, 1], ids), "a value does not belong to its id"
    assert np.array_equal(pairs[:, 0], ids // np.uint64(n)), "a value of another batch"
    assert len(ids) == 0 or int(ids.max()) < n * batches
    counts = np.bincount((ids // np.uint64(n)).astype(np.int64), minlength=batches)
    present = np.flatnonzero(counts)
    assert set(counts.tolist()) <= {0, n}, f"half-applied batches: {np.flatnonzero((counts > 0) & (counts < n))}"
    # batches were written one after another: the ones present are a prefix
    assert present.tolist() == list(range(len(present)))
    assert len(present) >= acked, f"only {len(present)} of {acked} acknowledged batches survive"
    return len(present)


@pytest.mark.parametrize("kill_coordinator", [False, True], ids=["writer", "writer+coordinator"])
def test_kill_writer_mid_stream(repo, kill_coordinator):
    n, batches, wanted_acks = 97, 1000, 200  # some batches cross the 5,000 partition bounds
    proc = run_python(STREAM_WRITER, repo, str(n), str(batches), stdin=-1, stdout=-1)
    coords = []
    acked = 0
    try:
        while acked < wanted_acks:
            line = proc.stdout.readline().decode().strip()
            assert line and line != "done", f"writer stopped early: {line!r}"
            assert int(line) == acked
            acked += 1
            if acked == 1:
                coords = coordinator_pids(repo)
                assert len(coords) == 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for line in proc.stdout.read().decode().split():  # acks already in the pipe count
            if line != "done":
                assert int(line) == acked
                acked += 1
        if kill_coordinator:
            kill9(coords[0])
    finally:
        kill_proc(proc)
    db = open_db(repo)
    try:
        present = check_stream(db, n, acked, batches)
        db.execute(ALL)
        assert check_stream(db, n, acked, batches) == present
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert check_stream(db, n, acked, batches) == present
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(10))
def test_kill_writer_mid_stream_many(repo, round_):
    test_kill_writer_mid_stream(repo, bool(round_ % 2))


def test_close_after_coordinator_killed_following_a_config_change(repo):
    """kill -9 of the coordinator right after a SET (or ALTER STORAGE): close() still
    closes, and the repository opens again."""
    db = open_db(repo)
    db.write([Event(id=1, value=b"x")])
    db.execute("SET interval TO 5")  # a config change the client has not fetched yet
    kill9(coordinator_pids(repo)[0])
    try:
        db.close()
    finally:
        db = open_db(repo)  # the next coordinator removes what the dead one left
        try:
            assert read_all(db) == [(1, b"", b"x")]
        finally:
            db.close()
