"""The write-ahead log: one file per writing process, one record per batch.

Each process appends to a file of its own (`<first lsn>.wal` in the wal
directory), so a process killed in the middle of a write can only leave a torn
record at the tail of its own file. LSNs come from one shared counter, so all
files together give one total order.

File lifecycle:
  1. create `<lsn>.wal.new` and take an OFD lock on its byte 0
  2. rename it to `<lsn>.wal` (and sync the directory): a file is never seen
     under its real name without its writer's lock, so garbage collection,
     which deletes only files nobody holds, never deletes one being started
  3. write a start record naming the file the writer rotated out of and its
     final size: that file is complete, so it cannot end torn
  4. append records; rotate past wal_rotate_wm (the old file is synced and its
     lock released, in the background)
  5. a file nobody holds is closed for good; it is deleted once every record
     in it is in partition files (its last lsn is below the oldest lsn still
     only in memory) and it reads cleanly to its end
A `.new` file was left by a process that died at step 1: it holds no record,
and recovery, when no process writes, removes it.

Reading: a record that fails its checks is either a torn tail (a write cut
short by a crash, at the end of a writer's last file: it is cut, with a line
in the log) or damage (a complete record damaged since, anything followed by
intact records, a file shorter or longer than its successor says). Damage is a
CorruptionError naming the file and offset, unless wal_recover is set: then
the damaged bytes are skipped and the file rewritten without them.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from monotone.shm.locks import LockFile

from . import faults
from .boundary import ShmError
from .errors import CorruptionError, MonotoneError, NoSpaceError
from .format import wal as walfmt

SUFFIX = ".wal"
NEW = ".new"


def wal_files(directory: str) -> list[str]:
    try:
        names = [n for n in os.listdir(directory) if n.endswith(SUFFIX)]
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in sorted(names)]


def path_of(directory: str, file_id: int) -> str:
    return os.path.join(directory, f"{file_id:020d}{SUFFIX}")


def _sync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WalWriter:
    def __init__(self, directory: str, background=None) -> None:
        self.directory = directory
        self.background = background  # syncs and closes rotated files, if given
        self.failed: str | None = None  # what went wrong doing that
        self.lock: LockFile | None = None
        self.path: str | None = None
        self.file_id = 0
        self.size = 0
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
            self._create(lsn, sync or sync_on_rotate)
        return self.file_id, self.size

    def write(self, lsn: int, record: list, *, sync: bool) -> None:
        """Append a record (a list of buffers, written with one writev) after prepare()."""
        fd = self.lock.fd
        try:
            size = sum(memoryview(part).nbytes for part in record)
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
        os.ftruncate(self.lock.fd, offset)
        os.lseek(self.lock.fd, offset, os.SEEK_SET)
        self.size = offset

    def _create(self, lsn: int, sync: bool) -> None:
        path = path_of(self.directory, lsn)
        try:
            os.makedirs(self.directory, exist_ok=True)
            lock = LockFile(path + NEW)
        except (OSError, ShmError) as e:
            raise MonotoneError(f"cannot create wal file {path}: {e}") from None
        try:
            lock.lock(0)
            faults.point("wal.created")
            os.rename(path + NEW, path)
            if sync:
                _sync_dir(self.directory)
        except BaseException:
            lock.close()
            raise
        os.lseek(lock.fd, 0, os.SEEK_END)
        self.lock, self.path, self.file_id, self.size, self.lsn_max = lock, path, lsn, 0, 0
        self.write(0, walfmt.encode_start(*self.left), sync=False)
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
        lock, path = self.lock, self.path
        self.left = (self.file_id, self.size)
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


def sync_files(directory: str) -> None:
    """fsync every WAL file (any descriptor of a file flushes all of it)."""
    for path in wal_files(directory):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # collected meanwhile: all of it was in partition files
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def cut_record(directory: str, file_id: int, offset: int) -> None:
    """Cut a dead writer's last record (whole or torn) off its file."""
    path = path_of(directory, file_id)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if os.fstat(fd).st_size > offset:
            os.ftruncate(fd, offset)
            os.fsync(fd)
    finally:
        os.close(fd)


# reading -------------------------------------------------------------------------------


@dataclass
class WalFile:
    path: str
    records: list = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    size: int = 0
    torn: int | None = None   # where a torn tail starts
    damaged: list[tuple[int, int]] = field(default_factory=list)  # (offset, bytes)
    data: bytes = b""

    def damage_error(self) -> CorruptionError:
        offset, length = self.damaged[0]
        what = (f"ends at offset {offset}, short of the size its writer left it at"
                if not length else
                f"damaged record at offset {offset} ({length} bytes"
                f"{', intact records follow' if offset + length < self.size else ''})")
        return CorruptionError(
            f"wal file {self.path}: {what}; the "
            "repository was not opened. To open it anyway, SET wal_recover TO true before "
            "open(): damaged records are skipped (their events are lost) and the file is "
            "rewritten without them")


