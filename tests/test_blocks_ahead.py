"""WAL and partition files get their blocks ahead of the bytes written, past their
end, and give back what is left when they are finished: a file's size is always
what was written, so recovery and readers see the same bytes they would without
the blocks ahead."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import ALL, ROOT, open_db

from monotone.shm import libc
from monotone.store import AHEAD

BATCH = 1000
VALUE = 100


def _keeps_size(path) -> bool:
    """Whether this filesystem allocates past a file's end (FALLOC_FL_KEEP_SIZE)."""
    probe = os.path.join(path, "probe")
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        return libc.fallocate is not None and \
            libc.fallocate(fd, libc.FALLOC_FL_KEEP_SIZE, 0, 1 << 20) == 0
    finally:
        os.close(fd)
        os.unlink(probe)


@pytest.fixture
def wal_repo(repo):
    if not _keeps_size(os.path.dirname(repo)):
        pytest.skip("the filesystem under the test repository cannot allocate past a "
                    "file's end")
    return repo


def _wal_files(repo):
    wal = os.path.join(repo, "wal")
    return [os.path.join(wal, name) for name in sorted(os.listdir(wal))
            if name.endswith(".wal")]


def _allocated(path) -> int:
    return os.stat(path).st_blocks * 512


def _batch(i: int):
    ids = np.arange(i * BATCH, (i + 1) * BATCH, dtype=np.uint64)
    return ids, np.full((BATCH, VALUE), i % 251, np.uint8)


def test_blocks_ahead_while_writing_and_none_left_after_close(wal_repo):
    db = open_db(wal_repo)
    try:
        for i in range(5):
            db.write_batch(*_batch(i))
        (path,) = _wal_files(wal_repo)
        size = os.path.getsize(path)
        assert 5 * BATCH * VALUE < size < AHEAD
        assert _allocated(path) >= AHEAD  # a chunk ahead of the records
    finally:
        db.close()
    assert os.path.getsize(path) == size
    assert _allocated(path) < size + 64 * 1024  # the rest was given back


def test_rotated_files_give_back_their_blocks(wal_repo):
    db = open_db(wal_repo, wal_rotate_wm=1 << 20)
    try:
        for i in range(40):  # 4 MiB of records: four rotations
            db.write_batch(*_batch(i))
    finally:
        db.close()
    files = _wal_files(wal_repo)
    assert len(files) >= 4
    for path in files:
        assert _allocated(path) < os.path.getsize(path) + 64 * 1024, path


WRITER = r"""
import os, signal, sys
import numpy as np
import monotone
db = monotone.Monotone()
db.execute("SET workers TO 0")
db.open(sys.argv[1])
for i in range(int(sys.argv[2])):
    ids = np.arange(i * 1000, (i + 1) * 1000, dtype=np.uint64)
    db.write_batch(ids, np.full((1000, 100), i % 251, np.uint8))
print("acked", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("batches", [3, 45])  # inside the first chunk ahead; past it
def test_killed_writer_file_with_blocks_ahead_replays_exactly(wal_repo, batches):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", WRITER, wal_repo, str(batches)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert out.stdout.split() == ["acked"]
    (path,) = _wal_files(wal_repo)
    assert _allocated(path) > os.path.getsize(path) + 64 * 1024  # died with blocks ahead
    db = open_db(wal_repo)
    try:
        batches_read = list(db.cursor().batches())
        ids = np.concatenate([b.ids for b in batches_read])
        assert np.array_equal(ids, np.arange(batches * BATCH, dtype=np.uint64))
        assert batches_read[-1].value_data[-1] == (batches - 1) % 251
    finally:
        db.close()


def test_partition_files_give_back_their_blocks(wal_repo):
    db = open_db(wal_repo)
    try:
        for i in range(60):  # 6 MB of events: one chunk ahead and part of a second
            db.write_batch(*_batch(i))
        db.execute(ALL)
        for i in range(60, 63):  # an append to the file: blocks ahead of it too
            db.write_batch(*_batch(i))
        db.execute(ALL)
        assert sum(len(b) for b in db.cursor().batches()) == 63 * BATCH
    finally:
        db.close()
    files = [os.path.join(d, name) for d, _, names in os.walk(wal_repo) for name in names
             if name.isdigit()]
    assert files
    for path in files:
        assert _allocated(path) < os.path.getsize(path) + 64 * 1024, path
