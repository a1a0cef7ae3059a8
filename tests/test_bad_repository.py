"""A repository where none can be: a path under or at a regular file, one not writable,
a bad path argument, and a /dev/shm that fills up. Each is a MonotoneError (never a
SIGBUS), and nothing is left behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, coordinator_pids
from readback import read_all

import monotone
from monotone import Event
from monotone.protocol import repo_id
from monotone.shm.segment import list_segments

# the repository directory ---------------------------------------------------------------


def test_repository_under_a_regular_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    path = str(blocker / "repo")
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(monotone.MonotoneError, match="repo"):
        env.open(path)
    assert not list_segments(repo_id(path))
    with pytest.raises(monotone.MonotoneError):
        env.write([Event(id=1)])  # not open
    # the same environment can open a good path afterwards
    env.open(str(tmp_path / "good"))
    try:
        env.write([Event(id=1, value=b"x")])
        assert read_all(env) == [(1, b"", b"x")]
    finally:
        env.close()
    assert not coordinator_pids(str(tmp_path / "good"))
    assert not list_segments(repo_id(str(tmp_path / "good")))


def test_repository_path_is_a_regular_file(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"")
    env = monotone.Monotone()
    with pytest.raises(monotone.MonotoneError):
        env.open(str(path))
    assert not list_segments(repo_id(str(path)))


def test_repository_not_writable(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits are not enforced")
    parent = tmp_path / "ro"
    parent.mkdir()
    os.chmod(parent, 0o500)
    try:
        env = monotone.Monotone()
        with pytest.raises(monotone.MonotoneError):
            env.open(str(parent / "repo"))
        with pytest.raises(monotone.MonotoneError):
            env.open(str(parent))
    finally:
        os.chmod(parent, 0o700)


@pytest.mark.parametrize("path", [None, 5, ""])
def test_open_bad_path_argument(path):
    env = monotone.Monotone()
    with pytest.raises(monotone.MonotoneError):
        env.open(path)


# a full /dev/shm --------------------------------------------------------------------------

SHM_CHILD = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import monotone
    from monotone import Event
    db = monotone.Monotone()
    db.execute("SET workers TO 0")
    db.open(sys.argv[1])
    mib = np.full((1, 1024 * 1024), 7, np.uint8)
    written = []
    error = None
    for i in range(200):
        try:
            db.write_batch(ids=np.array([i], np.uint64), values=mib)
        except monotone.MonotoneError as e:
            error = (type(e).__name__, str(e))
            break
        written.append(i)
    ids = [ev.id for ev in db.cursor()]
    ok = all(len(ev.value) == 1024 * 1024 for ev in db.cursor())
    # room comes back when the memtable is refreshed into a file
    db.execute("REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615")
    db.write_batch(ids=np.array([1000], np.uint64), values=mib)
    after = [ev.id for ev in db.cursor()]
    db.close()
    print(json.dumps({"written": written, "error": error, "ids": ids, "ok": ok,
                      "after": after}))
""")


def unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def test_full_dev_shm_is_an_error_not_sigbus(repo):
    """A private, small tmpfs on /dev/shm (mount namespace): the real one is never filled."""
    if not unshare_works():
        pytest.skip("needs unshare -m and mount (root) to give the test its own small /dev/shm")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = ("mount -t tmpfs -o size=32m tmpfs /dev/shm && exec \"$0\" -c \"$1\" \"$2\"")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                             sys.executable, SHM_CHILD, repo],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != -signal.SIGBUS, "killed by SIGBUS on a full /dev/shm"
    assert proc.returncode == 0, err.decode()[-3000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["error"] is not None, "32 MiB of /dev/shm never ran out"
    assert result["error"][0] == "NoSpaceError", result["error"]
    written = result["written"]
    assert written == list(range(len(written))) and len(written) >= 1
    assert result["ids"] == written  # the failed batch is not there, the others are
    assert result["ok"]
    assert result["after"] == written + [1000]
