"""config.json and storage directories: changes are checked and applied before they
are written; a damaged or edited file stops the open and changes nothing; the
coordinator leaves no shared memory on any way out."""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ALL, ROOT, coordinator_pids, open_db

import monotone
from monotone import faults
from monotone.protocol import repo_id
from monotone.shm.segment import list_segments


def filled_and_closed(repo, n=3000):
    db = open_db(repo, interval=1000)
    db.write_batch(ids=np.arange(n, dtype=np.uint64), values=[b"v%d" % i for i in range(n)])
    db.execute("REFRESH PARTITIONS BETWEEN 0 AND 999")  # files and WAL both hold events
    db.close()
    return [(i, b"v%d" % i) for i in range(n)]


def everything(repo):
    db = open_db(repo)
    try:
        with db.cursor() as cur:
            return [(e.id, e.value) for e in cur]
    finally:
        db.close()


def config(repo):
    with open(os.path.join(repo, "config.json")) as f:
        return json.load(f)


def snapshot_files(repo):
    """Every file of the repository with its bytes (but the log)."""
    out = {}
    for dirpath, _, names in os.walk(repo):
        for name in names:
            path = os.path.join(dirpath, name)
            if name not in ("log", "monotone.lock"):
                out[os.path.relpath(path, repo)] = open(path, "rb").read()
    return out


@pytest.mark.parametrize("path", ["monotone.lock", "config.json", "wal/x\0y", "bad\udcff\ud800",
                                  "s3://bucket/dir", "file:///tmp/x"])
def test_bad_storage_path_is_refused_and_nothing_persisted(repo, path):
    want = filled_and_closed(repo)
    db = open_db(repo)
    try:
        db.execute("CREATE STORAGE side")
        before = config(repo)
        with pytest.raises(monotone.MonotoneError) as info:
            db.execute(f"ALTER STORAGE side SET (path '{path}')")
        if "://" in path:
            assert "CREATE CLOUD" in str(info.value)
        assert config(repo) == before
        with pytest.raises(monotone.MonotoneError):
            db.execute(f"CREATE STORAGE other (path '{path}')")
        assert config(repo) == before
        assert json.loads(db.execute("SHOW STORAGE side"))["config"]["path"] == ""
        db.execute("CHECKPOINT")  # the repository goes on working
    finally:
        db.close()
    assert everything(repo) == want


def test_storage_path_change_makes_the_directory_first(repo, tmp_path):
    db = open_db(repo)
    try:
        db.execute("CREATE STORAGE side")
        target = str(tmp_path / "elsewhere")
        db.execute(f"ALTER STORAGE side SET (path '{target}')")
        uuid = json.loads(db.execute("SHOW STORAGE side"))["config"]["uuid"]
        assert os.path.isdir(os.path.join(target, uuid))
        db.execute("ALTER PIPELINE SET side")
        db.write([monotone.Event(id=1, value=b"x")])
        db.execute(ALL)
        assert os.listdir(os.path.join(target, uuid))
    finally:
        db.close()


@pytest.mark.parametrize("edit", ["rename-main", "duplicate-storage", "unknown-name", "uuid",
                                  "main-uuid", "not-json", "not-an-object", "bad-type",
                                  "pipeline-unknown", "truncated"])
