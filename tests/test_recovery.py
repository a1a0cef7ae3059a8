"""Restart recovery: WAL replay, crashes (kill -9), injected refresh failures, damage."""
from __future__ import annotations

import json
import os
import select
import signal
import textwrap

import numpy as np
import pytest
from conftest import ALL, coordinator_pids, open_db, run_python

import monotone
from monotone import Event
from monotone.format import partition


def read_all(db, id=None):
    with db.cursor(id=id) as cur:
        return [(e.id, e.key, e.value) for e in cur]


def wal_files(repo):
    d = os.path.join(repo, "wal")
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".wal"))


def storage_dir(repo):
    """The main storage's directory, <base>/<repository uuid> (SHOW uuid; persisted in
    config.json, read from there as the repository is closed when it is needed)."""
    with open(os.path.join(repo, "config.json")) as f:
        return os.path.join(repo, json.load(f)["uuid"])


def partition_files(repo):
    return sorted(os.listdir(storage_dir(repo)))


def wait_dead(pid, timeout=60.0):
    """Block until process pid has exited (a pidfd becomes readable when it does)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"process {pid} did not exit"
    finally:
        os.close(fd)


def kill9(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_dead(pid)


def kill_proc(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()

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
        assert parts[0]["events"] == 10 and parts[0]["events_heap"] == 2
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


def test_wal_off_crash_keeps_only_refreshed(repo):
    ids = crash(repo, "off")
    assert ids == list(range(15))
    db = open_db(repo)
    try:
        got = read_all(db)
        # only what was refreshed: 0..99 "refreshed" and the first ten serial ids
        # (ids 0..9 of the serial batch replaced 0..9 of the first one)
        assert got == [(i, b"", b"serial") for i in range(10)] + \
            [(i, b"", b"refreshed") for i in range(10, 100)]
        assert not wal_files(repo)
        # the ids of the events that survived are not handed out again
        assert db.write([Event(value=b"next")])[0] >= 10
        assert db.write([Event(id=5000, value=b"after")]) == [5000]
    finally:
        db.close()


def test_wal_on_crash_keeps_everything_and_ssn(repo):
    ids = crash(repo, "on")
    assert ids == list(range(15))
    db = open_db(repo)
    try:
        want = {i: b"refreshed" for i in range(100)}
        want.update({i: b"serial" for i in range(10)})
        want.update({i: b"memory" for i in range(50, 150)})
        del want[7]
        want.update({i: b"serial2" for i in range(10, 15)})
        assert read_all(db) == [(i, b"", v) for i, v in sorted(want.items())]
        # serial ids are never handed out twice
        assert db.write([Event(value=b"next")]) == [15]
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

# damaged files ---------------------------------------------------------------------------


def refreshed_closed(repo, n=10_000):
    db = open_db(repo)
    vals = np.empty((n, 100), np.uint8)
    vals[:] = (np.arange(n) % 251).astype(np.uint8)[:, None]
    db.write_batch(ids=np.arange(n, dtype=np.uint64), values=vals)
    db.execute(ALL)
    p = json.loads(db.execute("SHOW PARTITION 0"))
    assert p["regions"] > 2
    uuid = json.loads(db.execute("SHOW uuid"))
    db.close()
    assert storage_dir(repo) == os.path.join(repo, uuid)
    files = partition_files(repo)
    assert len(files) == 1
    return os.path.join(storage_dir(repo), files[0]), p


def test_corrupted_region_raises_with_path(repo):
    path, p = refreshed_closed(repo)
    with open(path, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    db = open_db(repo)
    try:
        with pytest.raises(monotone.CorruptionError) as info:
            read_all(db)
        assert path in str(info.value)
        with pytest.raises(monotone.CorruptionError):
            with db.cursor() as cur:
                list(cur.batches())
        # other regions are still readable, and the instance still works
        tail = read_all(db, id=9_990)
        assert [e[0] for e in tail] == list(range(9_990, 10_000))
        assert tail[0][2] == bytes([9_990 % 251]) * 100
        db.write([Event(id=20_000, value=b"x")])
        assert read_all(db, id=20_000) == [(20_000, b"", b"x")]
    finally:
        db.close()


@pytest.mark.parametrize("where", ["footer", "index", "truncated"])
def test_corrupted_index_is_reported_with_path(repo, where):
    path, p = refreshed_closed(repo)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        if where == "footer":
            f.seek(size - 10)
            f.write(b"\xAA\x55")
        elif where == "index":
            f.seek(size - partition.FOOTER.size)
            offset, length, _, _ = partition.decode_footer(f.read(), path)
            f.seek(offset + length // 2)  # the middle of the region index
            f.write(b"\xAA\x55")
        else:
            f.truncate(size - 7)
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(monotone.MonotoneError) as info:
        env.open(repo)
        try:
            read_all(env)
        finally:
            env.close()
    assert path in str(info.value)


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


def test_crc_off_plain_region_damage_to_ids_is_detected(repo):
    """Without region checksums, damage that breaks what a region's structure says
    (ids in order, first and last as its index entry) is still an error."""
    db = open_db(repo)
    db.execute("ALTER STORAGE main SET (crc false, compression 'none')")
    rng = np.random.default_rng(5)
    db.write_batch(ids=np.arange(0, 3000, 3, dtype=np.uint64),
                   values=rng.integers(0, 256, (1000, 64), dtype=np.uint8))
    db.execute(ALL)
    db.close()
    path = os.path.join(storage_dir(repo), partition_files(repo)[0])
    ids_start = 32  # a region: 32-byte header, then the ids
    for at in (ids_start + 8 * 500 + 6, ids_start + 2):  # a middle id, the first id
        with open(path, "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x40]))
        db = open_db(repo)
        try:
            with pytest.raises(monotone.CorruptionError, match="region 0"):
                read_all(db)
        finally:
            db.close()
        with open(path, "r+b") as f:
            f.seek(at)
            f.write(b)


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
