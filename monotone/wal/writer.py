"""The write-ahead log: one file per writing process, one record per batch.

Each process appends to a file of its own (`<first lsn>.wal` in the wal
directory), so a process killed in the middle of a write can only leave a torn
record at the tail of its own file. LSNs come from one shared counter, so all
files together give one total order.

File lifecycle:
  1. create `<lsn>.wal.new` (a new file, 0600: O_EXCL, never through a link)
     and take an OFD lock on its byte 0
  2. rename it to `<lsn>.wal` (and sync the directory): a file is never seen
     under its real name without its writer's lock, so garbage collection,
     which deletes only files nobody holds, never deletes one being started
  3. write a start record naming the file the writer rotated out of and its
     final size (that file is complete, so it cannot end torn), and the
     repository's uuid: recovery replays only files that prove to be its own
  4. append records; rotate past wal_rotate_wm (the old file is synced and its
     lock released, in the background). Blocks are allocated ahead of the
     records, a chunk at a time, past the file's end (its size stays what was
     written, which is all recovery reads); what is left of them is freed when
     the file is left
  5. a file nobody holds is closed for good; it is deleted once every record
     in it is in partition files (its last lsn is below the oldest lsn still
     only in memory) and it reads cleanly to its end
A `.new` file was left by a process that died at step 1: it holds no record,
and recovery, when no process writes, removes it.

Reading, repairing and collecting WAL files is the coordinator's
(wal/files.py).
"""
from __future__ import annotations

import errno
import os
import uuid as uuidlib

from .. import faults
from ..boundary import ShmError
from ..errors import MonotoneError, NoSpaceError
from ..shm import private
from ..shm.locks import LockFile
from ..store import allocate_ahead, sync_path
from . import records as walfmt

SUFFIX = ".wal"
NEW = ".new"


def path_of(directory: str, file_id: int) -> str:
    return os.path.join(directory, f"{file_id:020d}{SUFFIX}")


class WalWriter:
    """uuid: the repository's, written at the start of each file."""

    def __init__(self, directory: str, background=None, uuid: str = "") -> None:
        self.directory = directory
        self.origin = uuidlib.UUID(uuid).bytes if uuid else b""
        self.background = background  # syncs and closes rotated files, if given
        self.failed: str | None = None  # what went wrong doing that
        self.lock: LockFile | None = None
        self.path: str | None = None
        self.file_id = 0
        self.size = 0
        self.ahead = 0  # blocks of the file are allocated up to here
        self.lsn_max = 0
        self.left = (0, 0)  # (id, size) of the last file left by rotation

    def prepare(self, lsn: int, *, rotate_wm: int, sync_on_rotate: bool,
                sync: bool = False) -> tuple[int, int]:
        """Make the file the next record (lsn) goes to; return (file id, offset)."""
        if self.failed is not None:
            failed, self.failed = self.failed, None
            raise MonotoneError(failed)
        if self.lock is not None and self.size >= rotate_wm:
            self._rotate(sync_on_rotate)
        if self.lock is None:
            self._create(lsn, sync, sync_on_rotate)
        return self.file_id, self.size

    def write(self, lsn: int, record: list, *, sync: bool) -> None:
        """Append a record (a list of buffers, written with one writev) after prepare()."""
        fd = self.lock.fd
        try:
            size = walfmt.record_size(record)
            self.ahead = allocate_ahead(fd, self.ahead, self.size, self.size + size)
            written = os.writev(fd, record)
            if written != size:
                raise OSError(errno.ENOSPC, "short write")
            if sync:
                os.fdatasync(fd)
        except OSError as e:
            self.cut(self.size)  # leave no torn record behind us
            cls = NoSpaceError if e.errno == errno.ENOSPC else MonotoneError
            raise cls(f"wal write to {self.path} failed: {e.strerror}") from None
        self.size += size
        self.lsn_max = lsn

    def append_record(self, lsn: int, record: list, *, sync: bool, rotate_wm: int,
                      sync_on_rotate: bool) -> None:
        self.prepare(lsn, rotate_wm=rotate_wm, sync_on_rotate=sync_on_rotate, sync=sync)
        self.write(lsn, record, sync=sync)

    def cut(self, offset: int) -> None:
        """Take back what was written to our file from offset on."""
        os.ftruncate(self.lock.fd, offset)  # frees the blocks allocated ahead too
        os.lseek(self.lock.fd, offset, os.SEEK_SET)
        self.size = self.ahead = offset

    def _create(self, lsn: int, sync: bool, sync_soon: bool = False) -> None:
        """A new file of ours. Its name is synced into the directory before any record
        in it when records are synced (sync); else (sync_soon) in the background, as
        the file rotated out before it is: none of its records is synced before then."""
        path = path_of(self.directory, lsn)
        try:
            private.make_dir(self.directory, ancestors=False)
            lock = LockFile(path + NEW, new=True)
        except (OSError, ShmError) as e:
            raise MonotoneError(f"cannot create wal file {path}: {e}") from None
        try:
            lock.lock(0)
            faults.point("wal.created")
            os.rename(path + NEW, path)
            if sync or sync_soon and self.background is None:
                sync_path(self.directory)
            elif sync_soon:
                self.background.submit(self._sync_directory)
        except BaseException:
            lock.close()
            raise
        os.lseek(lock.fd, 0, os.SEEK_END)
        self.lock, self.path, self.file_id, self.size, self.lsn_max = lock, path, lsn, 0, 0
        self.ahead = 0
        self.write(0, walfmt.encode_start(*self.left, self.origin), sync=False)
        self.left = (0, 0)

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
            left = (self.file_id, self.size)
            self.close(sync)
            self.left = left
            return
        lock, path, size, ahead = self.lock, self.path, self.size, self.ahead
        self.left = (self.file_id, self.size)
        self.lock, self.path = None, None
        self.size, self.lsn_max = 0, 0
        self.background.submit(self._close_rotated, lock, path, size if ahead > size else None,
                               sync)

    def _sync_directory(self) -> None:
        try:
            sync_path(self.directory)
        except OSError as e:
            self.failed = f"wal sync of {self.directory} failed: {e.strerror}"

    def _close_rotated(self, lock: LockFile, path: str, size: int | None,
                       sync: bool) -> None:
        """size: the file's, when blocks were allocated past it (they are freed)."""
        if size is not None:
            try:
                os.ftruncate(lock.fd, size)
            except OSError:
                pass  # they stay allocated until the file is deleted
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
        if self.ahead > self.size:
            try:
                os.ftruncate(self.lock.fd, self.size)  # frees the blocks allocated ahead
            except OSError:
                pass  # they stay allocated until the file is deleted
        if sync:
            os.fsync(self.lock.fd)
        self.lock.close()  # releases the OFD lock: the file is closed for good
        self.lock, self.path = None, None
        self.size, self.lsn_max = 0, 0


def cut_record(directory: str, file_id: int, offset: int) -> None:
    """Cut a dead writer's last record (whole or torn) off its file."""
    path = path_of(directory, file_id)
    try:
        fd = private.open_own(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        if os.fstat(fd).st_size > offset:
            os.ftruncate(fd, offset)
            os.fsync(fd)
    finally:
        os.close(fd)
