"""The public API: Monotone, the environment of one repository."""
from __future__ import annotations

import functools
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from .config import HIDDEN, ONCE, TABLE, Config
from .cursor import Cursor
from .ddl import commands as cmd
from .ddl import parse
from .errors import LINUX_ONLY, MonotoneError
from .event import Event
from .format.rows import DELETE, MAX_ID, MAX_KEY, MAX_VALUE, U64, Rows, pack_bytes
from .jsonout import pretty
from .protocol import Execute
from .session import Session

if TYPE_CHECKING:
    from .frames import TableLike  # pyarrow, pandas, polars: imported only when asked for

# a column of byte strings: a 2-D uint8 array (one row per event), (offsets, data)
# with n+1 offsets, or a list of bytes
Column = np.ndarray | tuple[np.ndarray, np.ndarray] | Sequence[bytes] | None


class Monotone:
    """An environment: SET config, open() a repository, write, read, execute commands."""

    def __init__(self) -> None:
        self.config = Config()
        self._settings: dict = {}
        self._session: Session | None = None
        self._closed = False  # was open: SHOW no longer answers from the config before open

    # commands
    def execute(self, command: str) -> str | None:
        """Run one command; SHOW returns JSON text, others None."""
        if not isinstance(command, str):
            raise MonotoneError("execute() takes the command as a str")
        parsed = parse(command)
        if self._session is None:
            return self._execute_closed(parsed)
        if isinstance(parsed, cmd.Show):
            self._session.count_cold_reads()  # this process's own reads included
        reply = self._session.request(Execute(command))
        self._session.after_command(reply["lsn_needed"])
        return reply["result"]

    def show(self, what: str) -> Any:
        """SHOW what, as Python objects rather than JSON text: show("PARTITIONS") is a
        list of dicts, show("wal") a dict, show("serial") a value."""
        if not isinstance(what, str) or not what.strip():
            raise MonotoneError("show() takes what to show, as SHOW does: 'PARTITIONS', "
                                "'STORAGE main', 'ALL', a variable's name...")
        return json.loads(self.execute(f"SHOW {what}"))

    def __repr__(self) -> str:
        if self._session is None:
            return "<Monotone closed>"
        return f"<Monotone open at {self._session.layout.base!r}>"

    def _execute_closed(self, parsed) -> str | None:
        if isinstance(parsed, cmd.Set):
            self.config.set(parsed.name, parsed.value, opened=False)
            self._settings[TABLE[parsed.name].name] = self.config.values[parsed.name]
            return None
        if isinstance(parsed, cmd.Show) and not self._closed and \
                all(i.what in ("var", "config") for i in parsed.items):
            values = [self.config.show(i.name) if i.what == "var" else
                      {n: v for n, v in self.config.values.items() if not TABLE[n].flags & HIDDEN}
                      for i in parsed.items]
            return pretty(values[0] if len(values) == 1 else values)
        raise MonotoneError("the repository is not open: open() it first")

    # lifecycle
    def open(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], *,
             persist: bool = True) -> None:
        """Open (creating if needed) the repository in directory path. The variables SET
        before are written to its config.json, for later opens too; persist=False
        applies them to this open only (config.json keeps its values)."""
        if self._session is not None:
            raise MonotoneError("already open: close() first")
        if not sys.platform.startswith("linux"):
            raise MonotoneError(LINUX_ONLY)
        if not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
            raise MonotoneError("open() takes a directory path")
        settings = dict(self._settings)
        if not persist:
            settings[ONCE] = sorted(self._settings)
        self._session = Session(os.fsdecode(os.fspath(path)), settings)
        self._closed = False
        self.config.values.update({k: v for k, v in self._session.config.values.items()
                                   if k in self.config.values})

    def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            self._closed = True
            session.close()

    def __enter__(self) -> "Monotone":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if sys.is_finalizing():
            return  # threads are gone; the OS releases locks, the coordinator sees us go
        try:
            self.close()
        except Exception:
            pass

    @property
    def _open(self) -> Session:
        if self._session is None:
            raise MonotoneError("the repository is not open: open() it first")
        return self._session

    # writing
    def write(self, events: Iterable[Event]) -> list[int]:
        """Write events as one atomic batch; return their ids (serial ids filled in)."""
        session = self._open
        if isinstance(events, Event):
            raise MonotoneError("write() takes a list of Event, got one Event: "
                                "write([event]) writes it")
        try:
            events = list(events)
        except TypeError:
            raise MonotoneError(f"write() takes a list of Event, got "
                                f"{type(events).__name__}") from None
        for i, ev in enumerate(events):
            if not isinstance(ev, Event):
                raise MonotoneError(f"write() takes a list of Event, but item {i} is "
                                    f"{type(ev).__name__}")
        ids = [MAX_ID if ev.id is None else ev.id for ev in events]
        for id_ in ids:
            if not isinstance(id_, (int, np.integer)) or isinstance(id_, bool) or not 0 <= id_ < 2**64:
                raise MonotoneError(f"event id must be None or an int in [0, 2**64-1], got {id_!r}")
        keys = [_as_bytes(ev.key, "key") for ev in events]
        values = [_as_bytes(ev.value, "value") for ev in events]
        flags = np.array([ev.flags & DELETE for ev in events], np.uint8)
        rows = _rows(np.array(ids, np.uint64), pack_bytes(keys), pack_bytes(values), flags)
        return session.writer.write(rows, rows.ids == U64(MAX_ID)).tolist()

    def write_table(self, table: TableLike) -> np.ndarray:
        """Write a pyarrow Table/RecordBatch or a pandas (or polars) DataFrame as one
        atomic batch: columns value, and optionally id (serial ids when absent; the ids
        are returned as by write_batch), key, delete (boolean)."""
        from .frames import write_table
        return write_table(self, table)

    def write_batch(self, ids: np.ndarray | Sequence[int] | None = None,
                    values: Column = None, keys: Column = None,
                    deletes: np.ndarray | Sequence[bool] | None = None) -> np.ndarray:
        """Vectorized write of one atomic batch; return the ids as a uint64 array.

        ids: uint64 array, or None for serial ids. values and keys: a 2-D uint8
        array (one row per event), an (offsets, data) pair with n+1 offsets, or
        a list of bytes. deletes: optional bool array.
        """
        session = self._open
        n = None
        if ids is not None:
            ids = _ids_array(ids)
            n = len(ids)
        vo, vd = _column(values, "values", n)
        n = len(vo) - 1 if n is None else n
        if n is None or len(vo) - 1 != n:
            raise MonotoneError(f"values has {len(vo) - 1} events but ids has {n}")
        ko, kd = _column(keys, "keys", n)
        if len(ko) - 1 != n:
            raise MonotoneError(f"keys has {len(ko) - 1} events but the batch has {n}")
        if len(kd) > MAX_KEY and int(np.diff(ko).max()) > MAX_KEY:
            raise MonotoneError(f"a key is longer than {MAX_KEY} bytes")
        if len(vd) > MAX_VALUE and int(np.diff(vo).max()) > MAX_VALUE:
            raise MonotoneError(f"a value is longer than {MAX_VALUE} bytes")
        if deletes is None:
            flags = _no_flags(n)
        else:
            flags = np.zeros(n, np.uint8)
            flags[_deletes(deletes, n)] = DELETE
        if ids is None:
            ids, serial = np.full(n, MAX_ID, np.uint64), np.ones(n, bool)
        else:
            ids = ids.copy()
            serial = ids == U64(MAX_ID) if n and ids.max() == MAX_ID else None
        rows = _rows(ids, (ko, kd), (vo, vd), flags)
        return session.writer.write(rows, serial)

    # reading
    def cursor(self, id: int | None = None, key: bytes | None = None, *,
               max_id: int | None = None, reverse: bool = False, follow: bool = False,
               timeout: float | None = None) -> Cursor:
        """A cursor at the first event >= (id, key), in ascending (id, key) order.

        reverse: at the last event <= (id, key) instead (id None: the last event,
        key None: any key of id), walking down. max_id: no id above it is read, in
        either direction. follow: at the end, wait for new events rather than stop,
        until close() or timeout seconds pass without one (forward only).
        """
        session = self._open
        for name, value in (("id", id), ("max_id", max_id)):
            if value is not None and (not isinstance(value, (int, np.integer))
                                      or isinstance(value, bool) or not 0 <= value < 2**64):
                raise MonotoneError(f"cursor {name} must be None or an int in [0, 2**64-1], "
                                    f"got {value!r}")
        if key is not None:
            key = _as_bytes(key, "key")
        if id is not None and max_id is not None and id > max_id:
            raise MonotoneError(f"cursor max_id {max_id} is below its id {id}: the range is "
                                "empty (max_id is an inclusive upper bound on ids)")
        if reverse and follow:
            raise MonotoneError("a cursor cannot follow in reverse: new events come at the "
                                "end, so follow only forward")
        if timeout is not None:
            if not follow:
                raise MonotoneError("cursor timeout is for follow=True (how long to wait for "
                                    "new events); other cursors never wait")
            if not isinstance(timeout, (int, float, np.integer, np.floating)) or \
                    isinstance(timeout, bool) or not timeout >= 0:
                raise MonotoneError(f"cursor timeout must be a number of seconds >= 0, "
                                    f"got {timeout!r}")
        return Cursor(session, id, key, max_id=max_id, reverse=bool(reverse),
                      follow=bool(follow), timeout=None if timeout is None else float(timeout))


