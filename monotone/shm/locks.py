"""Locks that survive the death of their holder.

Linux open-file-description (OFD) byte-range locks on one lock file: one byte
per lock. The kernel drops a lock when its holder dies, so `kill -9` of a
process holding one never wedges the others; unlike classic POSIX locks they
are not lost when the process closes another descriptor of the same file.
(A POSIX semaphore held by a killed process stays taken forever.)

OFD locks belong to a descriptor, so threads of one process sharing a LockFile
do not exclude each other: callers serialise their own threads.

The lock file is its owner's alone (0600, in a private directory, opened
without following a link): a process that could open it could take any lock
and stall every writer. Every wait has a deadline; past it, LockTimeout names
the processes holding the lock, as far as this process may see them.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import os
import struct
import time

from . import private
from .errors import LockTimeout, ShmError, Untrusted

# struct flock on Linux x86-64/aarch64: short type, short whence, off_t start,
# off_t len, pid_t pid (must be 0 for OFD locks)
_FLOCK = struct.Struct("hh4xqqi4x")

# global lock bytes
COORDINATOR = 0   # held by the live coordinator for its whole life
PUBLISH = 1       # multi-partition publish (exclusive) vs snapshot (shared)
SEQUENCE = 2      # lsn and ssn counters
START = 3         # serialises starting a coordinator
ATTACHED = 4      # shared by every client and worker of the live coordinator
STATS = 5         # adding to the counters in the partition map's header
PARTITIONS = 1024  # partition slot i is byte PARTITIONS + i
_NAMES = {COORDINATOR: "the coordinator lock", PUBLISH: "the publish lock",
          SEQUENCE: "the sequence lock", START: "the start lock",
          ATTACHED: "the clients' lock", STATS: "the counters' lock"}

TIMEOUT = 60.0   # seconds a lock is waited for, unless the LockFile says otherwise
_SPINS = 50
_FIRST_PAUSE = 20e-6
_LAST_PAUSE = 0.01


@functools.lru_cache(maxsize=4096)
def _flock(kind: int, byte: int) -> bytes:
    """The struct flock of one byte's lock (packed once: every batch takes two)."""
    return _FLOCK.pack(kind, os.SEEK_SET, byte, 1, 0)


def lock_name(byte: int) -> str:
    if byte >= PARTITIONS:
        return f"the lock of partition slot {byte - PARTITIONS}"
    return _NAMES.get(byte, f"lock byte {byte}")


class LockFile:
    """One lock file, a descriptor of ours. new: the file must not exist yet (made
    0600 with O_EXCL); otherwise an existing one must be ours (create: made if
    missing). timeout: seconds lock() waits before LockTimeout."""

    def __init__(self, path: str, create: bool = True, new: bool = False,
                 timeout: float = TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        try:
            if new:
                self.fd = private.create(path, os.O_RDWR)
            else:
                self.fd = private.open_own(path, os.O_RDWR, create=create)
        except Untrusted:
            raise
        except OSError as e:
            raise ShmError(f"cannot open lock file {path}: {e.strerror}") from None
        self.pid = os.getpid()

    def _fcntl(self, cmd: int, kind: int, byte: int) -> bytes:
        return fcntl.fcntl(self.fd, cmd, _flock(kind, byte))

    def lock(self, byte: int, exclusive: bool = True, timeout: float | None = None) -> None:
        """Take the lock, waiting at most timeout seconds (the file's by default).

        The wait polls with a growing pause rather than sleeping in the kernel
        (F_OFD_SETLKW has no deadline, and a thread cannot be woken from it):
        locks are held for microseconds, so the first tries come quickly."""
        if self.try_lock(byte, exclusive):
            return
        for _ in range(_SPINS):  # held for microseconds, mostly: let the holder run
            os.sched_yield()
            if self.try_lock(byte, exclusive):
                return
        limit = self.timeout if timeout is None else timeout
        start = time.monotonic()
        pause = _FIRST_PAUSE
        while not self.try_lock(byte, exclusive):
            waited = time.monotonic() - start
            if waited >= limit:
                raise LockTimeout(f"{lock_name(byte)} of {self.path} was not granted in "
                                  f"{waited:.1f} s: held by {holders(self, byte)}")
            time.sleep(min(pause, limit - waited))
            pause = min(pause * 2, _LAST_PAUSE)

    def try_lock(self, byte: int, exclusive: bool = True) -> bool:
        kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
        try:
            self._fcntl(fcntl.F_OFD_SETLK, kind, byte)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def unlock(self, byte: int) -> None:
        self._fcntl(fcntl.F_OFD_SETLK, fcntl.F_UNLCK, byte)

    def held(self, byte: int) -> bool:
        """Whether another descriptor holds a lock on byte."""
        out = self._fcntl(fcntl.F_OFD_GETLK, fcntl.F_WRLCK, byte)
        return _FLOCK.unpack(out)[0] != fcntl.F_UNLCK

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def holders(lockfile: LockFile, byte: int) -> str:
    """Who holds a lock byte, for an error: the processes whose descriptors of the
    file lock it, as far as this process may look (/proc/PID/fdinfo lists a
    descriptor's OFD locks; another user's processes are hidden from us)."""
    st = os.fstat(lockfile.fd)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    found, hidden = [], 0
    me, mine = os.getpid(), str(lockfile.fd)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except PermissionError:
            hidden += 1
            continue
        except OSError:
            continue
        for fd in fds:
            if int(pid) == me and fd == mine:
                continue
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    info = f.read()
            except OSError:
                continue
            if _covers(info, device, byte):
                found.append(int(pid))
                break
    if found:
        return ", ".join(_process(pid) for pid in found[:5]) + \
            (f" and {len(found) - 5} more" if len(found) > 5 else "")
    if hidden:
        return "no process this user can see: another user's, perhaps"
    return "a process that has let go of it since"


def _covers(info: str, device: str, byte: int) -> bool:
    for line in info.splitlines():
        parts = line.split()
        if parts[:1] == ["lock:"] and len(parts) >= 4 and parts[-3] == device:
            start, end = parts[-2:]
            if int(start) <= byte and (end == "EOF" or byte <= int(end)):
                return True
    return False


def _process(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return f"pid {pid}"
    return f"pid {pid} ({name}, {private.who(uid)})"


class Held:
    """`with Held(lockfile, byte):` — a lock for the length of a block."""

    def __init__(self, lockfile: LockFile, byte: int, exclusive: bool = True,
                 timeout: float | None = None) -> None:
        self.lockfile, self.byte, self.exclusive = lockfile, byte, exclusive
        self.timeout = timeout

    def __enter__(self) -> None:
        self.lockfile.lock(self.byte, self.exclusive, self.timeout)

    def __exit__(self, *exc) -> None:
        self.lockfile.unlock(self.byte)
