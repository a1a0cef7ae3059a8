"""A process's open repository: its coordinator, the shared memory it maps, its config.

The session finds or starts the coordinator (connection.py), maps the
partition map, and reattaches to a new coordinator when its own dies. The
write path (writer.py) and the read path (snapshot.py) do the data path
themselves through it: the coordinator is only asked to create partitions
and to run commands.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from .append import Shared
from .background import Background
from .boundary import ShmError, translate
from .config import lock_timeout, setting
from .connection import Connection
from .errors import CoordinatorError, MonotoneError
from .protocol import GetConfig
from .repository import Layout, open_base
from .settings import ClientConfig
from .shm.locks import STATS, Held, LockFile
from .shm.memtable import MemtableCache
from .shm.partition_map import PartitionMap
from .snapshot import Snapshots
from .wal.writer import WalWriter
from .writer import Writer


class Session:
    def __init__(self, base: str, settings: dict) -> None:
        self.pid = os.getpid()
        self.lock = threading.RLock()  # one operation at a time per process and session
        self.settings = settings
        # made 0700, or checked: its owner's only
        self.dirfd = open_base(base, setting(settings, "strict_modes"))
        self.layout = Layout(base)
        try:
            self.locks = LockFile(self.layout.lock, timeout=lock_timeout(settings))
        except ShmError as e:
            os.close(self.dirfd)
            raise translate(e) from None
        self.conn: Connection | None = None
        self.background = Background()
        self.generation = 0
        try:
            self._attach()
        except BaseException as e:
            self.locks.close()
            os.close(self.dirfd)
            if isinstance(e, ShmError):  # a lock not granted in time, mostly
                raise translate(e) from None
            raise
        self.writer = Writer(self)
        self.snapshots = Snapshots(self)

    # the coordinator
    def _attach(self) -> None:
        self.generation += 1  # one per coordinator
        self.conn = Connection(self.layout, self.dirfd, self.locks, self.settings,
                               self._on_death)
        hello = self.conn.hello
        self.layout.token = hello["token"]  # the coordinator's segment names
        try:
            self.pmap = PartitionMap.attach(hello["catalog"])
        except ShmError as e:
            self.conn.close()
            raise translate(e) from None
        self.layout.key = self.pmap.name_key
        self.config = ClientConfig.from_json(hello["config"])
        self.config_version = self.pmap.config_version
        self.memtables = MemtableCache(self.layout.memtable, self.background.submit)
        self.wal = WalWriter(self.layout.wal, self.background, uuid=self.config.values["uuid"])
        self.shared = Shared(self.pmap, self.locks, self.memtables, self.layout.wal)
        self.map_version = -1
        self.bounds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.bound_lists: tuple[list, list, list] = ([], [], [])  # the same, for bisect

    def _on_death(self, conn: Connection) -> None:
        """The coordinator died: stop writing into its shared memory (runs in the watcher)."""
        with self.lock:  # after any write in flight
            if conn is self.conn and not conn.dead:
                self.wal.close()
                conn.detach()

    def live(self) -> None:
        """Before each operation: reattach to a new coordinator if ours died."""
        if os.getpid() != self.pid:
            raise MonotoneError("this Monotone handle was opened in another process (before "
                                "fork): open the repository again in this process")
        if self.conn.dead:
            self.conn.close()
            self.memtables.close()
            self.pmap.close()
            try:
                self._attach()  # the new coordinator recovered everything from the WAL
            except ShmError as e:
                raise translate(e) from None

    def request(self, message) -> dict:
        with self.lock:
            self.live()
            try:
                return self.conn.request(message)
            except CoordinatorError:
                self.lost()  # the next operation starts a new coordinator
                raise CoordinatorError("the coordinator died during the request (it may or "
                                       "may not have run): try again") from None

    def lost(self) -> None:
        """A request found the coordinator gone: detach now, the watcher may be late."""
        if not self.conn.dead:
            self.wal.close()
            self.conn.detach()

    def cfg(self) -> ClientConfig:
        """The config, fetched again when the coordinator says it changed."""
        version = self.pmap.config_version
        if version != self.config_version:
            self.config = ClientConfig.from_json(self.conn.request(GetConfig())["config"])
            self.config_version = version
        return self.config

    def partitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The live partitions' (slots, mins, maxes), kept until the map changes;
        memtables no partition uses any more are unmapped then."""
        version = self.pmap.map_version
        if version != self.map_version or self.bounds is None:
            self.memtables.prune(self.pmap.in_use())
            self.bounds = self.pmap.bounds()
            self.bound_lists = tuple(column.tolist() for column in self.bounds)
            self.map_version = version
        return self.bounds

    def count_cold_reads(self) -> None:
        """Add what this process's cold reads cost since last time to the counters
        SHOW CACHE shows (a lock of the repository's, shortly: at a cursor's end and
        before a SHOW, not at every read)."""
        if os.getpid() != self.pid:
            return  # a fork's: its inherited lock would not exclude the parent
        counts = self.snapshots.cache.take_counts()
        if not any(counts.values()):
            return
        with self.lock:
            if self.conn.dead or self.pmap is None:
                return
            try:
                with Held(self.locks, STATS):
                    self.pmap.add_cold_reads(counts)
            except ShmError as e:
                raise translate(e) from None

    def after_command(self, lsn_needed: int) -> None:
        with self.lock:
            self.wal.drop_if_obsolete(lsn_needed)

    def close(self) -> None:
        if os.getpid() != self.pid:
            return
        with self.lock:
            if not self.conn.dead:
                # no request: it may be gone
                self.wal.close(self.config.values["wal_sync_on_rotate"])
            self.background.close()  # rotated WAL files synced and closed
            self.memtables.close()
            self.pmap.close()
        self.conn.close()  # outside the lock: the watcher may need it to finish
        self.locks.close()
        os.close(self.dirfd)
