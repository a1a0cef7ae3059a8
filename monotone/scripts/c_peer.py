"""The original C Monotone (github.com/monotone-studio/monotone) as a bench --compare peer.

It is not a dependency: it is measured only when a build of its shared library is
given (--c-monotone PATH or MONOTONE_C_LIB, PATH the libmonotone.so or the build
directory holding it), through a ctypes binding of its public C API (monotone.h).

It runs the same workload as the other peers, its partitions configured as this
package's are by default so that both do the same work: lz4 with a crc per region
(the C engine's own defaults are zstd and no crc), WAL on iff the workload's is.
Partition interval (3,000,000 ids), refresh_wm (40 MiB), region size (128 KiB),
workers (3) and no WAL fsync per write are the same defaults in both and are left
alone.

Its WAL record crc stays off, its default (this package's is on): its crc32()
runs CPUID on every call to pick the hardware or software path, and under a
hypervisor that traps CPUID (about 10 us a call in a Firecracker VM) a crc per
event would measure the hypervisor, 40 times slower than the engine itself.

Its API reads one event per call and every call crosses ctypes (about a
microsecond), which would measure ctypes rather than the engine: its reads are
left out of the table, and only its writes and refreshes are timed.
"""
from __future__ import annotations

import ctypes
import functools
import os
from typing import Iterator

import numpy as np

from monotone.scripts.peers import Workload, write_all

LIBRARY = "libmonotone.so"
ENV = "MONOTONE_C_LIB"
LAST_ID = 2**64 - 1


class CEvent(ctypes.Structure):
    """struct monotone_event: what monotone_write takes and monotone_read fills."""

    _fields_ = [("flags", ctypes.c_int), ("id", ctypes.c_uint64),
                ("key", ctypes.c_void_p), ("key_size", ctypes.c_size_t),
                ("value", ctypes.c_void_p), ("value_size", ctypes.c_size_t)]


def _event_dtype() -> np.dtype:
    """CEvent as a numpy record, offsets taken from ctypes so the two cannot drift apart."""
    kinds = {ctypes.c_int: np.intc}
    names = [name for name, _ in CEvent._fields_]
    return np.dtype({"names": names,
                     "formats": [kinds.get(kind, np.uint64) for _, kind in CEvent._fields_],
                     "offsets": [getattr(CEvent, name).offset for name in names],
                     "itemsize": ctypes.sizeof(CEvent)})


EVENT = _event_dtype()


class CMonotoneError(RuntimeError):
    pass


def find_library(arg: str | None) -> str | None:
    """The library to load: arg (from --c-monotone), else $MONOTONE_C_LIB, else None.

    A directory stands for the libmonotone.so in it. A path that is given but holds
    no such library stops the run with a message rather than dropping the peer quietly.
    """
    given = arg or os.environ.get(ENV)
    if not given:
        return None
    path = os.path.join(given, LIBRARY) if os.path.isdir(given) else given
    if not os.path.isfile(path):
        raise SystemExit(f"bench: no C monotone library at {path} "
                         f"(build github.com/monotone-studio/monotone: make release, "
                         f"then give build/{LIBRARY})")
    try:
        load(path)
    except (OSError, AttributeError) as e:
        raise SystemExit(f"bench: {path} is not the C monotone library: {e}") from None
    return os.path.abspath(path)


