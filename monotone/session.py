"""A process's connection to an open repository.

It finds or starts the coordinator, maps the catalog, and then does the data
path itself: routing a batch to partitions, the WAL append, memtable appends,
and the snapshots cursors read from. The coordinator is only asked to create
partitions (once per partition) and to run commands.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from monotone.shm.catalog import (
    H_CONFIG_VERSION,
    H_LIMIT_HITS,
    H_MAP_VERSION,
    H_SSN,
    H_WAL_NEEDED,
    LIVE,
    S_ACTIVE,
    S_FROZEN,
    S_FROZEN_ROWS,
    S_GEN,
    S_HEAP,
    S_HINTED,
    S_MAX,
    S_MIN,
    S_ROWS,
    S_STATE,
    S_STORAGE,
    Catalog,
    heap_total,
)
from monotone.shm.locks import PUBLISH, SEQUENCE, Held, LockFile
from monotone.shm.memtable import MemtableCache

from . import faults
from .boundary import ShmError, translate
from .background import Background
from .connection import Connection
from .errors import CoordinatorError, MemtableFull, MonotoneError
from .format import wal as walfmt
from .format.crypto import Cipher, parse_key
from .partfile import Reader, file_name
from .repository import Layout
from .format.rows import Rows, sort_dedup
from .wal import WalWriter
from .writer import Moved, Shared, append

SERIAL = 2**64 - 1
EAGER = 256  # partitions a cursor opens when it takes its snapshot


class Session:
    def __init__(self, base: str, settings: dict) -> None:
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.settings = settings
        self.layout = Layout(_make_dir(base))
        try:
            self.locks = LockFile(self.layout.lock)
        except ShmError as e:
            raise translate(e) from None
        self.conn: Connection | None = None
        self.background = Background()
        try:
            self._attach()
        except BaseException:
            self.locks.close()
            raise

    # coordinator
    def _attach(self) -> None:
        self.generation = getattr(self, "generation", 0) + 1  # one per coordinator
        self.conn = Connection(self.layout.base, self.layout.log, self.locks, self.settings,
                               self._on_death)
        hello = self.conn.hello
        try:
            self.catalog = Catalog.attach(hello["catalog"])
        except ShmError as e:
            self.conn.close()
            raise translate(e) from None
        self.config = hello["config"]
        self.config_version = self.catalog.get(H_CONFIG_VERSION)
        self.memtables = MemtableCache(self.layout.memtable, self.background.submit)
        self.wal = WalWriter(self.layout.wal, self.background)
        self.shared = Shared(self.catalog, self.locks, self.memtables, self.layout.wal)
        self._switched: tuple = (None, frozenset())
        self.map_version = -1
        self.map: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.ciphers: dict[int, tuple] = {}

    def _on_death(self, conn: Connection) -> None:
        """The coordinator died: stop writing into its shared memory (runs in the watcher)."""
        with self.lock:  # after any write in flight
            if conn is self.conn and not conn.dead:
                self.wal.close()
                conn.detach()

    def _live(self) -> None:
        """Before each operation: reattach to a new coordinator if ours died."""
        if os.getpid() != self.pid:
            raise MonotoneError("this Monotone handle was opened in another process (before "
                                "fork): open the repository again in this process")
        if self.conn.dead:
            self.conn.close()
            self.memtables.close()
            self.catalog.close()
            self._attach()  # the new coordinator recovered everything from the WAL

    def request(self, message: dict) -> dict:
        with self.lock:
            self._live()
            try:
                return self.conn.request(message)
            except CoordinatorError:
                self._lost()  # the next operation starts a new coordinator
                raise CoordinatorError("the coordinator died during the request (it may or "
                                       "may not have run): try again") from None

    def _lost(self) -> None:
        """A request found the coordinator gone: detach now, the watcher may be late."""
        if not self.conn.dead:
            self.wal.close()
            self.conn.detach()

    def cfg(self) -> dict:
        version = self.catalog.get(H_CONFIG_VERSION)
        if version != self.config_version:
            self.config = self.conn.request({"op": "config"})["config"]
            self.config_version = version
        return self.config

    # partitions
    def _partition_map(self):
        version = self.catalog.get(H_MAP_VERSION)
        if version != self.map_version or self.map is None:
            self.prune()
            live = self.catalog.live()
            slots = self.catalog.slots
            self.map = (live, slots[live, S_MIN].copy(), slots[live, S_MAX].copy())
            self.map_version = version
        return self.map

    def route(self, rows: Rows) -> list[tuple[int, Rows]]:
        """Split sorted rows by partition: [(slot, rows)]; creates missing partitions."""
        ids = rows.ids
        live, mins, maxs = self._partition_map()
        # the common case: the batch falls in one partition, found with two searches
        first, last = int(ids[0]), int(ids[-1])
        at = int(np.searchsorted(maxs, first, side="left"))
        if at < len(live) and int(mins[at]) <= first and last <= int(maxs[at]):
            return [(int(live[at]), rows)]
        for _ in range(3):
            live, mins, maxs = self._partition_map()
            which = np.searchsorted(maxs, ids, side="left")
            inside = which < len(live)
            inside[inside] &= mins[which[inside]] <= ids[inside]
            if inside.all():
                break
            # one id per gap: ids of one interval between the same neighbours share it
            lost = ids[~inside]
            gaps = np.stack([lost // np.uint64(self.cfg()["interval"]), which[~inside]])
            _, first = np.unique(gaps, axis=1, return_index=True)
            self.conn.request({"op": "partitions", "ids": lost[first].tolist()})
        else:
            raise MonotoneError("partitions for the batch could not be created")
        cuts = np.flatnonzero(np.diff(which)) + 1
        starts, ends = [0] + cuts.tolist(), cuts.tolist() + [len(rows)]
        return [(int(live[which[a]]), rows.slice(a, b)) for a, b in zip(starts, ends)]

    # writing
    def write(self, rows: Rows, serial: np.ndarray | None) -> np.ndarray:
        with self.lock:
            for _ in range(3):
                try:
                    return self._write(rows, serial)
                except CoordinatorError:
                    self._lost()  # nothing of the batch was written: again, reattached
            raise CoordinatorError("the coordinator keeps dying: see its log")

    def _write(self, rows: Rows, serial: np.ndarray | None) -> np.ndarray:
        self._live()
        cfg = self.cfg()
        if serial is not None and serial.any():
            if not cfg["serial"]:
                raise MonotoneError(f"id {SERIAL} (or None) needs serial mode: "
                                    "SET serial TO true, or give every event an id")
            count = int(serial.sum())
            with Held(self.locks, SEQUENCE):
                ssn = self.catalog.get(H_SSN)
                if ssn + count > SERIAL:  # the last id would be the serial marker
                    raise MonotoneError(f"serial ids are exhausted (ssn is {ssn}): "
                                        "SET ssn to a lower value or give ids")
                self.catalog.put(H_SSN, ssn + count)
            rows.ids[serial] = np.arange(ssn, ssn + count, dtype=np.uint64)
        ids = rows.ids.copy()
        if not len(rows):
            return ids
        ordered = sort_dedup(rows)
        if cfg["mm_limit"]:
            self._memory_limit(cfg, ordered.nbytes)
        parts = self.route(ordered)

        log = _WalLog(self.wal, ordered, cfg, self.catalog.get(H_WAL_NEEDED), self._switches(cfg))
        for attempt in range(8):
            try:
                append(self.shared, parts, log)
                self._hint(cfg, parts)
                return ids
            except Moved:
                # a partition was dropped meanwhile: route again (nothing was written)
                self.map_version = -1
                parts = self.route(ordered)
            except MemtableFull as e:
                if attempt:
                    raise
                # nothing was written: refresh the full partition and try once more
                full = [int(self.catalog.slots[slot, S_MIN]) for slot, _ in parts
                        if int(self.catalog.slots[slot, S_ACTIVE]) == e.segno]
                for min_ in full:
                    self.conn.request({"op": "execute",
                                       "text": f"REFRESH PARTITION IF EXISTS {min_}"})
        raise MonotoneError("the partitions of the batch kept changing while writing it")

    def _switches(self, cfg: dict) -> frozenset:
        """The fault points the config's error_* switches arm (per config fetched)."""
        if self._switched[0] is not cfg:
            self._switched = (cfg, faults.switched(cfg))
        return self._switched[1]

    def _hint(self, cfg: dict, parts) -> None:
        """Ask for a background refresh of memtables past their storage's refresh_wm."""
        if not cfg["workers"]:
            return
        table = self.catalog.slots
        for slot, _ in parts:
            wm = cfg["storages"][str(int(table[slot, S_STORAGE]))]["refresh_wm"]
            if int(table[slot, S_HEAP]) >= wm and not table[slot, S_HINTED]:
                table[slot, S_HINTED] = 1
                try:
                    self.conn.request({"op": "refresh", "slot": slot})
                except CoordinatorError:
                    pass  # the batch is written; a new coordinator recovers the memtable

    def _memory_limit(self, cfg: dict, need: int) -> None:
        """mm_limit: wait for refreshes to free memory ('block') or fail ('error')."""
        if heap_total(self.catalog) + need <= cfg["mm_limit_wm"]:
            return
        self.catalog.bump(H_LIMIT_HITS)
        if cfg["mm_limit_behaviour"] == "error":
            raise MonotoneError(f"memory limit reached: memtables hold "
                                f"{heap_total(self.catalog)} bytes, mm_limit_wm is "
                                f"{cfg['mm_limit_wm']} (refresh partitions, or raise the limit)")
        self.conn.request({"op": "wait_memory", "need": need})

    def after_command(self, lsn_needed: int) -> None:
        with self.lock:
            self.wal.drop_if_obsolete(lsn_needed)

    # reading
    def snapshot(self, start_id: int = 0):
        """A consistent view of every partition holding ids >= start_id.

        Taken under PUBLISH shared, so no batch is half published in it and no
        refresh switches a file meanwhile. The first EAGER partitions are opened
        right away (file descriptors and memtable mappings stay valid however
        the partition changes later); the rest are opened when the cursor gets
        there, and if a refresh switched one meanwhile it is read as it is then.
        Returns (generation, [(slot, row, opened or None)]).
        """
        # the session lock too: OFD locks do not exclude threads sharing a descriptor
        with self.lock:
            self._live()
            self._partition_map()  # unmaps memtables that refreshes retired
            try:
                return self.generation, self._under_publish(
                    lambda cfg: self._views(start_id, cfg))
            except ShmError as e:
                raise translate(e) from None

    def _views(self, start_id: int, cfg: dict) -> list:
        views = []
        try:
            slots, rows = self.catalog.snapshot()
            for slot, row in zip(slots.tolist(), rows):
                if int(row[S_MAX]) < start_id:
                    continue  # partition exclusion
                opened = self._open(row, cfg) if len(views) < EAGER else None
                views.append((slot, row, opened))
        except BaseException:
            for _, _, opened in views:
                if opened is not None and opened[0] is not None:
                    opened[0].close()
            raise
        return views

    def _under_publish(self, read):
        """read(cfg) under PUBLISH shared, with a config no older than the catalog.

        The config is fetched first: asking the coordinator while holding PUBLISH
        would wait on a coordinator that may itself wait for PUBLISH. A storage
        a partition moved into exists in a config no older than the move, and a
        move happens under PUBLISH exclusive: so a config whose version is still
        current under the lock knows every storage the catalog names."""
        while True:
            cfg = self.cfg()
            with Held(self.locks, PUBLISH, exclusive=False):
                if self.catalog.get(H_CONFIG_VERSION) == self.config_version:
                    return read(cfg)

    def open_partition(self, generation: int, slot: int, row: np.ndarray):
        """A partition's file reader and sorted memtable rows, as of the snapshot row.

        If a refresh switched the partition since the snapshot, its current
        state is taken instead (same events, newer appends included).
        """
        with self.lock:
            self._live()
            if generation != self.generation:
                raise CoordinatorError("the coordinator restarted while this cursor was "
                                       "reading: open a new cursor")
            try:
                try:
                    return self._under_publish(lambda cfg: self._open_partition(slot, row, cfg))
                except ShmError as e:
                    raise translate(e) from None
            except MonotoneError:
                if self.conn.dead:  # its memory went with it
                    raise CoordinatorError("the coordinator died while this cursor was "
                                           "reading: open a new cursor") from None
                raise

    def _open_partition(self, slot: int, row: np.ndarray, cfg: dict):
        cur = self.catalog.slots[slot]
        if cur[S_STATE] != LIVE or cur[S_MIN] != row[S_MIN]:
            return None, []
        if (cur[S_GEN], cur[S_ACTIVE], cur[S_FROZEN]) != (row[S_GEN], row[S_ACTIVE], row[S_FROZEN]):
            row = cur.copy()
            self.catalog.visible(row)
        return self._open(row, cfg)

    def _open(self, row: np.ndarray, cfg: dict):
        """File reader and memtables (with their row counts) of a slot row (PUBLISH held)."""
        reader = None
        if row[S_GEN]:
            directory, cipher = self.storage(int(row[S_STORAGE]), cfg)
            reader = Reader(os.path.join(directory, file_name(int(row[S_MIN]))), cipher)
        mems = []
        for seg, n in ((row[S_FROZEN], row[S_FROZEN_ROWS]), (row[S_ACTIVE], row[S_ROWS])):
            if seg and n:
                mems.append((self.memtables.get(int(seg)), int(n)))
        return reader, mems

    def storage(self, id_: int, cfg: dict | None = None) -> tuple[str, Cipher | None]:
        """Directory and cipher of a storage, by its id."""
        cfg = cfg or self.cfg()
        cached = self.ciphers.get(id_)
        if cached is None or cached[0] is not cfg:
            info = cfg["storages"][str(id_)]
            cipher = Cipher(parse_key(info["key"])) if info["key"] else None
            cached = self.ciphers[id_] = (cfg, info["directory"], cipher)
        return cached[1], cached[2]

    def prune(self) -> None:
        live = self.catalog.live()
        used = set(self.catalog.slots[live][:, [S_ACTIVE, S_FROZEN]].ravel().tolist())
        self.memtables.prune(used)

    def close(self) -> None:
        if os.getpid() != self.pid:
            return
        with self.lock:
            if not self.conn.dead:
                self.wal.close(self.config["wal_sync_on_rotate"])  # no request: it may be gone
            self.background.close()  # rotated WAL files synced and closed
            self.memtables.close()
            self.catalog.close()
        self.conn.close()  # outside the lock: the watcher may need it to finish
        self.locks.close()


class _WalLog:
    """A batch's WAL record, for writer.append() (no file when the WAL is off)."""

    def __init__(self, wal: WalWriter, rows: Rows, cfg: dict, obsolete_below: int,
                 switches: frozenset) -> None:
        self.wal, self.rows, self.cfg = wal, rows, cfg
        self.obsolete_below = obsolete_below
        self.switches = switches

    def prepare(self, lsn: int) -> tuple[int, int]:
        cfg = self.cfg
        if not cfg["wal"]:
            return 0, 0
        self.wal.drop_if_obsolete(self.obsolete_below)
        return self.wal.prepare(lsn, rotate_wm=cfg["wal_rotate_wm"],
                                sync_on_rotate=cfg["wal_sync_on_rotate"],
                                sync=cfg["wal_sync_on_write"])

    def write(self, lsn: int, ssn: int) -> None:
        faults.point("wal", self.switches)
        cfg = self.cfg
        if cfg["wal"]:
            self.wal.write(lsn, walfmt.encode(lsn, ssn, self.rows, cfg["wal_crc"]),
                           sync=cfg["wal_sync_on_write"])

    def cut(self, offset: int) -> None:
        if self.cfg["wal"]:
            self.wal.cut(offset)


def _make_dir(base: str) -> str:
    try:
        os.makedirs(base, exist_ok=True)
    except OSError as e:
        raise MonotoneError(f"cannot create repository directory {base}: {e.strerror}") from None
    if not os.access(base, os.W_OK | os.X_OK):
        raise MonotoneError(f"repository directory {base} is not writable")
    return base
