"""The read path of a process: consistent snapshots of the partitions, for cursors.

A snapshot is taken under PUBLISH shared, so no batch is half published in
it and no refresh switches a file meanwhile. The first EAGER partitions are
opened right away (file descriptors and memtable mappings stay valid however
the partition changes later); the rest are opened when the cursor gets there,
and if a refresh switched one meanwhile it is read as it is then. A reverse
cursor opens only the partition it starts in at once: it is mostly asked for
the last events, and the tail of a repository should cost one partition
however many there are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .boundary import ShmError, translate
from .cloud import objects_of
from .errors import CoordinatorError, MonotoneError
from .format.crypto import Cipher, cipher_of
from .format.rows import MAX_ID
from .partition.fileformat import Identity
from .partition.files import PartitionFiles
from .partition.reader import Reader
from .partition.region_cache import RegionCache
from .settings import ClientConfig
from .shm.locks import PUBLISH, Held
from .shm.memtable import Memtable
from .shm.partition_map import ON_STORAGE, Slot
from .store import Fallback, store_of

EAGER = 256  # partitions a cursor opens when it takes its snapshot
EAGER_REVERSE = 1  # the same, walking down


@dataclass
class Opened:
    """A partition opened for reading: its file (if any) and memtables with row counts."""
    reader: Reader | None = None
    memtables: list[tuple[Memtable, int]] = field(default_factory=list)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


@dataclass
class View:
    """A partition in a snapshot: its slot, its row as of the snapshot, and what
    was opened of it (None: opened when a cursor gets there)."""
    slot: int
    row: Slot
    opened: Opened | None = None


@dataclass
class Snapshot:
    generation: int  # of the coordinator it was taken under
    views: list[View]


class Snapshots:
    def __init__(self, session) -> None:
        self.session = session
        self.storages: dict[int, tuple] = {}
        self.cache = RegionCache(session.layout.base)  # sized by each config

    def take(self, start_id: int = 0, max_id: int = MAX_ID, reverse: bool = False) -> Snapshot:
        """Every partition holding ids in start_id..max_id, as of now, in the order
        a cursor walks them: by min, or from the last one down with reverse."""
        session = self.session
        # the session lock too: OFD locks do not exclude threads sharing a descriptor
        with session.lock:
            session.live()
            session.partitions()  # unmaps memtables that refreshes retired
            try:
                views = self._under_publish(
                    lambda cfg: self._views(start_id, max_id, reverse, cfg))
            except ShmError as e:
                raise translate(e) from None
            return Snapshot(session.generation, views)

    def open(self, snapshot: Snapshot, view: View) -> Opened:
        """A partition's file reader and memtables, as of the snapshot row (if a refresh
        switched the partition since, as it is now: the same events, newer appends too)."""
        session = self.session
        with session.lock:
            session.live()
            if snapshot.generation != session.generation:
                raise CoordinatorError("the coordinator restarted while this cursor was "
                                       "reading: open a new cursor")
            try:
                try:
                    return self._under_publish(lambda cfg: self._reopen(view, cfg))
                except ShmError as e:
                    raise translate(e) from None
            except MonotoneError:
                if session.conn.dead:  # its memory went with it
                    raise CoordinatorError("the coordinator died while this cursor was "
                                           "reading: open a new cursor") from None
                raise

    def _views(self, start_id: int, max_id: int, reverse: bool,
               cfg: ClientConfig) -> list[View]:
        views: list[View] = []
        eager = EAGER_REVERSE if reverse else EAGER
        try:
            slots, rows = self.session.pmap.snapshot()
            step = -1 if reverse else 1
            for slot, row in zip(slots.tolist()[::step], rows[::step]):
                row = Slot(row)
                if row.max < start_id or row.min > max_id:
                    continue  # partition exclusion
                opened = self._open(slot, row, cfg) if len(views) < eager else None
                views.append(View(slot, row, opened))
        except BaseException:
            for view in views:
                if view.opened is not None:
                    view.opened.close()
            raise
        return views

    def _under_publish(self, read):
        """read(cfg) under PUBLISH shared, with a config no older than the map.

        The config is fetched first: asking the coordinator while holding PUBLISH
        would wait on a coordinator that may itself wait for PUBLISH. A storage
        a partition moved into exists in a config no older than the move, and a
        move happens under PUBLISH exclusive: so a config whose version is still
        current under the lock knows every storage the map names."""
        session = self.session
        while True:
            cfg = session.cfg()
            try:
                with Held(session.locks, PUBLISH, exclusive=False):
                    if session.pmap.config_version == session.config_version:
                        return read(cfg)
            except ShmError as e:  # the lock not granted in time
                raise translate(e) from None

    def _reopen(self, view: View, cfg: ClientConfig) -> Opened:
        pmap = self.session.pmap
        current = pmap.slot(view.slot)
        row = view.row
        if not current.live or current.min != row.min:
            return Opened()  # dropped since
        if current.tables() != row.tables():
            row = current.copy()
            pmap.visible(row.row)
        elif current.places != row.places:  # a copy came or went: the same file
            row = row.copy()
            row.places = current.places
        return self._open(view.slot, row, cfg)

    def _open(self, slot: int, row: Slot, cfg: ClientConfig) -> Opened:
        """File reader and memtables of a slot row (PUBLISH held)."""
        reader = None
        if row.gen:
            files, cipher, uuid = self.storage(row.storage, cfg)
            if row.places & ON_STORAGE:
                handle = files.open(row.min, row.file_size)
            else:
                handle = files.open_cloud(row.min, self._fallback(slot, row.min, row.gen, files))
            reader = Reader(handle, cipher, Identity(uuid, row.min))
        get = self.session.memtables.get
        return Opened(reader, [(get(seg), n) for seg, n in row.memtables()])

    def _fallback(self, slot: int, min_: int, gen: int, files: PartitionFiles) -> Fallback:
        """What a cloud file of a partition does when its object goes (a drop on
        cloud, as a refresh of it begins): the local copy is the same file while
        the partition's generation is the same."""
        def copy():
            return self._if_current(slot, min_, gen, lambda s: files.open(min_, s.file_size)
                                    if s.places & ON_STORAGE else None)

        def current() -> bool:
            return self._if_current(slot, min_, gen, lambda s: True) is not None

        return Fallback(copy, current)

    def _if_current(self, slot: int, min_: int, gen: int, then):
        """then(the partition's slot row) while its generation is gen, else None."""
        session = self.session

        def check(cfg):
            s = session.pmap.slot(slot)
            return then(s) if s.live and s.min == min_ and s.gen == gen else None

        with session.lock:
            session.live()
            try:
                return self._under_publish(check)
            except ShmError as e:
                raise translate(e) from None

    def storage(self, id_: int,
                cfg: ClientConfig) -> tuple[PartitionFiles, Cipher | None, str]:
        """Partition files, cipher and uuid of a storage, by its id (kept per config)."""
        cached = self.storages.get(id_)
        if cached is None or cached[0] is not cfg:
            place = cfg.storages[id_]
            cipher = cipher_of(place.key)
            self.cache.resize(int(cfg.values.get("mm_cache", 0)))
            files = PartitionFiles(store_of(place), objects=objects_of(place), cache=self.cache)
            cached = self.storages[id_] = (cfg, files, cipher, place.uuid)
        return cached[1], cached[2], cached[3]
