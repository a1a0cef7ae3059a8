"""Processes of the fault campaigns: the repository's, the workload's, and watching
them (no wedge: every wait has a deadline; no leak: what is left is named)."""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time

import workload

import monotone
from monotone import faults
from monotone.protocol import repo_id
from monotone.shm.segment import list_segments, unlink

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WAIT = 120.0  # seconds before a process that should have finished counts as wedged
ALL = "REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615"


class Failed(AssertionError):
    """A trial found a broken promise (or could not finish)."""


class deadline:
    """`with deadline(s):` fails the block (as wedged) if it runs longer than s seconds,
    also when it waits inside this process (a call to the repository that never returns)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        def expired(*_):
            raise Failed(f"the trial did not finish in {self.seconds:.0f} s (wedged?)")
        self.previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


def env(extra: dict | None = None) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.pop(faults.ENV, None)
    e.update(extra or {})
    return e


# processes of a repository ----------------------------------------------------------------


def _proc_info(pid: str):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return args, fields[0], int(fields[1])  # cmdline, state, ppid


def coordinators(base: str) -> list[int]:
    real = os.path.realpath(base).encode()
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        info = _proc_info(pid)
        if info and info[1] != "Z" and b"monotone.workers.coordinator" in info[0] and real in info[0]:
            out.append(int(pid))
    return out


def workers_of(coordinator: int) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        info = _proc_info(pid)
        if info and info[2] == coordinator and info[1] != "Z":
            out.append(int(pid))
    return out


def wait_gone(pids: list[int], timeout: float = WAIT) -> None:
    """Block until the processes have exited (pidfds become readable when they do)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            sel = selectors.DefaultSelector()
            sel.register(fd, selectors.EVENT_READ)
            ready = sel.select(max(0.0, deadline - time.monotonic()))
            sel.close()
            if not ready:
                raise Failed(f"process {pid} did not stop (wedged?)")
        finally:
            os.close(fd)


def kill9(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(pids)


def leaks(base: str) -> list[str]:
    """Processes and segments of the repository still there (removed, and named)."""
    found = []
    pids = coordinators(base)
    for pid in pids:
        found.append(f"coordinator {pid}")
        found.extend(f"worker {w}" for w in workers_of(pid))
    kill9(pids)
    for name in list_segments(repo_id(base)):
        found.append(f"segment {name}")
        unlink(name)
    return found


def open_repo(repo: str, **settings) -> monotone.Monotone:
    db = monotone.Monotone()
    for name, value in settings.items():
        db.execute(f"SET {name} TO {value}")
    db.open(repo)
    return db


# writer and reader processes ----------------------------------------------------------------


class Child:
    """A workload process (writer or reader) and what it printed."""

    def __init__(self, args: list[str], extra_env: dict | None = None, stdin=None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "workload.py"), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL if stdin is None else stdin, env=env(extra_env))
        self.acked = 0
        self.closed = False
        self.scans = 0
        self.stderr = ""
        self._buf = b""

    def take(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            if line.startswith(b"ack "):
                if int(line[4:]) != self.acked:
                    raise Failed(f"acknowledgements out of order: {line!r}")
                self.acked += 1
            elif line == b"closed":
                self.closed = True
            elif line.startswith(b"scans "):
                self.scans = int(line[6:])

    def finish(self) -> int:
        """Wait for the process to end and read the rest of its output; its exit status."""
        try:
            out, err = self.proc.communicate(b"" if self.proc.stdin else None, timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            self.take(out)
            raise Failed(f"process {self.proc.pid} did not finish (wedged?): "
                         f"{err.decode(errors='replace')[-1500:]}") from None
        self.take(out)
        self.stderr = err.decode(errors="replace")
        return self.proc.returncode


def writer(repo: str, w: int, seed: int, settings: dict, limit: int,
           max_events: int = workload.MAX_EVENTS, fault_env: dict | None = None,
           refreshes: float = 0.0) -> Child:
    return Child([repo, str(w), str(seed), json.dumps(settings), str(limit), str(max_events),
                  str(refreshes)], fault_env)


def reader(repo: str, seed: int, max_events: int = workload.MAX_EVENTS) -> Child:
    return Child(["read", repo, str(seed), str(max_events)], stdin=subprocess.PIPE)


def pump(children: list[Child], until, timeout: float = WAIT) -> None:
    """Read what the children print until until() holds or every one has ended."""
    sel = selectors.DefaultSelector()
    for c in children:
        if not c.proc.stdout.closed:
            sel.register(c.proc.stdout, selectors.EVENT_READ, c)
    deadline = time.monotonic() + timeout
    try:
        while not until() and sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed("writers made no progress (wedged?)")
            for key, _ in sel.select(left):
                data = os.read(key.fileobj.fileno(), 65536)
                if data:
                    key.data.take(data)
                else:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
