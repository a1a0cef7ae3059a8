"""The coordinator's view of a repository: config, catalog, partitions, files."""
from __future__ import annotations

import logging
import os
import secrets
import time
from contextlib import contextmanager

import numpy as np

from monotone.append import Shared, append
from monotone.cloud import objects_of
from monotone.config import Config, applied, lock_timeout, lookup, setting
from monotone.connection import START_WAITS, serving
from monotone.errors import AccessDenied, MonotoneError
from monotone.format.crypto import Cipher, cipher_of
from monotone.format.rows import MAX_ID, Rows, sort_dedup
from monotone.partition.files import PartitionFiles
from monotone.repository import UUID_DIR, Layout, open_base
from monotone.settings import Place, Storage, read_config, write_config
from monotone.shm import private, segment
from monotone.shm.errors import ShmError, Untrusted
from monotone.shm.locks import ATTACHED, COORDINATOR, SEQUENCE, Held, LockFile, holders
from monotone.shm.memtable import MemtableCache
from monotone.shm.partition_map import FileStats, PartitionMap
from monotone.store import store_of
from monotone.wal.files import wal_files
from monotone.wal.writer import WalWriter

from .catalog import MAIN, Catalog
from .claims import Claims
from .partitions import Partitions, untaken

log = logging.getLogger("monotone")
SLOTS = 1 << 14  # the catalog is backed whole: 4 MiB


def file_stats(meta: dict) -> FileStats:
    """What the partition map keeps of a partition file, from its meta (with file_size)."""
    return FileStats(lsn=int(meta.get("lsn", 0)), events=int(meta["events"]),
                     size=int(meta["file_size"]), size_origin=int(meta["size_uncompressed"]),
                     regions=int(meta["regions"]), refreshed=int(meta.get("refreshed", 0)),
                     refreshes=int(meta.get("refreshes", 0)))


class AlreadyServed(Exception):
    """Another coordinator serves the repository: its message says which process."""


