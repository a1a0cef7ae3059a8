"""Many processes on one repository: concurrent writers and readers with background
refresh, kill -9 of writers, readers, workers and the coordinator, simultaneous opens.

Every event carries (writer, batch) in its id and value, so the final check can
tell for each batch whether it is whole, and every acknowledged batch must be.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess

import numpy as np
import pytest
from conftest import check_no_leaks, coordinator_pids, open_db, run_python

import monotone

BATCH = 400
SPREAD = 10**9  # ids of different writers fall in different partitions
INTERVAL = int(os.environ.get("MONOTONE_TEST_INTERVAL", 20_100))  # some batches cross partitions

WRITER = r"""
import sys
import numpy as np
import monotone
repo, wid, batches, same = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "same"
BATCH, SPREAD, WRITERS = 400, 10**9, 8
db = monotone.Monotone()
db.execute("SET workers TO 2")
db.open(repo)
for b in range(batches):
    if same:   # writers interleave inside the same partitions
        start = (b * WRITERS + wid) * BATCH
    else:
        start = wid * SPREAD + b * BATCH
    ids = np.arange(start, start + BATCH, dtype=np.uint64)
    values = np.empty((BATCH, 8), np.uint8)
    values[:, :4] = np.frombuffer(np.uint32(wid).tobytes(), np.uint8)
    values[:, 4:] = np.frombuffer(np.uint32(b).tobytes(), np.uint8)
    db.write_batch(ids, values)
    print(b, flush=True)
db.close()
print("done", flush=True)
"""

READER = r"""
import sys
import numpy as np
import monotone
repo, scans = sys.argv[1], int(sys.argv[2])
db = monotone.Monotone()
db.execute("SET workers TO 2")
db.open(repo)
for _ in range(scans):
    ids, vals = [], []
    try:
        with db.cursor() as cur:
            for b in cur.batches():
                ids.append(b.ids.copy())
                vals.append(b.value_data.reshape(-1, 8).copy())
    except monotone.CoordinatorError:
        continue  # the coordinator was killed under this read: a clear error, read again
    ids = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
    assert np.all(ids[1:] > ids[:-1]), "out of order"
    if len(ids):
        vals = np.concatenate(vals)
        keys = vals.view(np.uint32).reshape(-1, 2)
        pairs, counts = np.unique(keys, axis=0, return_counts=True)
        assert np.all(counts == 400), f"partial batch seen: {pairs[counts != 400][:3]}"
    print(len(ids), flush=True)
