"""The write-ahead log: one file per writing process, one record per batch.

Each process appends to a file of its own (`<first lsn>.wal` in the wal
directory), so a process killed in the middle of a write can only leave a torn
record at the tail of its own file, where recovery detects and cuts it. LSNs
come from one shared counter, so all files together give one total order.

A process holds an OFD lock on byte 0 of its current file; a file nobody holds
is closed for good and may be deleted once every event in it is in partition
files (its last LSN is below the oldest LSN still only in memory).
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from shm.locks import LockFile

from .errors import InjectedError, MonotoneError, NoSpaceError
from .format import wal as walfmt
from .rows import Rows

SUFFIX = ".wal"


def wal_files(directory: str) -> list[str]:
    try:
        names = [n for n in os.listdir(directory) if n.endswith(SUFFIX)]
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in sorted(names)]


class WalWriter:
    def __init__(self, directory: str, background=None) -> None:
        self.directory = directory
        self.background = background  # syncs and closes rotated files, if given
        self.failed: str | None = None  # what went wrong doing that
        self.lock: LockFile | None = None
        self.path: str | None = None
        self.size = 0
        self.lsn_max = 0

    def append(self, lsn: int, ssn: int, rows: Rows, *, crc: bool, sync: bool,
               rotate_wm: int, sync_on_rotate: bool, obsolete_below: int = 0,
               error: bool = False) -> None:
        self.drop_if_obsolete(obsolete_below)
        self.append_record(lsn, walfmt.encode(lsn, ssn, rows, crc), sync=sync,
                           rotate_wm=rotate_wm, sync_on_rotate=sync_on_rotate, error=error)

    def append_record(self, lsn: int, record: list, *, sync: bool, rotate_wm: int,
                      sync_on_rotate: bool, error: bool = False) -> None:
        """Append a record (a list of buffers, written with one writev)."""
        if self.failed is not None:
            failed, self.failed = self.failed, None
            raise MonotoneError(failed)
        if self.lock is not None and self.size >= rotate_wm:
            self._rotate(sync_on_rotate)
        if self.lock is None:
            self._create(lsn)
        if error:
            raise InjectedError("wal write failed (error_wal is set)")
        fd = self.lock.fd
        try:
            size = sum(memoryview(part).nbytes for part in record)
            written = os.writev(fd, record)
            if written != size:
                raise OSError(errno.ENOSPC, "short write")
            if sync:
                os.fdatasync(fd)
        except OSError as e:
            os.ftruncate(fd, self.size)  # leave no torn record behind us
            os.lseek(fd, self.size, os.SEEK_SET)
            cls = NoSpaceError if e.errno == errno.ENOSPC else MonotoneError
            raise cls(f"wal write to {self.path} failed: {e.strerror}") from None
        self.size += size
        self.lsn_max = lsn

    def _create(self, lsn: int) -> None:
        path = os.path.join(self.directory, f"{lsn:020d}{SUFFIX}")
        try:
            os.makedirs(self.directory, exist_ok=True)
            lock = LockFile(path)
        except (OSError, MonotoneError) as e:
            raise MonotoneError(f"cannot create wal file {path}: {e}") from None
        lock.lock(0)
        os.lseek(lock.fd, 0, os.SEEK_END)
        self.lock, self.path, self.size, self.lsn_max = lock, path, 0, 0

    def drop_if_obsolete(self, lsn_needed: int) -> None:
        """Close and delete our file when every record in it has been refreshed."""
        if self.lock is not None and 0 < self.lsn_max < lsn_needed:
            path = self.path
            self.close(False)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _rotate(self, sync: bool) -> None:
        """Leave the current file; it is synced (if asked) and closed in the background."""
        if self.background is None:
            self.close(sync)
            return
        lock, path = self.lock, self.path
        self.lock, self.path = None, None
        self.size, self.lsn_max = 0, 0
        self.background.submit(self._close_rotated, lock, path, sync)

    def _close_rotated(self, lock: LockFile, path: str, sync: bool) -> None:
        try:
            if sync:
                os.fsync(lock.fd)
        except OSError as e:
            self.failed = f"wal sync of {path} failed: {e.strerror}"
        finally:
            lock.close()  # releases the OFD lock once the file is on disk

    def close(self, sync: bool = False) -> None:
        if self.lock is None:
            return
        if sync:
            os.fsync(self.lock.fd)
        self.lock.close()  # releases the OFD lock: the file is closed for good
        self.lock, self.path = None, None
        self.size, self.lsn_max = 0, 0


@dataclass
class WalFile:
    path: str
    records: list
    good_size: int   # bytes up to the first bad record
    size: int


def read_file(path: str) -> WalFile:
    """Every intact record of a file; the size up to the first bad one."""
    with open(path, "rb") as f:
        data = f.read()
    buf = memoryview(data)
    records, pos = [], 0
    while pos < len(buf):
        rec = walfmt.decode_at(buf, pos, path)
        if rec is None:
            break
        records.append(rec)
        pos += rec.size
    return WalFile(path, records, pos, len(buf))


def read_headers(path: str) -> list[tuple[int, bool]]:
    """(lsn, is a drop) of each record up to the first bad header, reading
    only the headers: what deciding whether a closed file may go needs."""
    out = []
    with open(path, "rb", buffering=0) as f:
        size, pos = os.fstat(f.fileno()).st_size, 0
        while pos < size:
            head = os.pread(f.fileno(), walfmt.HEADER.size, pos)
            found = walfmt.decode_header(head, size - pos)
            if found is None:
                break
            lsn, record_size, drop = found
            out.append((lsn, drop))
            pos += record_size
    return out


def cut_tail(wf: WalFile) -> bool:
    """Truncate a file at its first damaged record; True when something was cut."""
    if wf.good_size == wf.size:
        return False
    with open(wf.path, "r+b") as f:
        f.truncate(wf.good_size)
        os.fsync(f.fileno())
    return True


def is_active(path: str) -> bool:
    """Whether a live process still appends to this file."""
    try:
        probe = LockFile(path)
    except MonotoneError:
        return False
    try:
        return probe.held(0)
    finally:
        probe.close()


def first_lsn(path: str) -> int:
    return int(os.path.basename(path)[:-len(SUFFIX)])


def gc(directory: str, lsn_needed: int) -> int:
    """Delete closed files whose records all have lsn < lsn_needed; return how many.

    A file holding a drop record stays while any older record may remain in
    another file: replayed without the drop, that record would bring the
    dropped partition back.
    """
    files = wal_files(directory)
    doomed, drops = [], {}
    for path in files:
        if is_active(path):
            continue
        try:
            records = read_headers(path)
        except FileNotFoundError:
            continue
        if max((lsn for lsn, _ in records), default=0) < lsn_needed:
            doomed.append(path)
            drops[path] = max((lsn for lsn, drop in records if drop), default=0)
    kept_min = min((first_lsn(p) for p in files if p not in doomed), default=2**64)
    removed = 0
    for path in doomed:
        if drops[path] and drops[path] >= kept_min:
            continue
        try:
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed

