"""WAL and partition files get their blocks ahead of the bytes written, past their
end, and give back what is left when they are finished: a file's size is always
what was written, so recovery and readers see the same bytes they would without
the blocks ahead."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from conftest import ALL, ROOT, open_db

from monotone.errors import CoordinatorError
from monotone.shm import libc
from monotone.store import AHEAD

BATCH = 1000
VALUE = 100


def _keeps_size(path) -> bool:
    """Whether this filesystem allocates past a file's end (FALLOC_FL_KEEP_SIZE) and
    counts what it allocated in st_blocks."""
    probe = os.path.join(path, "probe")
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        return libc.fallocate is not None and \
            libc.fallocate(fd, libc.FALLOC_FL_KEEP_SIZE, 0, 1 << 20) == 0 and \
            os.fstat(fd).st_blocks * 512 >= 1 << 20
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


def _random_batch(i: int):
    ids = np.arange(i * BATCH, (i + 1) * BATCH, dtype=np.uint64)
    return ids, np.random.default_rng(i).integers(0, 256, (BATCH, VALUE), dtype=np.uint8)


def _partition_files(repo):
    return [os.path.join(d, name) for d, _, names in os.walk(repo) for name in names
            if name.isdigit()]


def test_partition_files_give_back_their_blocks(wal_repo):
    db = open_db(wal_repo)  # lz4 does not shrink random values: 6 MB of file
    try:
        for i in range(60):
            db.write_batch(*_random_batch(i))
        db.execute(ALL)
        (path,) = _partition_files(wal_repo)
        first = os.path.getsize(path)
        assert first > 60 * BATCH * VALUE > AHEAD
        assert _allocated(path) < first + 64 * 1024
        for i in range(60, 63):  # appended to the same file, blocks ahead of it too
            db.write_batch(*_random_batch(i))
        db.execute(ALL)
        assert _partition_files(wal_repo) == [path]
        assert os.path.getsize(path) > first + 3 * BATCH * VALUE
        assert _allocated(path) < os.path.getsize(path) + 64 * 1024
        assert sum(len(b) for b in db.cursor().batches()) == 63 * BATCH
    finally:
        db.close()


def test_an_append_kept_after_a_crash_gives_back_its_blocks(wal_repo, monkeypatch):
    """The coordinator (the merge runs in it with workers 0) killed once an append's
    footer is written, before the blocks past the end are freed: the append counts,
    and the next open frees them."""
    db = open_db(wal_repo)
    try:
        for i in range(60):
            db.write_batch(*_random_batch(i))
        db.execute(ALL)
    finally:
        db.close()
    (path,) = _partition_files(wal_repo)
    first = os.path.getsize(path)
    monkeypatch.setenv("MONOTONE_FAULTS", "append.footer:kill@1")
    db = open_db(wal_repo)
    monkeypatch.delenv("MONOTONE_FAULTS")
    try:
        for i in range(60, 63):
            db.write_batch(*_random_batch(i))
        with pytest.raises(CoordinatorError):
            db.execute(ALL)
    finally:
        db.close()
    assert os.path.getsize(path) > first  # the append stayed, whole
    assert _allocated(path) > os.path.getsize(path) + 64 * 1024  # with its blocks ahead
    db = open_db(wal_repo)
    try:
        assert sum(len(b) for b in db.cursor().batches()) == 63 * BATCH
    finally:
        db.close()
    assert _allocated(path) < os.path.getsize(path) + 64 * 1024


NEARLY_FULL = r"""
import os, sys
from monotone.store import NEVER, allocate_ahead
mount = sys.argv[1]
st = os.statvfs(mount)
free = st.f_bavail * st.f_frsize
filler = os.open(os.path.join(mount, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
os.write(filler, b"\0" * (free - 3 * 1024 * 1024))  # 3 MiB left: less than a chunk
os.fsync(filler)
fd = os.open(os.path.join(mount, "file"), os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"x" * 100_000)
ahead = allocate_ahead(fd, 100_000, 100_000, 200_000)
print("never" if ahead == NEVER else ahead, os.fstat(fd).st_blocks * 512,
      os.fstat(fd).st_size)
os.write(fd, b"y" * 2_500_000)  # the space the failed call took was given back
print(os.fstat(fd).st_size)
"""


def _loop_mount() -> bool:
    if shutil.which("unshare") is None or shutil.which("mkfs.ext4") is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        image = os.path.join(d, "img")
        with open(image, "wb") as f:
            f.truncate(16 << 20)
        if subprocess.run(["mkfs.ext4", "-q", image], capture_output=True).returncode:
            return False
        os.mkdir(os.path.join(d, "m"))
        probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -o loop {image} {d}/m"],
                               capture_output=True)
        return probe.returncode == 0


@pytest.mark.skipif(not _loop_mount(), reason="needs unshare -m, mkfs.ext4 and loop mounts "
                    "(root with loop devices): a small ext4 to fill")
def test_a_disk_too_full_for_a_chunk_keeps_nothing_ahead(tmp_path):
    image = tmp_path / "img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True, capture_output=True)
    mount = tmp_path / "m"
    mount.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = f"mount -o loop {image} {mount} && exec {sys.executable} -c \"$0\" {mount}"
    out = subprocess.run(["unshare", "-m", "sh", "-c", script, NEARLY_FULL],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    ahead, allocated, size = first.split()
    assert ahead == "never"  # no more asked for this file
    assert int(size) == 100_000 and int(allocated) < 200_000  # what the call took, freed
    assert int(second) == 2_600_000
