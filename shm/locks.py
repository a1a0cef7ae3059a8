"""Locks that survive the death of their holder.

Linux open-file-description (OFD) byte-range locks on one lock file: one byte
per lock. The kernel drops a lock when its holder dies, so `kill -9` of a
process holding one never wedges the others; unlike classic POSIX locks they
are not lost when the process closes another descriptor of the same file.
(A POSIX semaphore held by a killed process stays taken forever.)

OFD locks belong to a descriptor, so threads of one process sharing a LockFile
do not exclude each other: callers serialise their own threads.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct

from .errors import ShmError

# struct flock on Linux x86-64/aarch64: short type, short whence, off_t start,
# off_t len, pid_t pid (must be 0 for OFD locks)
_FLOCK = struct.Struct("hh4xqqi4x")

# global lock bytes
COORDINATOR = 0   # held by the live coordinator for its whole life
PUBLISH = 1       # multi-partition publish (exclusive) vs snapshot (shared)
SEQUENCE = 2      # lsn and ssn counters
START = 3         # serialises starting a coordinator
ATTACHED = 4      # shared by every client and worker of the live coordinator
PARTITIONS = 1024  # partition slot i is byte PARTITIONS + i


class LockFile:
    def __init__(self, path: str, create: bool = True) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            self.fd = os.open(path, flags, 0o644)
        except OSError as e:
            raise ShmError(f"cannot open lock file {path}: {e.strerror}") from None
        self.pid = os.getpid()

    def _fcntl(self, cmd: int, kind: int, byte: int) -> bytes:
        arg = _FLOCK.pack(kind, os.SEEK_SET, byte, 1, 0)
        return fcntl.fcntl(self.fd, cmd, arg)

    def lock(self, byte: int, exclusive: bool = True) -> None:
        kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
        self._fcntl(fcntl.F_OFD_SETLKW, kind, byte)

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


class Held:
    """`with Held(lockfile, byte):` — a lock for the length of a block."""

    def __init__(self, lockfile: LockFile, byte: int, exclusive: bool = True) -> None:
        self.lockfile, self.byte, self.exclusive = lockfile, byte, exclusive

    def __enter__(self) -> None:
        self.lockfile.lock(self.byte, self.exclusive)

    def __exit__(self, *exc) -> None:
        self.lockfile.unlock(self.byte)
