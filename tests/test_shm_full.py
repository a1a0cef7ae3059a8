"""A full /dev/shm is a clear error, never a SIGBUS, and loses nothing acknowledged.

The writer runs in a private mount namespace with a small tmpfs on /dev/shm,
so the real one is never filled.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

import monotone

WRITER = r"""
import sys
import numpy as np
import monotone
db = monotone.Monotone()
db.execute("SET workers TO 0")
db.open(sys.argv[1])
acked = 0
try:
    for i in range(1000):
        ids = np.arange(i * 1000, (i + 1) * 1000, dtype=np.uint64)
        db.write_batch(ids, np.full((1000, 1000), i % 251, np.uint8))
        acked = i + 1
except monotone.MonotoneError as e:
    print("error", type(e).__name__, e, flush=True)
seen = sum(len(b) for b in db.cursor().batches())
print("acked", acked, "seen", seen, flush=True)
db.close()
"""


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare -m and tmpfs mounts (root)")
def test_full_shm_is_an_error_and_loses_nothing(repo):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    script = f"mount -t tmpfs -o size=40m tmpfs /dev/shm && exec {sys.executable} -c \"$0\" \"$1\""
    out = subprocess.run(["unshare", "-m", "sh", "-c", script, WRITER, repo],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, (out.returncode, out.stderr)  # -7 would be SIGBUS
    lines = out.stdout.splitlines()
    assert lines[0].startswith("error NoSpaceError"), lines
    assert "/dev/shm" in lines[0]
    _, acked, _, seen = lines[1].split()
    acked, seen = int(acked), int(seen)
    assert 0 < acked < 1000
    assert seen == acked * 1000  # the failed batch left nothing behind

    db = monotone.Monotone()
    db.open(repo)  # the real /dev/shm again: the WAL brings back every acknowledged batch
    try:
        batches = list(db.cursor().batches())
        ids = np.concatenate([b.ids for b in batches])
        assert np.array_equal(ids, np.arange(acked * 1000, dtype=np.uint64))
        last = batches[-1]
        assert last.value_data[-1] == (acked - 1) % 251
    finally:
        db.close()
