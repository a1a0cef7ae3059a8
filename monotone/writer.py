"""The write path of a process: a batch from the API to the memtables and the WAL.

Serial ids, the memory limit, routing to partitions (asking the coordinator
for the ones missing), the WAL record, the atomic append (append.py), retries
when a partition moved or a memtable filled, and hints for background refresh.
"""
from __future__ import annotations

from bisect import bisect_left

import numpy as np

from . import faults
from .append import Log, Moved, append
from .boundary import ShmError, translate
from .errors import CoordinatorError, MemtableFull, MonotoneError
from .format.rows import MAX_ID, Rows, sort_dedup
from .protocol import EnsurePartitions, RefreshNow, RefreshSoon, WaitMemory
from .settings import ClientConfig
from .shm.locks import SEQUENCE, Held
from .wal import records as walfmt
from .wal.writer import WalWriter


class Writer:
    def __init__(self, session) -> None:
        self.session = session
        self._switched: tuple = (None, frozenset())

    def write(self, rows: Rows, serial: np.ndarray | None) -> np.ndarray:
        """Write one batch; the ids (serial ones filled in)."""
        session = self.session
        with session.lock:
            for _ in range(3):
                try:
                    return self._write(rows, serial)
                except CoordinatorError:
                    session.lost()  # nothing of the batch was written: again, reattached
                except ShmError as e:  # a lock not granted in time, mostly
                    raise translate(e) from None
            raise CoordinatorError("the coordinator keeps dying: see its log")

    def _write(self, rows: Rows, serial: np.ndarray | None) -> np.ndarray:
        session = self.session
        session.live()
        cfg = session.cfg()
        values = cfg.values
        if serial is not None and serial.any():
            self._serial(values, rows, serial)
        ids = rows.ids.copy()
        if not len(rows):
            return ids
        ordered = sort_dedup(rows)  # append() moves ssn past its ids
        if values["mm_limit"]:
            self._memory_limit(values, ordered.nbytes)
        parts = self.route(ordered)
        log = _WalLog(session.wal, ordered, values, session.pmap.wal_needed,
                      self._switches(cfg))
        for attempt in range(8):
            try:
                append(session.shared, parts, log)
                self._hint(cfg, parts)
                return ids
            except Moved:
                # a partition was dropped meanwhile: route again (nothing was written)
                session.map_version = -1
                parts = self.route(ordered)
            except MemtableFull as e:
                if attempt:
                    raise
                # nothing was written: refresh the full partition and try once more
                for slot, _ in parts:
                    view = session.pmap.slot(slot)
                    if view.active == e.segno:
                        session.conn.request(RefreshNow(view.min))
        raise MonotoneError("the partitions of the batch kept changing while writing it")

    def _serial(self, values: dict, rows: Rows, serial: np.ndarray) -> None:
        """Hand out the next serial ids to the events marked serial, past the
        batch's own explicit ids (so none of the batch replaces another of it)."""
        if not values["serial"]:
            raise MonotoneError(f"id {MAX_ID} (or None) needs serial mode: "
                                "SET serial TO true, or give every event an id")
        session = self.session
        count = int(serial.sum())
        # a batch with serial marks already pays passes over its ids; one more finds
        # its explicit ids' largest (an explicit id is below MAX_ID: + 1 <= MAX_ID)
        given = int(rows.ids[~serial].max()) + 1 if count < len(serial) else 0
        with Held(session.locks, SEQUENCE):
            ssn = max(session.pmap.ssn, given)
            if ssn + count > MAX_ID:  # the last id would be the serial marker
                raise MonotoneError(f"serial ids are exhausted (ssn is {ssn}): "
                                    "SET ssn to a lower value or give ids")
            session.pmap.ssn = ssn + count
        rows.ids[serial] = np.arange(ssn, ssn + count, dtype=np.uint64)

    def route(self, rows: Rows) -> list[tuple[int, Rows]]:
        """Split sorted rows by partition: [(slot, rows)]; creates missing partitions."""
        session = self.session
        ids = rows.ids
        session.partitions()
        live, mins, maxs = session.bound_lists
        # the common case: the batch falls in one partition, found with one search
        first, last = int(ids[0]), int(ids[-1])
        at = bisect_left(maxs, first)
        if at < len(live) and mins[at] <= first and last <= maxs[at]:
            return [(live[at], rows)]
        for _ in range(3):
            bounds = session.partitions()
            which, inside = session.pmap.route(bounds, ids)
            if inside.all():
                break
            # one id per gap: ids of one interval between the same neighbours share it
            lost = ids[~inside]
            interval = np.uint64(session.cfg().values["interval"])
            gaps = np.stack([lost // interval, which[~inside]])
            _, first_of = np.unique(gaps, axis=1, return_index=True)
            session.conn.request(EnsurePartitions(lost[first_of].tolist()))
        else:
            raise MonotoneError("partitions for the batch could not be created")
        live = bounds[0]
        cuts = np.flatnonzero(np.diff(which)) + 1
        starts, ends = [0] + cuts.tolist(), cuts.tolist() + [len(rows)]
        return [(int(live[which[a]]), rows.slice(a, b)) for a, b in zip(starts, ends)]

    def _switches(self, cfg: ClientConfig) -> frozenset:
        """The fault points the config's error_* switches arm (per config fetched)."""
        if self._switched[0] is not cfg:
            self._switched = (cfg, faults.switched(cfg.values))
        return self._switched[1]

    def _hint(self, cfg: ClientConfig, parts) -> None:
        """Ask for a background refresh of memtables past their storage's refresh_wm
        (with workers = 0 it waits for SERVICE)."""
        session = self.session
        for slot, _ in parts:
            view = session.pmap.slot(slot)
            wm = cfg.storages[view.storage].refresh_wm
            if view.heap >= wm and not view.hinted:
                view.hinted = 1
                try:
                    session.conn.request(RefreshSoon(slot))
                except CoordinatorError:
                    pass  # the batch is written; a new coordinator recovers the memtable

    def _memory_limit(self, values: dict, need: int) -> None:
        """mm_limit: wait for refreshes to free memory ('block') or fail ('error')."""
        pmap = self.session.pmap
        if pmap.heap_total() + need <= values["mm_limit_wm"]:
            return
        pmap.bump("limit_hits")
        if values["mm_limit_behaviour"] == "error":
            raise MonotoneError(f"memory limit reached: memtables hold {pmap.heap_total()} "
                                f"bytes, mm_limit_wm is {values['mm_limit_wm']} (refresh "
                                "partitions, or raise the limit)")
        self.session.conn.request(WaitMemory(need))


class _WalLog(Log):
    """A batch's WAL record, for append() (no file when the WAL is off)."""

    def __init__(self, wal: WalWriter, rows: Rows, values: dict, obsolete_below: int,
                 switches: frozenset) -> None:
        self.wal, self.rows, self.values = wal, rows, values
        self.obsolete_below = obsolete_below
        self.switches = switches

    def prepare(self, lsn: int) -> tuple[int, int]:
        values = self.values
        if not values["wal"]:
            return 0, 0
        self.wal.drop_if_obsolete(self.obsolete_below)
        return self.wal.prepare(lsn, rotate_wm=values["wal_rotate_wm"],
                                sync_on_rotate=values["wal_sync_on_rotate"],
                                sync=values["wal_sync_on_write"])

    def write(self, lsn: int, ssn: int) -> None:
        faults.point("wal", self.switches)
        values = self.values
        if values["wal"]:
            self.wal.write(lsn, walfmt.encode(lsn, ssn, self.rows, values["wal_crc"]),
                           sync=values["wal_sync_on_write"])

    def cut(self, offset: int) -> None:
        if self.values["wal"]:
            self.wal.cut(offset)
