"""Partition files through their states: the only place that knows their names.

In a storage, partition <min> has at most one file in each state:
  <min>.incomplete   being written (refresh and move, step 2; a download,
                     read whole and verified before it is renamed into place):
                     recovery removes it
  <min>.complete     written and synced, not yet switched in: recovery puts it in
                     place of <min>
  <min>              the partition file (a local copy)
and, when the storage has a cloud (the object is <min>.<digest> in the
storage's place there, cloud.Cloud: the digest is of the file's index and
footer, cloud_file.object_name, so an object's bytes never change):
  <min>.cloud.incomplete  an upload under way: the stub is written, the object
                     may or may not be whole; recovery retires the object (the
                     stub turns into its .cloud.drop marker)
  <min>.cloud        the stub of a partition whose object is whole in the cloud:
                     the file's index and footer, so opening costs no request
  <object>.cloud.drop  the object is retired (dropped on cloud, replaced by a
                     newer upload, or cut short): the marker is its stub, its
                     modification time when it was retired. The object is
                     removed once the cloud's removal_delay has passed (readers
                     of a manifest that named it find it until then), then the
                     marker; a partition has as many as it retired objects.
                     While the cloud cannot be reached a marker stays, and the
                     object is reported in the log
Every change of state is one rename (atomic), followed by a sync of the
directory when the storage syncs; removal likewise. Refresh, move, drop,
upload, download and recovery go through PartitionFiles; readers open a
partition through it (open: the local copy; open_cloud: the stub and object).
"""
from __future__ import annotations

import logging
import os
import re
import struct
import zlib

from .. import faults
from ..cloud import Cloud, CloudError
from ..errors import CorruptionError, MonotoneError
from ..format.crypto import cipher_of
from ..settings import Place
from ..shm.partition_map import ON_CLOUD, ON_STORAGE
from ..store import Fallback, ReadHandle, Store, WriteHandle
from . import fileformat as partition
from .cloud_file import CloudFile, object_name
from .fileformat import Identity
from .reader import Reader
from .region_cache import RegionCache

log = logging.getLogger("monotone")

INCOMPLETE = ".incomplete"
COMPLETE = ".complete"
STATES = (INCOMPLETE, COMPLETE)
CLOUD = ".cloud"
CLOUD_INCOMPLETE = ".cloud.incomplete"
CLOUD_DROP = ".cloud.drop"  # after an object's name: its retirement marker
APPEND = ".append"  # an append to the file under way: the size it had before
_MARK = struct.Struct("<QI")  # that size, its crc32
_NAME = re.compile(r"^(\d{1,20})(\.incomplete|\.complete|\.cloud|\.cloud\.incomplete|"
                   r"\.append)?$")
_RETIRED = re.compile(r"^((\d{20})\.[0-9a-f]{16})\.cloud\.drop\Z")


def file_name(min_: int, state: str = "") -> str:
    return f"{min_:020d}{state}"


def parse(name: str) -> tuple[int, str] | None:
    """(min, state) of a partition file's name, or None for other files (a
    retirement marker's state: CLOUD_DROP)."""
    m = _NAME.match(name)
    if m:
        return int(m.group(1)), m.group(2) or ""
    m = _RETIRED.match(name)
    return (int(m.group(2)), CLOUD_DROP) if m else None


