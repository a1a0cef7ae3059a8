"""POSIX shared-memory segments mapped with mmap.

A segment is created sparse: its pages take memory only when touched. Before a
writer touches new pages it reserves them with posix_fallocate, so a full
/dev/shm becomes ENOSPC (an error) instead of a SIGBUS (a dead process).

/dev/shm is one directory for every user of the machine, so names are no
secret and anyone may take one first. A segment is created with O_EXCL, mode
0600, under a name with a random part the creator chose (a name found taken
is skipped: NameTaken), and attached only when it is its owner's and private
to it. Only segments of our own are listed and removed.
"""
from __future__ import annotations

import errno
import hashlib
import mmap
import os

import numpy as np
import posix_ipc

from . import libc
from .errors import NoSpace, ShmError, Untrusted

SHM_DIR = "/dev/shm"
PAGE = mmap.PAGESIZE
PREFIX = "mtn."


class NameTaken(ShmError):
    """A segment of that name exists already (someone took it first): pick another."""


def segment_name(repo: str, token: str, kind: str) -> str:
    """repo: the repository's id; token: the random part its coordinator chose."""
    return f"/{PREFIX}{repo}.{token}.{kind}"


def memtable_kind(key: bytes, segno: int) -> str:
    """A memtable's part of its segment name: its number and a tag keyed with the
    partition map's secret key, so that seeing one name tells nobody the next
    (they could make it first: a name is skipped then, but not without end)."""
    tag = hashlib.blake2b(segno.to_bytes(8, "little"), key=key, digest_size=8).hexdigest()
    return f"mt{segno}.{tag}"


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
            if create:
                raise NameTaken(f"shared memory segment {name} exists already") from None
            raise ShmError(f"shared memory segment {name}: {e}") from None
        except posix_ipc.PermissionsError:
            raise Untrusted(f"shared memory segment {SHM_DIR}{name} is another user's: "
                            "the engine does not use it") from None
        if not create:
            st = os.fstat(shm.fd)
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                shm.close_fd()
                raise Untrusted(f"shared memory segment {SHM_DIR}{name} is not private to "
                                f"uid {os.geteuid()} (owner uid {st.st_uid}, mode "
                                f"{st.st_mode & 0o777:04o}): the engine does not use it")
            size = st.st_size
        try:
            if create:
                os.ftruncate(shm.fd, size)
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

    def prefault(self, offset: int, length: int) -> bool:
        """Back and map [offset, offset+length) ahead of its use, if memory allows;
        whether it is backed (as reserve() would have done).

        Best effort, for a background thread: where it fails, reserve() runs
        before the pages are written and reports a full /dev/shm. Both calls
        drop the GIL, so the writer goes on meanwhile.
        """
        start = offset // PAGE * PAGE
        length += offset - start
        keep = np.frombuffer(self.map, np.uint8, length, start)  # the mapping stays meanwhile
        try:
            shm = posix_ipc.SharedMemory(self.name)
        except posix_ipc.ExistentialError:
            return False
        try:
            os.posix_fallocate(shm.fd, start, length)
        except OSError:
            return False
        finally:
            shm.close_fd()
        if libc.madvise is not None:
            libc.madvise(self.address + start, length, libc.MADV_POPULATE_WRITE)
        del keep
        return True

    def close(self) -> None:
        try:
            self.map.close()
        except BufferError:
            pass  # numpy views still alive: the mapping goes when they do


def unlink(name: str) -> None:
    """Remove a segment of ours (another user's stays: /dev/shm is sticky anyway)."""
    try:
        if os.lstat(SHM_DIR + name).st_uid != os.geteuid():
            return
        posix_ipc.unlink_shared_memory(name)
    except (FileNotFoundError, posix_ipc.ExistentialError):
        pass


def list_segments(repo: str) -> list[str]:
    """Names of every segment of ours of a repository (Linux keeps them in /dev/shm),
    whatever coordinator made them."""
    prefix = f"{PREFIX}{repo}."
    me = os.geteuid()
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        try:
            if os.lstat(os.path.join(SHM_DIR, n)).st_uid == me:
                out.append("/" + n)
        except FileNotFoundError:
            continue
    return out