def _as_bytes(x, what: str) -> bytes:
    if isinstance(x, bytes):
        data = x
    elif isinstance(x, (bytearray, memoryview)):
        data = bytes(x)
    else:
        raise MonotoneError(f"event {what} must be bytes, got {type(x).__name__}")
    limit = MAX_KEY if what == "key" else MAX_VALUE
    if len(data) > limit:
        raise MonotoneError(f"{what} of {len(data)} bytes is longer than {limit} bytes")
    return data


def _array(x, what: str) -> np.ndarray:
    """np.asarray that says what is wrong with ragged or odd input."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise MonotoneError(f"{what} cannot be read as an array ({e})") from None


def _integers(x, what: str) -> np.ndarray:
    """A 1-D array of non-negative integers below 2**64, as uint64; nothing else
    (floats, bools and strings are refused rather than truncated)."""
    arr = _array(x, what)
    if arr.ndim != 1:
        raise MonotoneError(f"{what} must be a 1-D array")
    if arr.dtype == object:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                   for v in arr.tolist()):
            raise MonotoneError(f"{what} must hold integers only")
        if any(not 0 <= int(v) < 2**64 for v in arr.tolist()):
            raise MonotoneError(f"{what} must be in [0, 2**64-1]")
        return np.array([int(v) for v in arr.tolist()], np.uint64)
    if arr.dtype.kind == "u":
        return arr.astype(np.uint64, copy=False)
    if arr.dtype.kind == "i":
        if len(arr) and arr.min() < 0:
            raise MonotoneError(f"{what} must not be negative")
        return arr.astype(np.uint64)
    if arr.size == 0 and arr.dtype.kind == "f":
        return np.zeros(0, np.uint64)  # np.asarray([]) is float64
    raise MonotoneError(f"{what} must be an array of unsigned 64-bit integers, got {arr.dtype}")


def _ids_array(ids) -> np.ndarray:
    return _integers(ids, "ids")


def _deletes(deletes, n: int) -> np.ndarray:
    arr = _array(deletes, "deletes")
    if arr.shape != (n,):
        raise MonotoneError(f"deletes must be a bool array of {n} entries")
    if arr.dtype == bool:
        return arr
    if arr.size == 0:
        return np.zeros(0, bool)  # np.asarray([]) is float64
    if arr.dtype.kind in "iu" and np.all((arr == 0) | (arr == 1)):
        return arr.astype(bool)
    if arr.dtype == object and all(isinstance(v, (bool, np.bool_)) for v in arr.tolist()):
        return arr.astype(bool)
    raise MonotoneError(f"deletes must be a bool array (or of 0 and 1), got {arr.dtype}")


def _column(col, what: str, n: int | None):
    """values/keys in any accepted form -> (offsets u64[n+1], data u8)."""
    if col is None:
        if n is None:
            raise MonotoneError("write_batch() needs ids or values")
        return _fixed_offsets(n, 0), np.zeros(0, np.uint8)
    if isinstance(col, np.ndarray):
        if col.dtype != np.uint8 or col.ndim != 2:
            raise MonotoneError(f"{what} as an array must be 2-D uint8 (one row per event)")
        rows, width = col.shape
        return _fixed_offsets(rows, width), np.ascontiguousarray(col).reshape(-1)
    if isinstance(col, tuple) and len(col) == 2:
        offsets = _integers(col[0], f"{what} offsets")
        data = _array(col[1], f"{what} data")
        if len(offsets) < 1:
            raise MonotoneError(f"{what} offsets must have n+1 entries")
        if data.dtype != np.uint8 or data.ndim != 1:
            raise MonotoneError(f"{what} data must be a 1-D uint8 array")
        if np.any(offsets[1:] < offsets[:-1]) or int(offsets[-1]) > len(data):
            raise MonotoneError(f"{what} offsets must be ascending and within the data")
        start = int(offsets[0])
        return offsets - np.uint64(start), data[start:int(offsets[-1])]
    if isinstance(col, (list, tuple)):
        return pack_bytes([_as_bytes(x, what[:-1]) for x in col])
    raise MonotoneError(f"{what} must be a 2-D uint8 array, an (offsets, data) pair "
                        "or a list of bytes")


# Columns every batch of a shape has alike, made once per shape and shared read-only
# (the batches of a writer are mostly all of one shape); larger ones are made each time
_SHARED_UP_TO = 1 << 16  # rows: 512 KiB at most for each of 64 shapes kept


def _fixed_offsets(rows: int, width: int) -> np.ndarray:
    """Offsets of rows values of width bytes each (width 0: no keys)."""
    if rows > _SHARED_UP_TO:
        return np.arange(rows + 1, dtype=np.uint64) * np.uint64(width)
    return _shared(rows, width)


def _no_flags(rows: int) -> np.ndarray:
    if rows > _SHARED_UP_TO:
        return np.zeros(rows, np.uint8)
    return _shared(rows, None)


@functools.lru_cache(maxsize=64)
def _shared(rows: int, width: int | None) -> np.ndarray:
    column = np.zeros(rows, np.uint8) if width is None else \
        np.arange(rows + 1, dtype=np.uint64) * np.uint64(width)
    column.flags.writeable = False
    return column


def _rows(ids, keys, values, flags) -> Rows:
    ko, kd = keys
    vo, vd = values
    return Rows(ids, flags, ko, kd, vo, vd)