def read_file(path: str, sealed: int | None = None) -> WalFile:
    """Every intact record of a file, with its torn tail and damaged stretches.

    sealed: the file's final size, as the start record of the file its writer
    went on to says; such a file ends complete, and anything else is damage."""
    with open(path, "rb") as f:
        data = f.read()
    buf = memoryview(data)
    wf = WalFile(path, size=len(data), data=data)
    pos = 0
    while pos < len(buf):
        rec = walfmt.decode_at(buf, pos, path)
        if rec is not None:
            wf.records.append(rec)
            wf.offsets.append(pos)
            pos += rec.size
            continue
        found = walfmt.next_record(data, pos + 1, path)
        if found is None:
            if walfmt.torn(buf, pos):
                wf.torn = pos
            else:
                wf.damaged.append((pos, len(buf) - pos))
            break
        wf.damaged.append((pos, found - pos))
        pos = found
    if sealed is not None:
        if wf.torn is not None:  # a complete file cannot end torn
            wf.damaged.append((wf.torn, wf.size - wf.torn))
            wf.torn = None
        if wf.size < sealed:
            wf.damaged.append((wf.size, 0))  # cut short: records are missing
    return wf


def read_headers(path: str) -> tuple[list[tuple[int, bool]], bool]:
    """(lsn, is a drop) of each record up to the first bad header, reading only
    the headers (what deciding whether a closed file may go needs); and whether
    they reach the end of the file cleanly."""
    out = []
    with open(path, "rb", buffering=0) as f:
        size, pos = os.fstat(f.fileno()).st_size, 0
        while pos < size:
            head = os.pread(f.fileno(), walfmt.HEADER.size, pos)
            found = walfmt.decode_header(head, size - pos)
            if found is None:
                return out, False
            lsn, record_size, drop = found
            out.append((lsn, drop))
            pos += record_size
    return out, True


def cut_tail(wf: WalFile) -> bool:
    """Truncate a file at its torn tail; True when something was cut."""
    if wf.torn is None:
        return False
    with open(wf.path, "r+b") as f:
        f.truncate(wf.torn)
        os.fsync(f.fileno())
    return True


def rewrite(wf: WalFile) -> None:
    """Replace a damaged file by its intact records (wal_recover)."""
    _replace(wf.path, [memoryview(wf.data)[offset:offset + rec.size]
                       for rec, offset in zip(wf.records, wf.offsets)])


def _replace(path: str, parts: list) -> None:
    tmp = path + NEW
    with open(tmp, "wb") as f:
        for part in parts:
            f.write(part)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _sync_dir(os.path.dirname(path))


def is_active(path: str) -> bool:
    """Whether a live process still holds this file (appends to it, or names it)."""
    try:
        probe = LockFile(path, create=False)
    except ShmError:
        return False
    try:
        return probe.held(0)
    finally:
        probe.close()


def sealed_sizes(files: list[str]) -> dict[str, tuple[int, str]]:
    """Files a writer rotated out of: their final size and the file it went on to
    (whose start record says so)."""
    out = {}
    directory = os.path.dirname(files[0]) if files else ""
    for path in files:
        with open(path, "rb") as f:
            head = f.read(walfmt.HEADER.size + 16)
        rec = walfmt.decode_at(memoryview(head), 0, path)
        if rec is not None and rec.start is not None and rec.start[0]:
            out[path_of(directory, rec.start[0])] = (rec.start[1], path)
    return out


def unseal(successor: str) -> None:
    """Make a start record name no file: the one it named was rewritten (wal_recover)
    and its size no longer holds."""
    with open(successor, "rb") as f:
        data = f.read()
    start = walfmt.join(walfmt.encode_start(0, 0))
    _replace(successor, [start, memoryview(data)[len(start):]])


def first_lsn(path: str) -> int:
    return int(os.path.basename(path)[:-len(SUFFIX)])


def remove_stale(directory: str) -> int:
    """Delete `.new` files, left by processes that died creating them (at recovery
    only: a file is created before it is locked, so while processes write, one
    nobody holds yet may be about to be named)."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(SUFFIX + NEW)]
    except FileNotFoundError:
        return 0
    for name in names:
        os.unlink(os.path.join(directory, name))
    return len(names)


def gc(directory: str, lsn_needed: int) -> int:
    """Delete closed files whose records all have lsn < lsn_needed; return how many.

    A file holding a drop record stays while any older record may remain in
    another file: replayed without the drop, that record would bring the
    dropped partition back. A file that does not read cleanly to its end
    stays too: what follows a bad header is unknown (recovery reports it).
    """
    files = wal_files(directory)
    doomed, drops = [], {}
    for path in files:
        if is_active(path):
            continue
        try:
            records, clean = read_headers(path)
        except FileNotFoundError:
            continue
        if clean and max((lsn for lsn, _ in records), default=0) < lsn_needed:
            doomed.append(path)
            drops[path] = max((lsn for lsn, drop in records if drop), default=0)
    faults.point("gc.listed")
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
