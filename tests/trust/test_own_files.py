"""The repository's own boundary, as one user sees it: files private to their
owner, links never followed, files the engine did not make never used, waits
with a deadline, shared-memory names nobody can take first, paths Linux cannot
use refused. (Attacks by another account: test_neighbour.py.)"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, open_db
from process_kill import wait_dead

import monotone
from monotone import Event
from monotone.shm import private
from monotone.shm.segment import PREFIX, SHM_DIR
from trust.stranger import NEEDS_ROOT, free_uid

ALL = "BETWEEN 0 AND 18446744073709551615"


def modes(top: str) -> dict[str, int]:
    """Every file and directory under top: its permission bits."""
    out = {}
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, top)] = stat.S_IMODE(os.lstat(path).st_mode)
    return out


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_every_file_and_directory_is_private_to_its_owner(repo, tmp_path, umask_022):
    """With umask 022, a repository used in every way (a WAL, an encrypted storage
    with its own path, a mock cloud with uploads, stubs, a download, the log)
    holds only 0600 files in 0700 directories."""
    db = open_db(repo, wal_rotate_wm=4096)
    try:
        db.execute("CREATE CLOUD c (type 'mock', secret_key 'shh')")
        db.execute(f"CREATE STORAGE s (path '{tmp_path / 'elsewhere'}', cloud 'c', "
                   "encryption 'aes', cloud_drop_local false)")
        db.execute("ALTER PIPELINE SET s")
        for i in range(20):
            db.write_batch(ids=np.arange(i * 100, i * 100 + 100, dtype=np.uint64),
                           values=[b"v" * 50] * 100)
        db.execute(f"REFRESH PARTITIONS {ALL}")
        db.execute(f"DROP PARTITIONS {ALL} ON STORAGE")
        db.execute(f"DOWNLOAD PARTITIONS {ALL}")
        db.write([Event(id=5000, value=b"in the WAL")])
        found = {**modes(repo), **{"elsewhere/" + k: v
                                   for k, v in modes(str(tmp_path / "elsewhere")).items()}}
    finally:
        db.close()
    assert any(name.startswith("wal/") for name in found), found
    assert any(name.endswith(".cloud") for name in found), found
    assert any("/mock/" in name for name in found), found
    loose = {name: oct(mode) for name, mode in found.items()
             if mode != (0o700 if os.path.isdir(os.path.join(repo, name)) or
                         os.path.isdir(os.path.join(str(tmp_path), name)) else 0o600)}
    assert not loose, loose
    assert stat.S_IMODE(os.stat(repo).st_mode) == 0o700


def test_files_of_an_older_repository_are_made_private_at_open(repo):
    db = open_db(repo)
    db.write([Event(id=1, value=b"x")])
    db.close()
    for name in ("log", "config.json", "monotone.lock"):
        os.chmod(os.path.join(repo, name), 0o644)
    open_db(repo).close()
    assert {name: oct(mode) for name, mode in modes(repo).items()
            if not os.path.isdir(os.path.join(repo, name)) and mode != 0o600} == {}


@pytest.mark.parametrize("name", ["config.json.incomplete", "log", "monotone.lock",
                                  "config.json"])
def test_a_link_at_an_engine_name_is_not_followed(repo, tmp_path, name):
    """Even a link of the owner's own: the engine follows no link it did not make."""
    target = tmp_path / "target"
    target.write_text("keep me\n")
    os.makedirs(repo, mode=0o700)
    os.symlink(target, os.path.join(repo, name))
    with pytest.raises(monotone.AccessDenied, match=f"{name} is a symbolic link"):
        open_db(repo)
    assert target.read_text() == "keep me\n"


def wal_of(repo: str) -> list[str]:
    return sorted(n for n in os.listdir(os.path.join(repo, "wal")) if n.endswith(".wal"))