class Engine:
    def __init__(self, base: str, settings: dict) -> None:
        self.strict = setting(settings, "strict_modes")
        # the directory, checked and held: the socket is reached through it
        self.dirfd = open_base(base, self.strict)
        self.layout = Layout(base)
        self.config = Config()
        self.catalog = Catalog()
        self.closed = False
        self.mapped = False
        self.locks: LockFile | None = None
        self.owner = False             # holds COORDINATOR: the repository's segments are ours
        self.storage_files: dict[int, PartitionFiles] = {}  # by storage id, as the catalog says
        # when a cloud storage's next retired object is due for removal (time.time()),
        # by storage id (cloud_tier.remove_retired)
        self.removal_due: dict[int, float] = {}
        # cloud copies a manifest keeps naming while their partition is rewritten, by
        # (storage id, min) (cloud_tier.keep_listed)
        self.listed: dict[tuple[int, int], dict] = {}
        # the objects each cloud storage's current manifest names, once one was written
        # since the open, by storage id (cloud_tier.write_manifest)
        self.published: dict[int, set[str]] = {}
        self.generations: dict[int, int] = {}  # ... and the generation of that manifest
        # variables set for this open only (Monotone.open(persist=False)): the value the
        # config file keeps for each, by name
        self.unsaved: dict[str, object] = {}
        self.pool = None               # the worker pools (merges, uploads), for SHOW WORKERS
        self.uploads = None
        try:
            self._start(settings)
        except BaseException:
            self.close()  # leaves no segment behind, whatever failed
            raise

    def _start(self, settings: dict) -> None:
        timeout = lock_timeout(settings)
        self.locks = LockFile(self.layout.lock, timeout=timeout)
        self._elect(timeout)
        self.owner = True
        # and for every client of a coordinator that died to stop writing
        with Held(self.locks, ATTACHED):
            pass
        for name in segment.list_segments(self.layout.id):
            segment.unlink(name)     # left by a coordinator that was killed
        self._load_config(settings)
        try:
            private.make_dir(self.layout.wal, ancestors=False)  # always ours alone
        except Untrusted as e:
            raise AccessDenied(f"cannot use the WAL directory: {e}") from None
        except OSError as e:
            raise MonotoneError(f"cannot use the WAL directory {self.layout.wal}: "
                                f"{e.strerror}") from None
        def catalog():  # under a name with a part nobody can guess
            self.layout.token = secrets.token_hex(8)
            return PartitionMap.create(self.layout.catalog, SLOTS)
        self.pmap = untaken(catalog, "the catalog")
        self.pmap.pid = os.getpid()
        self.layout.key = self.pmap.name_key
        self.mapped = True
        self.memtables = MemtableCache(self.layout.memtable)
        self.shared = Shared(self.pmap, self.locks, self.memtables, self.layout.wal)
        self.partitions = Partitions(self.shared, self.layout)
        self.claims = Claims(self.partitions)  # which task works on which partition
        self.wal = WalWriter(self.layout.wal, uuid=self.config.uuid)  # drop records

    def _elect(self, timeout: float) -> None:
        """Become the repository's only coordinator (COORDINATOR), waiting for a
        previous one to be gone (it may be saving what it holds); AlreadyServed when
        one serves."""
        start = time.monotonic()
        while not self.locks.try_lock(COORDINATOR):
            if serving(self.dirfd, self.layout.socket, timeout):
                raise AlreadyServed(holders(self.locks, COORDINATOR))
            if time.monotonic() - start >= timeout * START_WAITS:
                raise MonotoneError(f"{self.layout.base}: another coordinator holds the "
                                    "repository and does not answer: "
                                    f"{holders(self.locks, COORDINATOR)}")
            time.sleep(0.01)

    # config and catalog
    def _load_config(self, settings: dict) -> None:
        cfg = self.config
        path = self.layout.config
        exists = os.path.lexists(path)
        if exists:
            try:
                stored = read_config(path)
                cfg.load(stored.values)
                self.catalog = Catalog.load(stored)
            except Untrusted as e:
                raise AccessDenied(f"cannot read {path}: {e}") from None
            except (OSError, ValueError, TypeError, MonotoneError) as e:
                raise MonotoneError(
                    f"cannot read {path}: {e}. Nothing was changed; restore the file "
                    "from a backup (or undo the edit) and open again") from None
        else:
            self._refuse_without_config()
        values, once = applied(settings)
        for name, value in values.items():
            if name == "uuid" and exists:
                continue
            self.set(name, value, opened=False, persist=name not in once)
        cfg.ensure_uuid()
        cfg.values["directory"] = self.layout.base
        if not exists:
            # the storage's own sync stays true, as the original's: the global
            # `sync` switches syncing off for every storage (syncs())
            main = Storage(MAIN, id=0, uuid=cfg.uuid, compression=cfg.compression,
                           compression_level=cfg.compression_level)
            self.catalog.storages.insert(0, main)
        elif self.catalog.need_storage(MAIN).uuid != cfg.uuid:
            raise MonotoneError(f"cannot read {self.layout.config}: the repository uuid and "
                                "the main storage's uuid differ (the file was damaged or "
                                "edited): restore it and open again")
        self._prepare_storages(create=not exists)
        self.save_config()

    def _refuse_without_config(self) -> None:
        """A directory holding a repository's files but no config.json is not new:
        a fresh config would not know its storages (and its uuid) and hide them."""
        base = self.layout.base
        found = [os.path.join(base, "wal")] if wal_files(self.layout.wal) else []
        for name in os.listdir(base):
            if UUID_DIR.match(name) and os.path.isdir(os.path.join(base, name)) and \
                    os.listdir(os.path.join(base, name)):
                found.append(os.path.join(base, name))
        if found:
            raise MonotoneError(f"{self.layout.config} is missing, but {base} holds a "
                                f"repository's files ({', '.join(found[:3])}): restore "
                                "config.json; a new one would not know its storages")

    def _prepare_storages(self, create: bool = True) -> None:
        """Check the catalog and make every storage's directory (before anything is saved).

        Opening an existing repository makes none: a storage directory that is not
        there (a volume not mounted, a path or uuid changed in config.json) is an
        error, not a new empty storage that would hide its partitions."""
        self.catalog.check()
        seen: dict[str, str] = {}
        for storage in self.catalog.storages:
            directory = self.directory(storage)
            if not create and not os.path.isdir(directory):
                raise MonotoneError(
                    f"storage '{storage.name}': its directory {directory} is missing (a "
                    "volume not mounted, or config.json damaged or edited?): make it "
                    "available and open again")
            try:
                private.make_dir(directory, ancestors=self.strict)
            except Untrusted as e:
                raise AccessDenied(f"storage '{storage.name}': {e}") from None
            except (OSError, ValueError, ShmError) as e:
                raise MonotoneError(f"storage '{storage.name}': cannot use directory "
                                    f"{directory}: {getattr(e, 'strerror', None) or e}") from None
            real = os.path.realpath(directory)
            if real in seen:
                raise MonotoneError(f"storages '{seen[real]}' and '{storage.name}' would "
                                    f"share the directory {real}")
            seen[real] = storage.name

    def set(self, name: str, value, *, opened: bool, persist: bool = True) -> None:
        """SET a variable; persist=False keeps the config file's value of it (what it
        was before) until a SET that persists."""
        name = lookup(name).name
        before = self.config.values[name]
        self.config.set(name, value, opened=opened)
        if persist or name in ("uuid", "ssn"):  # the repository's identity, its counter
            self.unsaved.pop(name, None)
        else:
            self.unsaved.setdefault(name, before)

    def save_config(self) -> None:
        data = self.config.persisted()
        data.update((name, value) for name, value in self.unsaved.items() if name in data)
        if self.mapped:
            data["ssn"] = self.pmap.ssn
        write_config(self.layout.config, self.catalog.file(data), sync=self.config.sync)

    @contextmanager
    def changing(self):
        """Change config or catalog: checked and applied (directories made) before it is
        persisted; on any failure nothing of the change remains."""
        catalog, values, unsaved = self.catalog.copy(), dict(self.config.values), \
            dict(self.unsaved)
        try:
            yield
            self._prepare_storages()
            self.save_config()
        except BaseException:
            self.catalog, self.config.values, self.unsaved = catalog, values, unsaved
            raise
        finally:
            self.storage_files.clear()  # made again from the catalog as it is now
            self.published.clear()  # a storage's cloud may have changed: written anew
            self.generations.clear()
        self.pmap.bump("config_version")  # clients fetch the config again

    def client_config(self) -> dict:
        cfg = dict(self.config.values)
        cfg["ssn"] = self.pmap.ssn
        cfg["lsn"] = self.pmap.lsn
        cfg["storages"] = self.catalog.for_clients(self.layout.base)
        return cfg

    def lsn_needed(self) -> int:
        """The oldest lsn only in memory (under SEQUENCE: no write in flight is missed)."""
        with Held(self.locks, SEQUENCE):
            return self.pmap.lsn_needed()

    # storages and files
    def directory(self, storage: Storage) -> str:
        return storage.directory(self.layout.base)

    def storage_of(self, slot: int) -> Storage:
        return self.catalog.storage_by_id(self.pmap.slot(slot).storage)

    def store(self, storage: Storage) -> Place:
        """Where a storage's files are (its directory, its cloud), as a worker's job
        carries it (store.store_of, cloud.objects_of)."""
        return self.catalog.place(storage, self.layout.base)

    def files(self, storage: Storage) -> PartitionFiles:
        """A storage's partition files."""
        files = self.storage_files.get(storage.id)
        if files is None:
            place = self.store(storage)
            files = PartitionFiles(store_of(place), self.syncs(storage), objects_of(place))
            self.storage_files[storage.id] = files
        return files

    def syncs(self, storage: Storage) -> bool:
        """Whether a storage's files are synced: its `sync`, unless the global one is off."""
        return storage.sync and self.config.sync

    @staticmethod
    def cipher(storage: Storage) -> Cipher | None:
        return cipher_of(storage.encryption_key if storage.encryption else "")

    # partitions
    def ensure_partitions(self, ids) -> bool:
        """Create the partitions that ids fall in but no partition covers yet: as the
        original, every gap of the interval an id falls in ([id - id % interval,
        + interval - 1]) becomes a partition, not only the one holding the id.
        Whether any was created."""
        ids = np.unique(np.asarray(ids, np.uint64))
        _, inside = self.pmap.route(self.pmap.bounds(), ids)
        missing = ids[~inside]
        interval = self.config.interval
        done = -1
        for id_ in missing.tolist():  # sorted: skip ids of an interval already filled
            if id_ <= done:
                continue
            lo = id_ - id_ % interval
            done = min(lo + interval - 1, MAX_ID)
            self.fill(lo, done)
        return len(missing) > 0

    def fill(self, lo: int, hi: int) -> int:
        """Create partitions over the gaps of [lo, hi], in the first storage of the
        pipeline; the last one's max (-1: none)."""
        last = -1
        while lo <= hi:
            live, mins, maxs = self.pmap.bounds()
            i = int(np.searchsorted(maxs, np.uint64(lo), side="left"))
            if i < len(live) and mins[i] <= lo:
                lo = int(maxs[i]) + 1       # covered: skip past this partition
                if lo == 0:
                    break                    # wrapped past 2**64-1
                continue
            gap_hi = min(hi, int(mins[i]) - 1) if i < len(live) else hi
            self.partitions.add(lo, gap_hi, self.catalog.first_tier())
            last = gap_hi
            lo = gap_hi + 1
            if lo == 0:
                break
        return last

    def apply(self, rows: Rows, lsn: int) -> None:
        """Replay one WAL batch into memtables (recovery), partition by partition,
        leaving out the partitions whose file holds it already."""
        rows = sort_dedup(rows)
        self.ensure_partitions(rows.ids)
        bounds = self.pmap.bounds()
        which, _ = self.pmap.route(bounds, rows.ids)
        cuts = np.flatnonzero(np.diff(which)) + 1
        starts, ends = [0] + cuts.tolist(), cuts.tolist() + [len(rows)]
        parts = []
        for a, b in zip(starts, ends):
            slot = int(bounds[0][which[a]])
            if lsn > self.pmap.slot(slot).file_lsn:
                parts.append((slot, rows.slice(a, b)))
        if parts:
            append(self.shared, parts, lsn=lsn)

    def close(self) -> None:
        """Stop using the repository; whatever fails, no segment of it is left."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.mapped:
                self._close_slots()
        finally:
            if self.owner:
                for name in segment.list_segments(self.layout.id):
                    segment.unlink(name)
        # The lock file stays open: the kernel drops COORDINATOR when this process
        # exits, so a client waiting on it knows the coordinator is really gone.
        os.close(self.dirfd)  # the listener, reached through it, is closed already

    def _close_slots(self) -> None:
        try:
            self.save_config()
        except OSError as e:  # the directory may be gone
            log.error("cannot save %s at close: %s", self.layout.config, e)
        self.wal.close()
        self.memtables.close()
        self.pmap.close()