def test_damaged_config_refuses_to_open_and_destroys_nothing(repo, edit):
    want = filled_and_closed(repo)
    path = os.path.join(repo, "config.json")
    original = open(path, "rb").read()
    data = json.loads(original)
    if edit == "rename-main":
        data["storages"][0]["name"] = "renamed"
    elif edit == "duplicate-storage":
        data["storages"].append(dict(data["storages"][0], name="copy", id=5))
    elif edit == "unknown-name":
        data["intervall"] = 10
    elif edit == "uuid":
        data["uuid"] = "not-a-uuid"
    elif edit == "main-uuid":
        data["storages"][0]["uuid"] = "00000000-0000-0000-0000-000000000001"
        data["uuid"] = "00000000-0000-0000-0000-000000000001"
    elif edit == "bad-type":
        data["storages"][0]["crc"] = "yes"
    elif edit == "pipeline-unknown":
        data["pipeline"] = [{"name": "nowhere", "partitions": -1, "size": -1, "events": -1,
                             "duration": -1}]
    text = json.dumps(data)
    if edit == "not-json":
        text = text[:-1] + "]"
    elif edit == "not-an-object":
        text = "[1, 2]"
    elif edit == "truncated":
        text = text[:len(text) // 2]
    with open(path, "w") as f:
        f.write(text)
    files = snapshot_files(repo)
    for _ in range(2):  # and again: a failed open must not have "repaired" anything
        env = monotone.Monotone()
        env.execute("SET workers TO 0")
        with pytest.raises(monotone.MonotoneError) as info:
            env.open(repo)
        assert "config.json" in str(info.value) or "directory" in str(info.value)
        assert snapshot_files(repo) == files
    with open(path, "wb") as f:
        f.write(original)
    assert everything(repo) == want


def test_missing_config_with_data_refuses_to_open(repo):
    want = filled_and_closed(repo)
    path = os.path.join(repo, "config.json")
    os.rename(path, path + ".saved")
    env = monotone.Monotone()
    with pytest.raises(monotone.MonotoneError, match="config.json is missing"):
        env.open(repo)
    assert not os.path.exists(path)
    os.rename(path + ".saved", path)
    assert everything(repo) == want


def test_missing_storage_directory_refuses_to_open(repo):
    """A storage directory on a volume not mounted: an error, not a new empty storage."""
    want = filled_and_closed(repo)
    uuid = config(repo)["uuid"]
    os.rename(os.path.join(repo, uuid), os.path.join(repo, "away"))
    env = monotone.Monotone()
    with pytest.raises(monotone.MonotoneError, match="is missing"):
        env.open(repo)
    assert not os.path.exists(os.path.join(repo, uuid))
    os.rename(os.path.join(repo, "away"), os.path.join(repo, uuid))
    assert everything(repo) == want


@pytest.mark.parametrize("uuid", ["x" * 300, "a\0b", "1234"])
def test_set_uuid_must_be_a_uuid(repo, uuid):
    env = monotone.Monotone()
    with pytest.raises(monotone.ConfigError, match="is not a uuid"):
        env.execute(f"SET uuid TO '{uuid}'")
    env.open(repo)
    env.close()


# the coordinator's ways out ---------------------------------------------------------------


def wait_exit(pid, timeout=60.0):
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], timeout)[0], f"process {pid} did not exit"
    finally:
        os.close(fd)


STARTER = """
import sys
import monotone
db = monotone.Monotone()
db.open(sys.argv[1])
"""


def test_client_killed_while_its_coordinator_starts_leaves_nothing(repo):
    """The coordinator finds whoever started it gone when it says "ready": it stops,
    removing its shared memory."""
    filled_and_closed(repo)
    env = dict(os.environ, PYTHONPATH=ROOT, **{faults.ENV: "recovery.files:delay=1.0"})
    client = subprocess.Popen([sys.executable, "-c", STARTER, repo], env=env)
    pids = []
    while not pids:  # the coordinator appears, then sits in recovery for a second
        assert client.poll() is None, "the client ended before its coordinator started"
        pids = coordinator_pids(repo)
    client.kill()
    client.wait()
    wait_exit(pids[0])
    assert list_segments(repo_id(repo)) == []


def test_repository_directory_removed_while_open(tmp_path):
    repo = str(tmp_path / "gone")
    db = open_db(repo)
    db.write([monotone.Event(id=1, value=b"x")])
    pids = coordinator_pids(repo)
    shutil.rmtree(repo)
    db.close()
    wait_exit(pids[0])
    assert list_segments(repo_id(repo)) == []