def test_a_wal_file_of_another_repository_is_refused_not_replayed(tmp_path):
    """A WAL file copied from another repository (same owner): its start record names
    that repository, so it is neither replayed nor removed, and the error names it."""
    mine, other = str(tmp_path / "mine"), str(tmp_path / "other")
    for path, value in ((mine, b"mine"), (other, b"forged")):
        db = open_db(path)
        db.write([Event(id=7 if value == b"mine" else 8, value=value)])
        db.close()
    foreign = os.path.join(mine, "wal", "00000000000000009999.wal")
    shutil.copy(os.path.join(other, "wal", wal_of(other)[-1]), foreign)
    with pytest.raises(monotone.MonotoneError, match="belongs to another repository") as e:
        open_db(mine)
    assert foreign in str(e.value)
    assert os.path.exists(foreign)  # left where it is
    os.rename(foreign, str(tmp_path / "moved-away"))
    db = open_db(mine)
    try:
        with db.cursor() as cur:
            assert [(ev.id, ev.value) for ev in cur] == [(7, b"mine")]
    finally:
        db.close()


def test_a_link_in_the_wal_directory_is_refused(repo, tmp_path):
    db = open_db(repo)
    db.write([Event(id=1, value=b"x")])
    db.close()
    outside = tmp_path / "outside.wal"
    outside.write_bytes(b"\0" * 64)
    os.symlink(outside, os.path.join(repo, "wal", "00000000000000009999.wal"))
    with pytest.raises(monotone.AccessDenied, match="symbolic link"):
        open_db(repo)
    assert outside.read_bytes() == b"\0" * 64


@pytest.mark.skipif(os.geteuid() != 0, reason=NEEDS_ROOT + " (to give a file to another uid)")
@pytest.mark.parametrize("what", ["wal", "partition"])
def test_a_file_of_another_uid_is_never_used(repo, what):
    """A WAL file or a partition file owned by another uid (only root can make one
    here): the open fails naming the file and its owner; nothing is read from it."""
    db = open_db(repo)
    db.write([Event(id=1, value=b"x")])
    if what == "partition":
        db.execute(f"REFRESH PARTITIONS {ALL}")
    db.close()
    if what == "wal":
        path = os.path.join(repo, "wal", wal_of(repo)[-1])
    else:
        storage = next(d for d in os.listdir(repo) if len(d) == 36)
        path = os.path.join(repo, storage, os.listdir(os.path.join(repo, storage))[0])
    uid = free_uid()
    os.chown(path, uid, uid)
    with pytest.raises(monotone.AccessDenied) as e:
        open_db(repo)
    assert path in str(e.value) and f"uid {uid}" in str(e.value)
    assert os.stat(path).st_uid == uid  # neither removed nor replaced


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_repository_open_to_others_is_refused_unless_allowed(repo, mode):
    os.makedirs(repo)
    os.chmod(repo, mode)
    with pytest.raises(monotone.AccessDenied, match="strict_modes") as e:
        open_db(repo)
    assert "writable by" in str(e.value) and repo in str(e.value)
    db = open_db(repo, strict_modes="false")  # the documented way to allow it
    try:
        db.write([Event(id=1, value=b"x")])
        assert stat.S_IMODE(os.stat(os.path.join(repo, "wal")).st_mode) == 0o700
    finally:
        db.close()


def test_a_repository_whose_parent_others_may_swap_is_refused(tmp_path):
    parent = tmp_path / "open"
    parent.mkdir()
    os.chmod(parent, 0o777)  # not sticky: anyone could rename the repository away
    with pytest.raises(monotone.AccessDenied, match="not sticky"):
        open_db(str(parent / "repo"))
    os.chmod(parent, 0o1777)  # as /tmp: only the owner renames its entries
    open_db(str(parent / "repo")).close()


@pytest.mark.skipif(os.geteuid() != 0, reason=NEEDS_ROOT + " (to give a directory away)")
def test_a_repository_of_another_uid_is_refused(repo):
    os.makedirs(repo, mode=0o700)
    uid = free_uid()
    os.chown(repo, uid, uid)
    with pytest.raises(monotone.AccessDenied, match=f"belongs to uid {uid}"):
        open_db(repo)
    assert os.listdir(repo) == []


# bounded waits -------------------------------------------------------------------------

HOLDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from monotone.shm.locks import LockFile
lock = LockFile(sys.argv[2])
for byte in map(int, sys.argv[3:]):
    lock.lock(byte)
