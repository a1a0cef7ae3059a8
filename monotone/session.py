"""A process's connection to an open repository.

It finds or starts the coordinator, maps the catalog, and then does the data
path itself: routing a batch to partitions, the WAL append, memtable appends,
and the snapshots cursors read from. The coordinator is only asked to create
partitions (once per partition) and to run commands.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import numpy as np

from shm.catalog import (
    H_CONFIG_VERSION,
    H_MAP_VERSION,
    H_SSN,
    H_WAL_NEEDED,
    LIVE,
    S_ACTIVE,
    S_FROZEN,
    S_FROZEN_ROWS,
    S_GEN,
    S_MAX,
    S_MIN,
    S_ROWS,
    S_STATE,
    S_STORAGE,
    Catalog,
)
from shm.locks import COORDINATOR, PUBLISH, SEQUENCE, START, Held, LockFile
from shm.memtable import MemtableCache
from shm.writer import Moved, write_parts

from . import errors, protocol
from .errors import CoordinatorError, InjectedError, MemtableFull, MonotoneError
from .format.crypto import Cipher, parse_key
from .partfile import Reader, file_name
from .repository import Layout
from .rows import Rows, sort_dedup
from .wal import WalWriter

SERIAL = 2**64 - 1
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Session:
    def __init__(self, base: str, settings: dict) -> None:
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.layout = Layout(_make_dir(base))
        self.locks = LockFile(self.layout.lock)
        self.child: subprocess.Popen | None = None
        try:
            self.sock, hello = self._connect(settings)
        except BaseException:
            self.locks.close()
            raise
        self.catalog = Catalog.attach(hello["catalog"])
        self.config = hello["config"]
        self.config_version = self.catalog.get(H_CONFIG_VERSION)
        self.memtables = MemtableCache(self.layout.memtable)
        self.wal = WalWriter(self.layout.wal)
        self.map_version = -1
        self.ciphers: dict[int, tuple] = {}
        self.map: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # coordinator
    def _connect(self, settings: dict):
        for _ in range(50):
            sock = _try_connect(self.layout.base)
            if sock is None:
                with Held(self.locks, START):
                    sock = _try_connect(self.layout.base)
                    if sock is None:
                        self._spawn(settings)
                        sock = _try_connect(self.layout.base)
                if sock is None:
                    continue
            try:
                protocol.send(sock, {"op": "hello", "pid": os.getpid(), "settings": settings})
                reply = protocol.recv(sock)
            except OSError:
                reply = None
            if reply is None:  # the coordinator was stopping: start again
                sock.close()
                continue
            if not reply["ok"]:
                sock.close()
                raise _error(reply)
            return sock, reply
        raise CoordinatorError(f"cannot reach the coordinator of {self.layout.base}")

    def _spawn(self, settings: dict) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "workers.coordinator", self.layout.base],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=env, start_new_session=True, close_fds=True)
        except OSError as e:
            raise CoordinatorError(f"cannot start the coordinator: {e}") from None
        child.stdin.write(json.dumps(settings).encode())
        child.stdin.close()
        line = child.stdout.readline().decode().strip()
        child.stdout.close()
        if line != "ready":
            child.wait()
            message = line[len("error: "):] if line.startswith("error: ") else \
                f"the coordinator exited with status {child.returncode}"
            raise MonotoneError(f"cannot open {self.layout.base}: {message}")
        self.child = child

    def request(self, message: dict) -> dict:
        self._check_pid()
        with self.lock:
            try:
                protocol.send(self.sock, message)
                reply = protocol.recv(self.sock)
            except OSError:
                reply = None
        if reply is None:
            raise CoordinatorError("the coordinator is gone: close and open the repository again")
        if not reply["ok"]:
            raise _error(reply)
        return reply

    def cfg(self) -> dict:
        version = self.catalog.get(H_CONFIG_VERSION)
        if version != self.config_version:
            self.config = self.request({"op": "config"})["config"]
            self.config_version = version
        return self.config

    def _check_pid(self) -> None:
        if os.getpid() != self.pid:
            raise MonotoneError("this Monotone handle was opened in another process (before "
                                "fork): open the repository again in this process")

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
        for _ in range(3):
            live, mins, maxs = self._partition_map()
            which = np.searchsorted(maxs, ids, side="left")
            inside = which < len(live)
            inside[inside] &= mins[which[inside]] <= ids[inside]
            if inside.all():
                break
            missing = np.unique(ids[~inside] - ids[~inside] % np.uint64(self.cfg()["interval"]))
            self.request({"op": "partitions", "ids": missing.tolist()})
        else:
            raise MonotoneError("partitions for the batch could not be created")
        cuts = np.flatnonzero(np.diff(which)) + 1
        starts, ends = [0] + cuts.tolist(), cuts.tolist() + [len(rows)]
        return [(int(live[which[a]]), rows.slice(a, b)) for a, b in zip(starts, ends)]

    # writing
    def write(self, rows: Rows, serial: np.ndarray | None) -> np.ndarray:
        self._check_pid()
        with self.lock:
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
            parts = self.route(ordered)

            def log(lsn: int, ssn: int) -> None:
                if cfg["wal"]:
                    self.wal.append(lsn, ssn, ordered, crc=cfg["wal_crc"],
                                    sync=cfg["wal_sync_on_write"], rotate_wm=cfg["wal_rotate_wm"],
                                    sync_on_rotate=cfg["wal_sync_on_rotate"],
                                    obsolete_below=self.catalog.get(H_WAL_NEEDED),
                                    error=cfg["error_wal"])
                elif cfg["error_wal"]:
                    raise InjectedError("wal write failed (error_wal is set)")

            for attempt in range(8):
                try:
                    write_parts(self.catalog, self.locks, self.memtables, parts, log)
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
                        self.request({"op": "execute",
                                      "text": f"REFRESH PARTITION IF EXISTS {min_}"})
            raise MonotoneError("the partitions of the batch kept changing while writing it")

    def after_command(self, lsn_needed: int) -> None:
        with self.lock:
            self.wal.drop_if_obsolete(lsn_needed)

    # reading
    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Slot indices and a copy of their rows, consistent across partitions."""
        self._check_pid()
        # the session lock too: OFD locks do not exclude threads sharing a descriptor
        with self.lock:
            self._partition_map()  # unmaps memtables that refreshes retired
            with Held(self.locks, PUBLISH, exclusive=False):
                return self.catalog.snapshot()

    def open_partition(self, slot: int, row: np.ndarray):
        """A partition's file reader and sorted memtable rows, as of the snapshot row.

        If a refresh switched the partition since the snapshot, its current
        state is taken instead (same events, newer appends included).
        """
        with self.lock, Held(self.locks, PUBLISH, exclusive=False):
            cur = self.catalog.slots[slot]
            if cur[S_STATE] != LIVE or cur[S_MIN] != row[S_MIN]:
                return None, []
            if (cur[S_GEN], cur[S_ACTIVE], cur[S_FROZEN]) != (row[S_GEN], row[S_ACTIVE], row[S_FROZEN]):
                row = cur.copy()
            reader = None
            if row[S_GEN]:
                directory, cipher = self.storage(int(row[S_STORAGE]))
                reader = Reader(os.path.join(directory, file_name(int(row[S_MIN]))), cipher)
            mems = []
            for seg, n in ((row[S_FROZEN], row[S_FROZEN_ROWS]), (row[S_ACTIVE], row[S_ROWS])):
                if seg and n:
                    mems.append(self.memtables.get(int(seg)).sorted_rows(int(n)))
        return reader, mems

    def storage(self, id_: int) -> tuple[str, Cipher | None]:
        """Directory and cipher of a storage, by its id."""
        cfg = self.cfg()
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
            self.wal.close(self.cfg()["wal_sync_on_rotate"])
            last = False
            try:
                protocol.send(self.sock, {"op": "bye"})
                reply = protocol.recv(self.sock)
                last = bool(reply and reply.get("last"))
            except OSError:
                pass
            self.sock.close()
            self.memtables.close()
            self.catalog.close()
            if last:
                # the coordinator stops now: wait until it has let go of everything
                with Held(self.locks, COORDINATOR, exclusive=False):
                    pass
            self.locks.close()
            if self.child is not None:
                if last:
                    self.child.wait()
                else:
                    self.child.poll()


def _make_dir(base: str) -> str:
    try:
        os.makedirs(base, exist_ok=True)
    except OSError as e:
        raise MonotoneError(f"cannot create repository directory {base}: {e.strerror}") from None
    if not os.access(base, os.W_OK | os.X_OK):
        raise MonotoneError(f"repository directory {base} is not writable")
    return base


def _try_connect(base: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(protocol.address(base))
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        return None
    return sock


def _error(reply: dict) -> MonotoneError:
    cls = getattr(errors, reply.get("type", ""), MonotoneError)
    if not (isinstance(cls, type) and issubclass(cls, MonotoneError)):
        cls = MonotoneError
    return cls(reply["error"])