db.close()
print("done", flush=True)
"""


def start(code: str, *args) -> subprocess.Popen:
    return run_python(code, *map(str, args), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                      text=True)


def acks_until(proc: subprocess.Popen, count: int) -> int:
    """Read acknowledgements until count (or the end); return the number acknowledged."""
    acked = 0
    while acked < count:
        line = proc.stdout.readline()
        if not line or line.strip() == "done":
            break
        assert int(line) == acked
        acked += 1
    return acked


def finish(proc: subprocess.Popen, acked: int = 0) -> int:
    """Wait for a process; return its total acknowledgements (those after acked)."""
    out = proc.stdout.read()  # through the buffer acks_until read into (communicate skips it)
    proc.wait(timeout=600)
    lines = [x for x in out.split() if x != "done"]
    assert proc.returncode == 0, f"process failed ({proc.returncode}): {out[-500:]}"
    return acked + len(lines)


def kill(proc: subprocess.Popen) -> int:
    """kill -9; return how many acknowledgements reached us before it died."""
    os.kill(proc.pid, signal.SIGKILL)
    out = proc.stdout.read()
    proc.wait(timeout=60)
    return len([x for x in out.split() if x != "done"])


def children(pid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p))
        except (OSError, ValueError):
            continue
    return out


def worker_pids(repo: str) -> list[int]:
    real = os.path.realpath(repo).encode()
    pids = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"monotone.workers.worker" in args and real in args:
            pids.append(int(pid))
    return pids


def verify(repo: str, acked: dict[int, int], same: bool) -> dict[tuple[int, int], int]:
    """Every acknowledged batch whole; no batch partial; return the batches present."""
    db = monotone.Monotone()  # whatever workers the running coordinator has
    db.open(repo)
    try:
        ids = [b.ids.copy() for b in db.cursor().batches()]
        vals = [b.value_data.reshape(-1, 8).copy() for b in db.cursor().batches()]
    finally:
        db.close()
    ids = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
    assert np.all(ids[1:] > ids[:-1])
    keys = np.concatenate(vals).view(np.uint32).reshape(-1, 2) if len(ids) else np.zeros((0, 2))
    present = {}
    for (w, b), n in zip(*np.unique(keys, axis=0, return_counts=True)):
        present[(int(w), int(b))] = int(n)
    partial = {k: n for k, n in present.items() if n != BATCH}
    assert not partial, f"a partial batch survived: {sorted(partial.items())[:5]}"
    for w, count in acked.items():
        for b in range(count):
            assert (w, b) in present, f"acknowledged batch {b} of writer {w} is missing"
    # ids and values agree
    w, b = keys[:, 0].astype(np.uint64), keys[:, 1].astype(np.uint64)
    start = (b * 8 + w) * BATCH if same else w * SPREAD + b * BATCH
    assert np.all(ids - start < BATCH)
    return present


@pytest.mark.parametrize("same", [False, True], ids=["own-partitions", "same-partitions"])
def test_writers_and_readers_with_background_refresh(repo, same):
    db = open_db(repo, interval=INTERVAL, workers=2)
    db.execute("ALTER STORAGE main SET (refresh_wm 64KiB)")  # refresh often, in the background
    try:
        writers = [start(WRITER, repo, w, 120, "same" if same else "own") for w in range(3)]
        readers = [start(READER, repo, 6) for _ in range(2)]
        acked = {w: finish(p) for w, p in enumerate(writers)}
        for r in readers:
            finish(r)
        assert acked == {0: 120, 1: 120, 2: 120}
        present = verify(repo, acked, same)
        assert len(present) == 360
    finally:
        db.close()


def test_two_processes_open_a_new_repository_at_once(repo):
    code = ("import sys, monotone\n"
            "db = monotone.Monotone(); db.open(sys.argv[1])\n"
            "print(db.write([monotone.Event(value=b'x')])[0]); db.close()\n")
    procs = [run_python(code, repo, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(o) for o in outs) == [0, 1, 2, 3]  # four serial ids, none twice
    db = open_db(repo)
    try:
        assert [e.id for e in db.cursor()] == [0, 1, 2, 3]
    finally:
        db.close()


@pytest.mark.parametrize("victim", ["writer", "reader", "worker", "coordinator"])
def test_kill_9_in_the_middle(repo, victim):
    rounds = 2
    rng = random.Random(victim)
    acked: dict[int, int] = {}
    for r in range(rounds):
        holder = open_db(repo, interval=INTERVAL, workers=2)
        holder.execute("ALTER STORAGE main SET (refresh_wm 32KiB)")
        writers = {w: start(WRITER, repo, w, 60, "own") for w in (2 * r, 2 * r + 1)}
        reader = start(READER, repo, 4)
        try:
            first = acks_until(writers[2 * r], rng.randint(5, 40))
            if victim == "writer":
                acked[2 * r] = first + kill(writers.pop(2 * r))
            elif victim == "reader":
                kill(reader)
                reader = None
            elif victim == "worker":
                for pid in worker_pids(repo)[:1]:
                    os.kill(pid, signal.SIGKILL)
            else:
                for pid in coordinator_pids(repo):
                    os.kill(pid, signal.SIGKILL)
            for w, p in writers.items():
                acked[w] = finish(p, first if w == 2 * r else 0)
            if reader is not None:
                finish(reader)
        finally:
            for p in list(writers.values()) + ([reader] if reader else []):
                if p.poll() is None:
                    p.kill()
                    p.wait()
            holder.close()
        # nothing wedged: every surviving writer finished all its batches
        for w in writers:
            assert acked[w] == 60, (w, acked, first)
    present = verify(repo, acked, False)
    assert all((w, b) in present for w, n in acked.items() for b in range(n))


def test_a_lock_held_by_a_killed_process_is_released(repo):
    db = open_db(repo)
    try:
        db.write([monotone.Event(id=1, value=b"a")])
        # another process takes partition 0's lock and dies holding it
        code = ("import sys\nfrom monotone.repository import Layout\n"
                "from monotone.shm.locks import LockFile, PARTITIONS\n"
                "locks = LockFile(Layout(sys.argv[1]).lock)\n"
                "locks.lock(PARTITIONS + int(sys.argv[2]))\n"
                "print('locked', flush=True)\nsys.stdin.read()\n")
        slot = int(db._session.pmap.find(0))
        holder = run_python(code, repo, str(slot), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
        assert holder.stdout.readline().strip() == "locked"
        assert db._session.locks.held(1024 + slot)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        db.write([monotone.Event(id=2, value=b"b")])  # would block forever otherwise
        assert [e.value for e in db.cursor()] == [b"a", b"b"]
    finally:
        db.close()


def test_memory_limit_error_and_block(repo):
    db = open_db(repo, mm_limit="true", mm_limit_wm="1MiB", mm_limit_behaviour="'error'")
    try:
        values = np.zeros((1000, 100), np.uint8)
        db.write_batch(np.arange(1000, dtype=np.uint64), values)
        with pytest.raises(monotone.MonotoneError, match="memory limit"):
            for i in range(1, 20):
                db.write_batch(np.arange(i * 1000, i * 1000 + 1000, dtype=np.uint64), values)
        written = sum(len(b) for b in db.cursor().batches())
        assert written % 1000 == 0 and written < 20_000
    finally:
        db.close()
    db = open_db(repo + "2", mm_limit="true", mm_limit_wm="1MiB", mm_limit_behaviour="'block'")
    try:
        for i in range(20):  # blocks while memtables are refreshed, then goes on
            db.write_batch(np.arange(i * 1000, i * 1000 + 1000, dtype=np.uint64), values)
        assert sum(len(b) for b in db.cursor().batches()) == 20_000
        assert json.loads(db.execute("SHOW MEMORY"))["limit_hits"] > 0
    finally:
        db.close()
    check_no_leaks(repo + "2")


def test_embedded_coordinator_and_workers_stop_with_the_last_client(repo):
    a = open_db(repo, workers=2, interval=10_000)
    b = open_db(repo, workers=2)
    (coordinator,) = coordinator_pids(repo)
    assert json.loads(a.execute("SHOW WORKERS"))["started"] == 1  # the rest on demand
    for i, db in enumerate((a, b, a)):
        db.write_batch(np.arange(i * 10_000, i * 10_000 + 10, dtype=np.uint64),
                       np.zeros((10, 10), np.uint8))
    a.execute("CHECKPOINT")  # three partitions: two jobs wait, a second worker starts
    assert json.loads(a.execute("SHOW WORKERS"))["started"] == 2
    assert len(children(coordinator)) == 2  # (a new process's cmdline may still be empty)
    a.close()
    assert len(coordinator_pids(repo)) == 1  # b still uses it
    b.close()
    assert coordinator_pids(repo) == [] and worker_pids(repo) == []


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(5))
def test_kill_9_soak(repo, round_):
    for victim in ("writer", "worker", "coordinator", "reader"):
        test_kill_9_in_the_middle(f"{repo}-{victim}", victim)