@functools.lru_cache(maxsize=None)
def load(path: str) -> ctypes.CDLL:
    """The library with its functions typed, so that no pointer is cut to an int."""
    lib = ctypes.CDLL(path)
    env, text, cursor = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p
    event = ctypes.POINTER(CEvent)
    signatures = {
        "monotone_init": (env, []),
        "monotone_free": (None, [ctypes.c_void_p]),
        "monotone_error": (text, [env]),
        "monotone_open": (ctypes.c_int, [env, text]),
        "monotone_execute": (ctypes.c_int, [env, text, ctypes.POINTER(ctypes.c_void_p)]),
        "monotone_write": (ctypes.c_int, [env, ctypes.c_void_p, ctypes.c_int]),
        "monotone_cursor": (cursor, [env, text, event]),
        "monotone_read": (ctypes.c_int, [cursor, event]),
        "monotone_next": (ctypes.c_int, [cursor]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    """free() for the strings monotone_execute returns (it allocates them with malloc)."""
    libc = ctypes.CDLL(None)
    libc.free.argtypes, libc.free.restype = [ctypes.c_void_p], None
    return libc


class CMonotone:
    """One C monotone environment: monotone_init to monotone_free."""

    def __init__(self, lib_path: str) -> None:
        self.lib = load(lib_path)
        self.env = self.lib.monotone_init()
        if not self.env:
            raise CMonotoneError("monotone_init() failed")

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            raise CMonotoneError(f"{what}: {self.lib.monotone_error(self.env).decode()}")
        return rc

    def execute(self, command: str) -> str:
        out = ctypes.c_void_p()
        self._check(self.lib.monotone_execute(self.env, command.encode(), ctypes.byref(out)),
                    command)
        if not out.value:
            return ""
        try:
            return ctypes.string_at(out.value).decode()
        finally:
            _libc().free(out.value)

    def open(self, path: str) -> None:
        """Its open makes the repository directory but not the ones above it."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._check(self.lib.monotone_open(self.env, path.encode()), f"open {path}")

    def writer(self):
        """write(events, count), events the address of `count` EVENT records: all a timed
        call has left to do is the C call and its check."""
        write, env, check = self.lib.monotone_write, self.env, self._check

        def call(events: int, count: int) -> None:
            if write(env, events, count) < 0:
                check(-1, "monotone_write")
        return call

    def events(self, start: int = 0) -> Iterator[tuple]:
        """(id, key, value, flags) per event from id `start` on, as the C cursor reads
        them: two C calls and the bytes copied out per event."""
        lib, check = self.lib, self._check
        cursor = lib.monotone_cursor(self.env, None, ctypes.byref(CEvent(id=start)))
        if not cursor:
            check(-1, "monotone_cursor")
        try:
            event = CEvent()
            at = ctypes.byref(event)
            read, next_, string_at = lib.monotone_read, lib.monotone_next, ctypes.string_at
            while check(read(cursor, at), "monotone_read"):
                key = string_at(event.key, event.key_size) if event.key_size else b""
                yield event.id, key, string_at(event.value, event.value_size), event.flags
                if not check(next_(cursor), "monotone_next"):
                    return
        finally:
            lib.monotone_free(cursor)

    def close(self) -> None:
        if self.env:
            self.lib.monotone_free(self.env)
            self.env = None


def configure(db: CMonotone, wal: bool) -> None:
    """Before open: the settings only open reads."""
    db.execute(f"SET wal TO {'true' if wal else 'false'}")
    db.execute("SET compression TO 'lz4'")


def event_batch(ids: np.ndarray, values: np.ndarray) -> tuple:
    """A batch as the C struct array (no key, values pointing into `values`), then its
    address and length for the timed call; both arrays ride along so that neither is
    freed before the call."""
    values = np.ascontiguousarray(values)
    size = values.shape[1]
    events = np.zeros(len(ids), EVENT)
    events["id"] = ids
    events["value"] = values.ctypes.data + size * np.arange(len(ids), dtype=np.uint64)
    events["value_size"] = size
    return events, values, events.ctypes.data, len(ids)


def run_c_monotone(w: Workload, path: str, progress, lib_path: str) -> dict:
    """write and durable of the C engine, as run_monotone measures ours: at its default
    workers, then (write_ref, durable_ref) at workers 0, the reference workload, where
    nothing refreshes behind the writes."""
    result = _measure(w, os.path.join(path, "default"), progress, lib_path, None)
    reference = _measure(w, os.path.join(path, "workers0"), progress, lib_path, 0)
    result["write_ref"], result["durable_ref"] = reference["write"], reference["durable"]
    return result


def _measure(w: Workload, path: str, progress, lib_path: str, workers: int | None) -> dict:
    """Each write call appends its batch to the WAL (one writev, no fsync). durable adds
    REFRESH PARTITIONS over every id: it runs in the calling thread, first waits for a
    background refresh that holds the partition, and fsyncs the partition file it writes.
    """
    db = CMonotone(lib_path)
    try:
        configure(db, w.wal)
        if workers is not None:
            db.execute(f"SET workers TO {workers}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        db.open(path)
        db.execute("ALTER STORAGE main SET (crc true)")
        write = db.writer()
        clock = write_all(w, progress, event_batch, lambda batch: write(batch[2], batch[3]))
        result = {"write": w.n / clock.total}
        with clock:
            db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {LAST_ID}")
        result["durable"] = w.n / clock.total
    finally:
        db.close()
    return result