def committed_size(directory: str, min_: int) -> int | None:
    """The size a partition file had before an append under way in it (its marker's),
    for readers with no partition map to ask (monotone.offline); None: no append."""
    try:
        fd = os.open(os.path.join(directory, file_name(min_, APPEND)),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        data = os.pread(fd, _MARK.size, 0)
    finally:
        os.close(fd)
    return _unmark(data)


def _mark(at: int) -> bytes:
    """An append marker's bytes: the size before, its crc32."""
    head = struct.pack("<Q", at)
    return head + struct.pack("<I", zlib.crc32(head))


def _unmark(data: bytes) -> int | None:
    """The size an append marker gives (None: not a whole marker)."""
    if len(data) != _MARK.size:
        return None
    at, crc = _MARK.unpack(data)
    return at if crc == zlib.crc32(data[:8]) else None


class PartitionFiles:
    """The partition files of one storage (sync: its `sync` option)."""

    def __init__(self, store: Store, sync: bool = True, objects: Cloud | None = None,
                 cache: RegionCache | None = None) -> None:
        self.store = store
        self.sync = sync
        self.objects = objects
        self.cache = cache  # where cold reads keep what they fetched (None: nowhere)
        # seconds a retired object stays in the cloud before it is removed
        self.delay = objects.settings.removal_delay / 1e6 if objects is not None else 0.0
        self._objects: dict[int, tuple[tuple, str]] = {}  # object_of's, by min

    def where(self, min_: int, state: str = "") -> str:
        """The file's place, for messages."""
        return f"{self.store.location}/{file_name(min_, state)}"

    def open(self, min_: int, size: int | None = None) -> ReadHandle:
        """The partition file; size: as committed (the partition map's file_size), so
        an append under way, past it, is not seen."""
        return self.store.open(file_name(min_), size)

    # appends: <min>.append holds the file's size before; the footer at the new end,
    # written last, says the append is whole
    def begin_append(self, min_: int, at: int) -> WriteHandle:
        """The marker of an append after the file's first at bytes, then the file
        open for it."""
        marker = self.store.create(file_name(min_, APPEND), self.sync)
        try:
            marker.write(_mark(at))
            marker.finish(self.sync)
        except BaseException:
            marker.abort()
            raise
        if self.sync:
            self.store.sync_dir()
        return self.store.append(file_name(min_), at, self.sync)

    def end_append(self, min_: int) -> None:
        """The append counts (the partition map names the new size), or was undone."""
        self.store.remove(file_name(min_, APPEND), self.sync)

    def abandon_append(self, min_: int, at: int) -> None:
        """An append that did not end (its worker died): the file back to its at bytes,
        whatever was written past them, and the marker gone."""
        if self.store.exists(file_name(min_, APPEND)):
            self.store.append(file_name(min_), at, self.sync).finish(self.sync)
            self.end_append(min_)

    def _settle_append(self, min_: int) -> None:
        """After a crash during an append: the file keeps it if it ends with a whole
        footer and index (written last), else it is cut back to its size before."""
        name, marker = file_name(min_), file_name(min_, APPEND)
        handle = self.store.open(marker)
        try:
            data = handle.read(0, _MARK.size)
        finally:
            handle.close()
        at = _unmark(data)
        if at is not None and self.store.exists(name):
            keep = self.store.size(name)
            if keep > at and not self._ends_whole(min_):
                log.warning("partition file %s: an append cut short, cut back to its %d "
                            "bytes before", self.where(min_), at)
                keep = at
            # opened to append at its end: blocks a writer allocated past it are freed
            self.store.append(name, keep, self.sync).finish(self.sync)
        self.end_append(min_)

    def _ends_whole(self, min_: int) -> bool:
        """Whether the file ends with a footer and the index it names, whole."""
        handle = self.store.open(file_name(min_))
        try:
            size = handle.size
            if size < partition.FOOTER.size:
                return False
            offset, length, crc, _ = partition.decode_footer(
                handle.read(size - partition.FOOTER.size, partition.FOOTER.size), handle.name)
            if offset + length + partition.FOOTER.size != size:
                return False
            partition.check_index(handle.read(offset, length), crc, handle.name)
            return True
        except CorruptionError:
            return False
        finally:
            handle.close()

    def create(self, min_: int) -> WriteHandle:
        """A new <min>.incomplete to write a partition file into."""
        return self.store.create(file_name(min_, INCOMPLETE), self.sync)

    def size(self, min_: int, state: str = "") -> int:
        return self.store.size(file_name(min_, state))

    def complete(self, min_: int) -> None:
        """<min>.incomplete -> <min>.complete: written whole (and synced)."""
        self.store.rename(file_name(min_, INCOMPLETE), file_name(min_, COMPLETE), self.sync)

    def install(self, min_: int) -> None:
        """<min>.complete -> <min>, in place of the old file in one step."""
        self.store.rename(file_name(min_, COMPLETE), file_name(min_), self.sync)

    def remove(self, min_: int) -> bool:
        """The partition file goes (a drop, or the source of a move)."""
        return self.store.remove(file_name(min_), self.sync)

    def same(self, other: "PartitionFiles", min_: int) -> bool:
        """Whether <min> here and in other is one file (storages sharing a place)."""
        return self.store.same(other.store, file_name(min_))

    def discard(self, min_: int) -> None:
        """Whatever a refresh of the partition left half done goes too."""
        for state in (*STATES, APPEND):
            self.store.remove(file_name(min_, state), False)

    def settle(self) -> dict[int, int]:
        """After a crash: finish or undo each half-done state; the partitions with a
        copy, and where (ON_STORAGE | ON_CLOUD bits; recovery, before anyone reads).
        Local steps only: a retired object keeps its .cloud.drop marker (retired())
        for the background, so an open never waits on a cloud."""
        found: dict[int, set[str]] = {}
        for name in self.store.list():
            parsed = parse(name)
            if parsed:
                found.setdefault(parsed[0], set()).add(parsed[1])
        places = {}
        for min_, states in found.items():
            if APPEND in states:  # the file with the append whole, or as before it
                self._settle_append(min_)
            if INCOMPLETE in states:  # the old file and the WAL are intact
                self.store.remove(file_name(min_, INCOMPLETE), self.sync)
            if COMPLETE in states:    # written whole: it replaces the old one
                self.install(min_)
                states.add("")
            if CLOUD_INCOMPLETE in states:  # an upload cut short: its object is retired
                if self.objects is None:
                    self.store.remove(file_name(min_, CLOUD_INCOMPLETE), self.sync)
                else:
                    self.retire(min_, CLOUD_INCOMPLETE)
            if CLOUD in states and CLOUD_DROP in states and self.objects is not None:
                live = self.object_of(min_)  # retired, then uploaded again: it stays
                self.store.remove(live + CLOUD_DROP, self.sync)
            where = (ON_STORAGE if "" in states else 0) | (ON_CLOUD if CLOUD in states else 0)
            if where:
                places[min_] = where
        return places

    # the cloud copy
    def _need_objects(self) -> Cloud:
        if self.objects is None:
            raise MonotoneError(f"storage {self.store.location} has no cloud")
        return self.objects

    def _stub(self, name: str) -> CloudFile:
        """The cloud file a stub (or a retirement marker, which is one) stands for."""
        return CloudFile.from_stub(self.store.open(name), self._need_objects(),
                                   int(name[:20]), cache=self.cache)

    def open_cloud(self, min_: int, fallback: Fallback | None = None) -> CloudFile:
        """A partition whose file is in the cloud: index from the stub, regions by GET
        (fallback: what to do when the object goes while it is read)."""
        return CloudFile.from_stub(self.store.open(file_name(min_, CLOUD)),
                                   self._need_objects(), min_, fallback, self.cache)

    def object_of(self, min_: int) -> str:
        """The name of the partition's object (its stub's; remembered while the stub
        is the same file)."""
        name = file_name(min_, CLOUD)
        st = os.lstat(self.store.path(name))
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        known = self._objects.get(min_)
        if known is None or known[0] != key:
            known = self._objects[min_] = (key, self._stub(name).object)
        return known[1]

    def upload(self, min_: int, switches=()) -> None:
        """The local file's copy into the cloud: stub as .cloud.incomplete, the object,
        then the stub renamed to .cloud. Where an object the partition retired is
        still there and the local file begins with it (an appending refresh keeps
        every byte of the file it appends to), only the rest is sent, where the cloud
        can copy within its store (Cloud.put_extending)."""
        objects = self._need_objects()
        if self.store.exists(file_name(min_, CLOUD_INCOMPLETE)):  # an attempt cut short:
            self.retire(min_, CLOUD_INCOMPLETE)  # its object may be there, whole or not
        local = self.store.open(file_name(min_))
        try:
            footer = local.read(local.size - partition.FOOTER.size, partition.FOOTER.size)
            offset, _, _, _ = partition.decode_footer(footer, local.name)
            tail = local.read(offset, local.size - offset)
            source, prefix, prefix_end = self._extended(min_, local)
        finally:
            local.close()
        name = object_name(min_, tail)
        stub = self.store.create(file_name(min_, CLOUD_INCOMPLETE), self.sync)
        try:
            stub.write(tail)
            stub.finish(self.sync)
        except BaseException:
            stub.abort()
            raise
        # these very bytes retired before are live again: their removal is moot
        self.store.remove(name + CLOUD_DROP, self.sync)
        try:
            faults.point("upload", switches)
            path = self.store.path(file_name(min_))
            if not (source and objects.put_extending(path, name, source, prefix, prefix_end)):
                objects.put(path, name)
            faults.point("upload.sent")
        except BaseException:
            # the object may be there in part or whole (a PUT cut short on our side
            # may still complete): it is retired, as recovery would retire it
            retired = self.retire(min_, CLOUD_INCOMPLETE)
            if retired and self.delay <= 0:
                self.finish_drop(retired)
            raise
        self.store.rename(file_name(min_, CLOUD_INCOMPLETE), file_name(min_, CLOUD), self.sync)

    def _extended(self, min_: int, local: ReadHandle) -> tuple[str, int, bytes]:
        """(object, size, index and footer) of an object the partition retired that the
        local file begins with (the longest), else ("", 0, b"")."""
        best = ("", 0, b"")
        for marker in self._markers(min_):
            try:
                old = self._stub(marker)
            except MonotoneError:
                continue
            if old.size <= best[1] or old.size >= local.size or \
                    local.read(old.start, len(old.tail)) != old.tail:
                continue
            best = (old.object, old.size, old.tail)
        return best

    def _markers(self, min_: int | None = None) -> list[str]:
        """The retirement markers (of partition min_, or all), by name."""
        return [n for n in self.store.list() if (m := _RETIRED.match(n)) and
                (min_ is None or int(m.group(2)) == min_)]

    def download(self, min_: int, switches=(), *, place: Place) -> None:
        """The cloud object as the local file: <min>.incomplete, verified, synced,
        renamed. place: the partition's storage (its uuid and key)."""
        objects = self._need_objects()
        incomplete = file_name(min_, INCOMPLETE)
        self.store.remove(incomplete, False)  # a failed attempt's
        # made private first: the download writes into a file of ours, 0600
        self.store.create(incomplete, False).finish(False)
        try:
            stub = self.open_cloud(min_)
            objects.get(stub.object, self.store.path(incomplete))
            self._verify_download(min_, stub, place)
            if self.sync:
                self.store.fsync(incomplete)
            faults.point("download", switches)
        except BaseException:
            self.store.remove(incomplete, False)
            raise
        self.store.rename(incomplete, file_name(min_), self.sync)

    def _verify_download(self, min_: int, stub: CloudFile, place: Place) -> None:
        """A downloaded object (<min>.incomplete) is installed only when it is the
        file its stub describes (size, index and footer byte for byte) and reads
        whole as the partition, as a cursor would read it: every region's checksum,
        seal (the storage's key, the partition's identity) and index entry. The
        object comes from a store others may write to; once installed, it is
        trusted as the local copy."""
        where = stub.name
        local = self.store.open(file_name(min_, INCOMPLETE))
        try:
            if local.size != stub.size or \
                    local.read(stub.start, stub.size - stub.start) != stub.tail:
                raise CloudError(f"{where}: downloaded object does not match its stub")
        except BaseException:
            local.close()
            raise
        try:
            with Reader(local, cipher_of(place.key), Identity(place.uuid, min_)) as reader:
                for i in range(reader.index.regions):
                    reader.read_region(i)
        except MonotoneError as e:
            raise CorruptionError(f"{where}: downloaded object refused, not installed: "
                                  f"{e}") from None

    def retired(self) -> list[tuple[str, float]]:
        """(object, when it was retired) of every object waiting for its removal."""
        out = []
        for marker in self._markers():
            try:
                out.append((marker[:-len(CLOUD_DROP)], self.store.mtime(marker)))
            except FileNotFoundError:
                continue  # removed meanwhile
        return out

    def retire(self, min_: int, state: str = CLOUD) -> str:
        """The object of the partition's stub (state: CLOUD, or CLOUD_INCOMPLETE for an
        upload cut short) is retired: the stub, its time set to now, becomes the
        object's .cloud.drop marker (one rename: a crash leaves the stub or the
        marker). Its name; "" when the stub was not whole (an upload cut short before
        its object was sent: nothing to remove), the stub removed."""
        name = file_name(min_, state)
        try:
            object_ = self._stub(name).object
        except CorruptionError:
            self.store.remove(name, self.sync)
            return ""
        self.store.touch(name)
        self.store.rename(name, object_ + CLOUD_DROP, self.sync)
        self._objects.pop(min_, None)
        return object_

    def drop_stub(self, min_: int) -> None:
        """Step 1 of a drop on cloud (after readers stop choosing the cloud copy): its
        object is retired (removed after removal_delay by finish_drop)."""
        self.retire(min_, CLOUD)

    def finish_drop(self, object_: str) -> bool:
        """Remove a retired object, then its marker; the partition's live object
        (the same bytes uploaded again) stays. False (the object reported, the
        marker kept for next time) when the cloud fails."""
        marker = object_ + CLOUD_DROP
        if not self.store.exists(marker):
            return True
        min_ = int(object_[:20])
        live = self.store.exists(file_name(min_, CLOUD)) and self.object_of(min_) == object_
        if not live:
            try:
                self._need_objects().remove(object_)
            except MonotoneError as e:
                log.warning("partition %d: its retired object %s could not be removed from "
                            "the cloud (%s); removal is retried later", min_, object_, e)
                return False
        self.store.remove(marker, self.sync)
        return True

    def drop_local(self, min_: int) -> None:
        """The local copy goes (its cloud copy stays)."""
        self.store.remove(file_name(min_), self.sync)
