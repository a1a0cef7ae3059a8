"""Fixtures shared by the tests: fresh repositories and a leak check after each test."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from readback import read_all

import monotone
from monotone import Event
from monotone.protocol import repo_id
from monotone.shm.segment import list_segments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL = "REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615"
BEFORE = [(1, b"", b"one"), (2, b"k", b"two"), (10, b"", b"ten")]


def pytest_sessionstart(session):
    """Compile the package and the tests' helpers once, up front: the suite starts
    thousands of processes (coordinators, workers, commands), and where bytecode is
    not written (PYTHONDONTWRITEBYTECODE) each would compile every module it imports
    again."""
    import compileall
    for folder in ("monotone", "tests"):
        compileall.compile_dir(os.path.join(ROOT, folder), quiet=2, workers=0)


def open_db(path, **settings):
    """Open a repository with workers off and the given settings SET before open."""
    db = monotone.Monotone()
    db.execute("SET workers TO 0")
    for name, value in settings.items():
        db.execute(f"SET {name} TO {value}")
    db.open(path)
    return db


def coordinator_pids(base: str) -> list[int]:
    """Live coordinator processes serving the repository at base."""
    real = os.path.realpath(base)
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"monotone.workers.coordinator" in args and real.encode() in args:
            pids.append(int(pid))
    return pids


def check_no_leaks(base: str) -> None:
    """No segment or coordinator of the repository at base is left (cleans up, then fails)."""
    from monotone.shm.segment import unlink
    leaked_segments = list_segments(repo_id(base))
    leaked_pids = coordinator_pids(base)
    for pid in leaked_pids:
        os.kill(pid, 9)
    for name in leaked_segments:
        unlink(name)
    assert not leaked_segments, f"shared memory left behind: {leaked_segments}"
    assert not leaked_pids, f"coordinator processes left behind: {leaked_pids}"


@pytest.fixture(params=["prompt_toolkit", "readline"])
def front_end(request, tmp_path):
    """PYTHONPATH entries for the prompt's front end: readline is what the prompt uses when
    prompt_toolkit cannot be imported."""
    if request.param == "prompt_toolkit":
        return []
    blocked = tmp_path / "blocked" / "prompt_toolkit"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed, for the test')\n")
    return [str(blocked.parent)]


@pytest.fixture
def repo(tmp_path):
    """A path for a new repository; after the test, no segment or coordinator of it is left."""
    base = str(tmp_path / "repo")
    yield base
    check_no_leaks(base)


@pytest.fixture
def db(repo):
    """An open repository (workers off, small interval) closed after the test."""
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    env.open(repo)
    yield env
    env.close()


@pytest.fixture
def filled(db):
    """The db fixture holding BEFORE; after the test it must still take a write."""
    db.write([Event(id=i, key=k, value=v) for i, k, v in BEFORE])
    assert read_all(db) == BEFORE
    yield db
    # the instance is still usable after every failure, and nothing leaked in
    db.write([Event(id=11, value=b"after")])
    assert (11, b"", b"after") in read_all(db)


def run_python(code: str, *args: str, **kw) -> subprocess.Popen:
    """Start a Python process running code with the project importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, **kw)
