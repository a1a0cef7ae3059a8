"""WAL files as the coordinator sees them: reading, repairing, collecting.

Reading: a record that fails its checks is either a torn tail (a write cut
short by a crash, at the end of a writer's last file: it is cut, with a line
in the log) or damage (a complete record damaged since, anything followed by
intact records, a file shorter or longer than its successor says). Damage is a
CorruptionError naming the file and offset, unless wal_recover is set: then
the damaged bytes are skipped and the file rewritten without them.

Collecting: a file nobody holds is closed for good and is deleted once every
record in it is in partition files and it reads cleanly to its end. (Writing
is the client's: wal/writer.py.)

Provenance: a file is replayed only when it proves to be this repository's: a
regular file (not a link) of our uid, named as the engine names them, whose
start record carries the repository's uuid (files written before the uuid was
recorded carry none and are taken on the first two). Anything else at such a
name stops the open with an error naming it; it is neither replayed nor
removed, and collection leaves it alone.
"""
from __future__ import annotations

import os
import uuid as uuidlib
from dataclasses import dataclass, field

from monotone.shm.errors import Untrusted
from monotone.shm.locks import LockFile

from .. import faults
from ..boundary import ShmError
from ..errors import AccessDenied, CorruptionError, MonotoneError
from ..shm import private
from ..store import sync_path
from . import records as walfmt
from .writer import NEW, SUFFIX, path_of


def wal_files(directory: str) -> list[str]:
    try:
        names = [n for n in os.listdir(directory) if n.endswith(SUFFIX)]
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in sorted(names)]


def check_files(directory: str, uuid: str) -> None:
    """Every WAL file (and `.new` one) in directory is this repository's, or the
    error names the first that is not."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    origin = uuidlib.UUID(uuid).bytes
    for name in names:
        if not (name.endswith(SUFFIX) or name.endswith(SUFFIX + NEW)):
            continue
        path = os.path.join(directory, name)
        try:
            fd = private.open_own(path)
        except Untrusted as e:
            raise AccessDenied(f"wal file {e}; it was neither replayed nor removed") from None
        except FileNotFoundError:
            continue
        with open(fd, "rb") as f:
            head = f.read(walfmt.HEADER.size + 32)
        rec = walfmt.decode_at(memoryview(head), 0, path)
        if rec is not None and rec.origin is not None and rec.origin != origin:
            raise MonotoneError(
                f"wal file {path} belongs to another repository (uuid "
                f"{uuidlib.UUID(bytes=rec.origin)}), not to this one ({uuid}): it was "
                "neither replayed nor removed; move it away and open again")


def sync_files(directory: str) -> None:
    """fsync every WAL file (any descriptor of a file flushes all of it)."""
    for path in wal_files(directory):
        try:
            fd = private.open_own(path)
        except (FileNotFoundError, Untrusted):
            continue  # collected meanwhile (all of it was in partition files); not ours
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
    with open(private.open_own(path), "rb") as f:
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
    with open(private.open_own(path), "rb", buffering=0) as f:
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
    with open(private.open_own(wf.path, os.O_RDWR), "r+b") as f:
        f.truncate(wf.torn)
        os.fsync(f.fileno())
    return True


def rewrite(wf: WalFile) -> None:
    """Replace a damaged file by its intact records (wal_recover)."""
    _replace(wf.path, [memoryview(wf.data)[offset:offset + rec.size]
                       for rec, offset in zip(wf.records, wf.offsets)])


def _replace(path: str, parts: list) -> None:
    tmp = path + NEW
    with open(private.create(tmp, os.O_WRONLY, replace=True), "wb") as f:
        for part in parts:
            f.write(part)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_path(os.path.dirname(path))


def is_active(path: str) -> bool:
    """Whether a live process still holds this file (appends to it, or names it)."""
    try:
        probe = LockFile(path, create=False)
    except Untrusted:
        raise
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
        with open(private.open_own(path), "rb") as f:
            head = f.read(walfmt.HEADER.size + 32)
        rec = walfmt.decode_at(memoryview(head), 0, path)
        if rec is not None and rec.start is not None and rec.start[0]:
            out[path_of(directory, rec.start[0])] = (rec.start[1], path)
    return out


def unseal(successor: str) -> None:
    """Make a start record name no file: the one it named was rewritten (wal_recover)
    and its size no longer holds."""
    with open(private.open_own(successor), "rb") as f:
        data = f.read()
    rec = walfmt.decode_at(memoryview(data), 0, successor)
    start = walfmt.join(walfmt.encode_start(0, 0, rec.origin or b"" if rec else b""))
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
    return sum(private.remove_own(os.path.join(directory, name)) for name in names)


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
        try:
            if is_active(path):
                continue
            records, clean = read_headers(path)
        except (FileNotFoundError, Untrusted):
            continue  # collected meanwhile; not ours: left alone
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