print("held", flush=True)
time.sleep(600)
"""


class Holder:
    """Another process of ours holding lock bytes of a repository's lock file."""

    def __init__(self, repo: str, *bytes_: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, ROOT,
                                      os.path.join(repo, "monotone.lock"),
                                      *map(str, bytes_)], stdout=subprocess.PIPE)
        assert self.proc.stdout.readline() == b"held\n"

    def __enter__(self) -> "Holder":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.mark.parametrize("byte", ["sequence", "partition"])
def test_a_write_waits_for_a_held_lock_no_longer_than_lock_timeout(repo, byte):
    """A lock another process holds and never lets go of (stopped, say): the write
    fails after lock_timeout, naming the lock and the process holding it."""
    from monotone.shm.locks import PARTITIONS, SEQUENCE
    db = open_db(repo, lock_timeout="300ms")
    try:
        db.write([Event(id=1, value=b"x")])
        with Holder(repo, SEQUENCE if byte == "sequence" else PARTITIONS) as holder:
            with pytest.raises(monotone.LockTimeout) as e:  # a deadline, not a hang
                db.write([Event(id=2, value=b"y")])
            assert f"pid {holder.proc.pid}" in str(e.value)
            assert ("sequence lock" if byte == "sequence" else "partition slot 0") in \
                str(e.value)
        db.write([Event(id=2, value=b"y")])  # usable again once it is let go of
        with db.cursor() as cur:
            assert [ev.id for ev in cur] == [1, 2]
    finally:
        db.close()


def test_an_open_waits_for_a_stuck_start_no_longer_than_its_deadline(repo):
    """Another process holds START (it is starting the coordinator, and stopped):
    open() fails after its deadline, naming that process."""
    from monotone.shm.locks import START
    os.makedirs(repo, mode=0o700)
    with Holder(repo, START) as holder:
        with pytest.raises(monotone.LockTimeout, match=f"pid {holder.proc.pid}"):
            open_db(repo, lock_timeout="100ms")
    open_db(repo).close()


def test_a_coordinator_that_stops_answering_is_not_waited_for_forever(repo):
    """The coordinator is stopped (SIGSTOP) while a client is open: a new open()
    gets a clear error within its deadline instead of hanging."""
    import signal

    from conftest import coordinator_pids
    db = open_db(repo)
    try:
        (pid,) = coordinator_pids(repo)
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(monotone.CoordinatorError, match="did not answer"):
                open_db(repo, lock_timeout="500ms")
        finally:
            os.kill(pid, signal.SIGCONT)
        assert json.loads(db.execute("SHOW serial")) is True
    finally:
        db.close()
    wait_dead(pid)  # it stops once it has read the refused client's goodbye too


# rendezvous ------------------------------------------------------------------------------


def test_something_else_at_the_socket_name_is_not_replaced(repo):
    os.makedirs(repo, mode=0o700)
    with open(os.path.join(repo, "monotone.sock"), "w") as f:
        f.write("not a socket\n")
    with pytest.raises(monotone.AccessDenied, match="monotone.sock is not a socket"):
        open_db(repo)
    with open(os.path.join(repo, "monotone.sock")) as f:
        assert f.read() == "not a socket\n"


def test_the_socket_of_a_killed_coordinator_is_replaced(repo):
    from conftest import coordinator_pids
    db = open_db(repo)
    db.write([Event(id=1, value=b"x")])
    (pid,) = coordinator_pids(repo)
    os.kill(pid, 9)
    db.close()
    assert os.path.exists(os.path.join(repo, "monotone.sock"))  # left behind
    db = open_db(repo)
    try:
        with db.cursor() as cur:
            assert [ev.id for ev in cur] == [1]
    finally:
        db.close()
    assert not os.path.exists(os.path.join(repo, "monotone.sock"))  # a clean stop


def our_segments(repo: str) -> list[str]:
    from monotone.protocol import repo_id
    return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(f"{PREFIX}{repo_id(repo)}."))