def test_open_refused_by_a_damaged_wal_leaves_nothing(repo):
    db = open_db(repo)
    for i in range(3):
        db.write([monotone.Event(id=i, value=b"x" * 100)])
    db.close()
    wal = os.path.join(repo, "wal")
    path = os.path.join(wal, os.listdir(wal)[0])
    with open(path, "r+b") as f:
        f.seek(60)
        f.write(b"\xff")
    env = monotone.Monotone()
    with pytest.raises(monotone.CorruptionError):
        env.open(repo)
    assert list_segments(repo_id(repo)) == [] and coordinator_pids(repo) == []


# who may use a repository --------------------------------------------------------------


def test_config_json_is_readable_by_its_owner_only(repo):
    db = open_db(repo)
    try:
        db.execute("CREATE STORAGE secret (encryption 'aes')")
        db.execute("CREATE CLOUD c (type 's3', url 'localhost:1', secret_key 'shh')")
    finally:
        db.close()
    mode = os.stat(os.path.join(repo, "config.json")).st_mode & 0o777
    assert mode == 0o600, oct(mode)


def test_a_request_that_is_no_message_drops_the_client_only(repo):
    import socket

    from monotone import protocol
    db = open_db(repo)
    try:
        for garbage in ({"op": "nope"}, {"op": "Execute", "txt": "SHOW ALL"}, [1, 2],
                        b"\xff\xff\xff\x7f"):  # the last announces 2 GiB: never read
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(os.path.join(repo, "monotone.sock"))
            if isinstance(garbage, dict):
                protocol.send(sock, garbage)
            else:
                sock.sendall(garbage if isinstance(garbage, bytes) else b"\x05\x00\x00\x00[1, 2")
            assert protocol.recv(sock) is None  # closed, no answer
            sock.close()
        assert json.loads(db.execute("SHOW interval")) == 3_000_000
    finally:
        db.close()


SHADOWS = """
import sys
import monotone
db = monotone.Monotone()
db.open(sys.argv[1])
db.write([monotone.Event(id=1, value=b"x")])
print(db.execute("SHOW ssn"), flush=True)
db.close()
"""


def test_open_from_a_directory_with_its_own_workers_and_shm(repo, tmp_path):
    """A user's own workers/, shm/ and scripts/ packages in the working directory
    (or on PYTHONPATH) never stand in for the engine's."""
    work = tmp_path / "project"
    for name in ("workers", "shm", "scripts", "coordinator"):
        (work / name).mkdir(parents=True)
        (work / name / "__init__.py").write_text("raise ImportError('the user package')\n")
    (work / "workers" / "coordinator.py").write_text("raise SystemExit(7)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(work), ROOT]))
    out = subprocess.run([sys.executable, "-c", SHADOWS, repo], cwd=work, env=env,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.strip() == b"2"  # ssn moved past the id written


def test_a_storage_change_waits_for_the_partition_work_it_would_straddle(repo, monkeypatch):
    """DROP STORAGE during a MOVE into that storage: the drop waits for the move (the
    CATALOG lock), then finds the storage in use. It never lands in between, which
    would leave the moved partition in a storage that no longer exists."""
    import threading
    monkeypatch.setenv(faults.ENV, "refresh_1:delay=1.0")  # the merge, in the worker
    db = open_db(repo, workers=1)
    mover = monotone.Monotone()
    mover.open(repo)
    try:
        db.execute("CREATE STORAGE x")
        db.write_batch(ids=np.arange(100, dtype=np.uint64), values=[b"v"] * 100)
        moved: list = []
        thread = threading.Thread(target=lambda: moved.append(
            mover.execute("MOVE PARTITION 0 INTO x")))
        thread.start()
        while not json.loads(db.execute("SHOW WORKERS"))["busy"]:
            assert thread.is_alive(), "the move ended before it was seen running"
        with pytest.raises(monotone.MonotoneError, match="has partitions"):
            db.execute("DROP STORAGE x")
        thread.join()
        assert moved == [None]
        assert json.loads(db.execute("SHOW PARTITION 0"))["storage"] == "x"
        with db.cursor() as cur:
            assert sum(1 for _ in cur) == 100
    finally:
        mover.close()
        db.close()
