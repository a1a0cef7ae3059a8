"""The coordinator's view of a repository: config, catalog, partitions, files."""
from __future__ import annotations

import json
import os
import time

import numpy as np

from monotone.config import Config
from monotone.errors import MonotoneError
from monotone.partfile import file_name
from monotone.repository import Layout, write_json
from monotone.rows import Rows, sort_dedup
from shm import segment
from shm.catalog import (
    H_CONFIG_VERSION,
    H_LSN,
    H_MAP_VERSION,
    H_PID,
    H_SEGNO,
    H_SSN,
    LIVE,
    S_ACTIVE,
    S_CREATED,
    S_FROZEN,
    S_MAX,
    S_MIN,
    S_STATE,
    SLOT_WORDS,
    Catalog,
)
from shm.locks import COORDINATOR, LockFile
from shm.memtable import Memtable, MemtableCache
from shm.writer import write_parts

SLOTS = 1 << 14  # the catalog is backed whole: 2 MiB


class Engine:
    def __init__(self, base: str, settings: dict) -> None:
        try:
            os.makedirs(base, exist_ok=True)
        except OSError as e:
            raise MonotoneError(f"cannot create repository directory {base}: {e.strerror}") from None
        self.layout = Layout(base)
        self.config = Config()
        self.closed = False
        self._load_config(settings)
        self.locks = LockFile(self.layout.lock)
        self.locks.lock(COORDINATOR)  # waits for a previous coordinator to be gone
        for name in segment.list_segments(self.layout.id):
            segment.unlink(name)     # left by a coordinator that was killed
        self.catalog = Catalog.create(self.layout.catalog, SLOTS)
        self.catalog.put(H_PID, os.getpid())
        self.memtables = MemtableCache(self.layout.memtable)
        self.storage_path = self.layout.storage(self.config.values["storage_uuid"])
        os.makedirs(self.storage_path, exist_ok=True)

    # config
    def _load_config(self, settings: dict) -> None:
        cfg = self.config
        exists = os.path.exists(self.layout.config)
        if exists:
            try:
                with open(self.layout.config) as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                raise MonotoneError(f"cannot read {self.layout.config}: {e}") from None
            cfg.load(data)
            cfg.values["storage_uuid"] = data.get("storage_uuid", "")
        for name, value in settings.items():
            if name == "uuid" and exists:
                continue
            cfg.set(name, value, opened=False)
        cfg.ensure_uuid()
        if not cfg.values.get("storage_uuid"):
            import uuid
            cfg.values["storage_uuid"] = str(uuid.uuid4())
        cfg.values["directory"] = self.layout.base
        self.save_config()

    def save_config(self) -> None:
        data = self.config.persisted()
        if hasattr(self, "catalog"):
            data["ssn"] = self.catalog.get(H_SSN)
            data["lsn"] = self.catalog.get(H_LSN)
        data["storage_uuid"] = self.config.values["storage_uuid"]
        write_json(self.layout.config, data, sync=self.config.sync)

    def config_changed(self) -> None:
        self.catalog.bump(H_CONFIG_VERSION)
        self.save_config()

    def client_config(self) -> dict:
        cfg = dict(self.config.values)
        cfg["ssn"] = self.catalog.get(H_SSN)
        cfg["lsn"] = self.catalog.get(H_LSN)
        return cfg

    # partitions
    def file_path(self, min_: int) -> str:
        return os.path.join(self.storage_path, file_name(min_))

    def live_slots(self) -> np.ndarray:
        return self.catalog.live()

    def new_slot(self, lo: int, hi: int, now: int | None = None) -> int:
        cat = self.catalog
        slot = cat.free_slot()
        if slot is None:
            raise MonotoneError(f"too many partitions (at most {SLOTS})")
        segno = cat.bump(H_SEGNO)
        self.memtables.add(Memtable.create(self.layout.memtable(segno), segno))
        row = np.zeros(SLOT_WORDS, np.uint64)
        row[S_MIN], row[S_MAX], row[S_ACTIVE] = lo, hi, segno
        row[S_CREATED] = now if now is not None else int(time.time() * 1e6)
        cat.slots[slot, 1:] = row[1:]
        cat.slots[slot, S_STATE] = LIVE      # visible only now, complete
        cat.bump(H_MAP_VERSION)
        return slot

    def ensure_partitions(self, ids) -> None:
        """Create the partitions that ids fall in but no partition covers yet."""
        ids = np.unique(np.asarray(ids, np.uint64))
        missing = ids[~self._covered(ids)]
        interval = self.config.interval
        created = -1
        for id_ in missing.tolist():  # sorted: skip ids the last new partition covers
            if id_ <= created:
                continue
            live = self.live_slots()
            mins, maxs = self.catalog.slots[live, S_MIN], self.catalog.slots[live, S_MAX]
            i = int(np.searchsorted(maxs, np.uint64(id_), side="left"))
            if i < len(live) and mins[i] <= id_:
                continue  # created for an earlier id of this call
            lo = id_ - id_ % interval
            hi = min(lo + interval - 1, 2**64 - 1)
            # clip to the gap between neighbours (interval may have changed)
            if i > 0:
                lo = max(lo, int(maxs[i - 1]) + 1)
            if i < len(live):
                hi = min(hi, int(mins[i]) - 1)
            self.new_slot(lo, hi)
            created = hi

    def _covered(self, ids: np.ndarray) -> np.ndarray:
        live = self.live_slots()
        mins, maxs = self.catalog.slots[live, S_MIN], self.catalog.slots[live, S_MAX]
        which = np.searchsorted(maxs, ids, side="left")
        inside = which < len(live)
        inside[inside] &= mins[which[inside]] <= ids[inside]
        return inside

    def partition_of(self, min_: int) -> int | None:
        return self.catalog.find(min_)

    def apply(self, rows: Rows, lsn: int, skip_lsn) -> None:
        """Replay one WAL batch into memtables (recovery), partition by partition."""
        rows = sort_dedup(rows)
        self.ensure_partitions(rows.ids)
        live = self.live_slots()
        cat = self.catalog
        maxs = cat.slots[live, S_MAX]
        which = np.searchsorted(maxs, rows.ids, side="left")
        cuts = np.flatnonzero(np.diff(which)) + 1
        starts = [0] + cuts.tolist()
        ends = cuts.tolist() + [len(rows)]
        parts = []
        for a, b in zip(starts, ends):
            slot = int(live[which[a]])
            if lsn > skip_lsn(slot):
                parts.append((slot, rows.slice(a, b)))
        if parts:
            write_parts(cat, self.locks, self.memtables, parts, lsn=lsn)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.save_config()
        segnos = set()
        for slot in self.live_slots():
            segnos.update(int(s) for s in self.catalog.slots[slot, [S_ACTIVE, S_FROZEN]] if s)
        self.memtables.close()
        for segno in segnos:
            segment.unlink(self.layout.memtable(segno))
        self.catalog.close()
        for name in segment.list_segments(self.layout.id):
            segment.unlink(name)
        self.locks.close()