def test_a_memtable_name_taken_first_is_skipped(repo):
    """Someone made the next memtable's segment before the coordinator (only a process
    that can read the partition map's key can tell its name): the name is skipped,
    the partition gets another, and the write goes through."""
    import posix_ipc
    db = open_db(repo)
    try:
        db.write([Event(id=1, value=b"x")])
        layout, pmap = db._session.layout, db._session.pmap
        names = our_segments(repo)
        assert {n.split(".")[2] for n in names} == {layout.token} and len(layout.token) == 16
        taken = [layout.memtable(pmap.segno + i) for i in (1, 2)]
        assert not any(name[1:] in names for name in taken)
        for name in taken:
            posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=4096).close_fd()
        db.write([Event(id=10_000_000, value=b"y")])  # a new partition, a new memtable
        assert pmap.segno > max(int(n.split(".mt")[1].split(".")[0]) for n in names
                                if ".mt" in n) + 2
        with db.cursor() as cur:
            assert [ev.id for ev in cur] == [1, 10_000_000]
    finally:
        db.close()


def test_memtable_names_tell_nothing_of_the_next(repo):
    """The name of one memtable does not give the next: a keyed tag, not a count."""
    db = open_db(repo)
    try:
        db.write([Event(id=i * 10_000_000, value=b"x") for i in range(3)])
        tags = [n.rsplit(".", 1)[1] for n in our_segments(repo) if ".mt" in n]
        assert len(tags) == 3 and len(set(tags)) == 3 and all(len(t) == 16 for t in tags)
    finally:
        db.close()


def test_a_segment_open_to_others_is_not_attached(repo):
    import posix_ipc

    from monotone.shm.errors import Untrusted
    from monotone.shm.segment import Segment
    name = f"/{PREFIX}test-{os.getpid()}"
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o644, size=4096)
    os.fchmod(shm.fd, 0o644)
    shm.close_fd()
    try:
        with pytest.raises(Untrusted, match="not private"):
            Segment(name)
    finally:
        posix_ipc.unlink_shared_memory(name)


def test_refusals_are_logged_a_few_then_counted():
    """A flood of refused connections cannot grow the log: the first few are
    logged one by one, the rest as one count per minute."""
    import logging

    from monotone.workers.listener import Refusals
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
    handler = Keep()
    logging.getLogger("monotone").addHandler(handler)
    try:
        refusals = Refusals()
        for pid in range(10_000):
            refusals.refused(pid, 4242)
        refusals.flush()
    finally:
        logging.getLogger("monotone").removeHandler(handler)
    assert len(lines) == Refusals.FIRST + 1, lines
    assert "9995 more" in lines[-1] and "uid 4242" in lines[-1]


# paths -----------------------------------------------------------------------------------


def test_a_storage_path_linux_cannot_use_is_a_clear_error(db):
    deep = "d/" * 3000
    with pytest.raises(monotone.MonotoneError, match="at most 4095 bytes"):
        db.execute(f"CREATE STORAGE deep (path '{deep}')")
    with pytest.raises(monotone.MonotoneError, match="at most 255 bytes"):
        db.execute(f"CREATE STORAGE wide (path '{'x' * 300}')")
    # nearly as long as Linux takes, once the repository's path is added
    with pytest.raises(monotone.MonotoneError, match="4095"):
        db.execute(f"CREATE STORAGE long (path '{'d/' * 2040}')")
    assert sorted(json.loads(db.execute("SHOW STORAGES"))) == ["main"]


def test_a_repository_path_linux_cannot_use_is_a_clear_error(tmp_path):
    with pytest.raises(monotone.MonotoneError, match="4095"):
        open_db(str(tmp_path / ("d/" * 3000)))


def test_make_dir_has_no_depth_limit(tmp_path):
    """Deeper than os.makedirs goes (it recurses once per level)."""
    deep = str(tmp_path / os.path.join(*["d"] * (sys.getrecursionlimit() + 100)))
    try:
        private.make_dir(deep)
        assert os.path.isdir(deep) and stat.S_IMODE(os.stat(deep).st_mode) == 0o700
    finally:  # deepest first (rmtree would recurse as deep)
        path = deep
        while path != str(tmp_path) and os.path.isdir(path):
            os.rmdir(path)
            path = os.path.dirname(path)
