"""POSIX shared-memory segments mapped with mmap.

A segment is created sparse: its pages take memory only when touched. Before a
writer touches new pages it reserves them with posix_fallocate, so a full
/dev/shm becomes ENOSPC (an error) instead of a SIGBUS (a dead process).
"""
from __future__ import annotations

import errno
import mmap
import os

import numpy as np
import posix_ipc

from . import libc
from .errors import NoSpace, ShmError

SHM_DIR = "/dev/shm"
PAGE = mmap.PAGESIZE
PREFIX = "mtn."


def segment_name(repo: str, kind: str) -> str:
    return f"/{PREFIX}{repo}.{kind}"


class Segment:
    """One mapped segment. Pickles as its name and re-attaches."""

    def __init__(self, name: str, size: int = 0, create: bool = False) -> None:
        self.name = name
        try:
            if create:
                shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=0)
            else:
                shm = posix_ipc.SharedMemory(name)
        except posix_ipc.ExistentialError as e:
            raise ShmError(f"shared memory segment {name}: {e}") from None
        try:
            if create:
                os.ftruncate(shm.fd, size)
            else:
                size = os.fstat(shm.fd).st_size
            self.map = mmap.mmap(shm.fd, size)
        except OSError as e:
            if create:
                shm.unlink()
            raise NoSpace(f"shared memory segment {name}: {e.strerror}") from None
        finally:
            shm.close_fd()
        self.size = size
        probe = np.frombuffer(self.map, np.uint8, 1)
        self.address = probe.ctypes.data  # where the mapping starts, for madvise
        del probe

    def __reduce__(self):
        return (Segment, (self.name,))

    def reserve(self, offset: int, length: int) -> None:
        """Back [offset, offset+length) with memory now, or raise NoSpaceError."""
        try:
            shm = posix_ipc.SharedMemory(self.name)
        except posix_ipc.ExistentialError:
            raise ShmError(f"shared memory segment {self.name} is gone") from None
        try:
            os.posix_fallocate(shm.fd, offset, length)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
                raise NoSpace(
                    f"out of shared memory in {SHM_DIR} ({e.strerror}): free space there, "
                    "refresh partitions or lower the write rate") from None
            raise
        finally:
            shm.close_fd()

    def prefault(self, offset: int, length: int) -> None:
        """Back and map [offset, offset+length) ahead of its use, if memory allows.

        Best effort, for a background thread: reserve() still runs before the
        pages are written and is what reports a full /dev/shm. Both calls drop
        the GIL, so the writer goes on meanwhile.
        """
        start = offset // PAGE * PAGE
        length += offset - start
        keep = np.frombuffer(self.map, np.uint8, length, start)  # the mapping stays meanwhile
        try:
            shm = posix_ipc.SharedMemory(self.name)
        except posix_ipc.ExistentialError:
            return
        try:
            os.posix_fallocate(shm.fd, start, length)
        except OSError:
            return
        finally:
            shm.close_fd()
        if libc.madvise is not None:
            libc.madvise(self.address + start, length, libc.MADV_POPULATE_WRITE)
        del keep

    def close(self) -> None:
        try:
            self.map.close()
        except BufferError:
            pass  # numpy views still alive: the mapping goes when they do


def unlink(name: str) -> None:
    try:
        posix_ipc.unlink_shared_memory(name)
    except posix_ipc.ExistentialError:
        pass


def list_segments(repo: str) -> list[str]:
    """Names of every segment of a repository (Linux keeps them in /dev/shm)."""
    prefix = f"{PREFIX}{repo}."
    try:
        return ["/" + n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]
    except FileNotFoundError:
        return []
