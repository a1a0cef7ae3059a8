"""Data frames in and out: cursors to Arrow, pandas and polars; tables to write_batch.

Arrow's binary columns are the same layout as a Batch (offsets into one data
buffer), so a batch becomes a RecordBatch by handing over its buffers, and a
table becomes one write_batch call by handing back (offsets, data) pairs: no
event is touched in Python either way.

pyarrow, pandas and polars are an extra (`pip install 'monotone-py[arrow]'`),
imported only inside these functions, so `import monotone` never pays for them.
This module imports nothing of the engine but its errors: Batch.to_arrow calls
in here, and cursors and the client call in here too.
"""
from __future__ import annotations

import mmap
import sys
from importlib import import_module
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from .errors import MonotoneError

if TYPE_CHECKING:  # the extra's types, for type checkers: never imported to run
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    # what write_table takes
    TableLike: TypeAlias = pa.Table | pa.RecordBatch | pd.DataFrame | pl.DataFrame

EXTRA = "pip install 'monotone-py[arrow]'"
COLUMNS = ("id", "key", "value", "delete")  # what write_table reads
BINARY = ("binary", "large_binary", "binary_view")  # Arrow's types of variable bytes
GROUP = 1 << 16  # rows of batches to_polars casts to binary_view at once
_schema = None  # built at first use: pyarrow is imported only then


def need(module: str, what: str):
    """The optional module, or an error that names it and the extra holding it."""
    try:
        return import_module(module)
    except ImportError:
        raise MonotoneError(f"{what} needs {module}: {EXTRA}") from None


def schema():
    """id uint64, key and value large_binary: what every export yields, empty or not.

    large_binary (int64 offsets) because a batch's offsets are 64-bit: binary's
    int32 offsets would cap a column at 2 GiB."""
    global _schema
    if _schema is None:
        pa = need("pyarrow", "to_arrow")
        _schema = pa.schema([pa.field("id", pa.uint64(), nullable=False),
                             pa.field("key", pa.large_binary(), nullable=False),
                             pa.field("value", pa.large_binary(), nullable=False)])
    return _schema


# out: batches and cursors ------------------------------------------------------------


def batch_to_arrow(batch) -> pa.RecordBatch:
    """A Batch as a pyarrow.RecordBatch (id, key, value); see Batch.to_arrow."""
    pa = need("pyarrow", "to_arrow")
    n = len(batch)
    ids = pa.Array.from_buffers(pa.uint64(), n, [None, _buffer(pa, batch.ids, np.uint64)])
    keys = _binary(pa, n, batch.key_offsets, batch.key_data)
    values = _binary(pa, n, batch.value_offsets, batch.value_data)
    return pa.RecordBatch.from_arrays([ids, keys, values], schema=schema())


def _binary(pa, n: int, offsets: np.ndarray, data: np.ndarray):
    """A large_binary array over (offsets, data): Arrow's layout is the batch's."""
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, _buffer(pa, offsets, np.int64), _buffer(pa, data, np.uint8)])


def _buffer(pa, a: np.ndarray, dtype):
    """An Arrow buffer over a's memory, or over a copy of it when that memory may go.

    A memtable's arrays view a mapping of POSIX shared memory, which a refresh
    retires and this process then unmaps: a RecordBatch pinning it would keep
    the segment's memory alive (or, once the mapping goes, read freed pages),
    so those are copied. Everything else (decoded regions, merges, offsets a
    slice rebased) is memory of the batch's own, handed over as it is. A copy is
    also made where Arrow cannot take the memory as it is (strided, unaligned).
    """
    flags = a.flags  # cheaper than a.ctypes: this runs for every column of every batch
    if not (flags.c_contiguous and flags.aligned) or _maps_shared_memory(a):
        a = np.array(a, dtype)  # a fresh, aligned, contiguous copy
    elif a.dtype != dtype:
        a = a.view(dtype)  # uint64 offsets read as int64: the same bits
    return pa.py_buffer(a)


def _maps_shared_memory(a: np.ndarray) -> bool:
    """Whether a's memory is an mmap (through views and memoryviews of it)."""
    base = a
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


def cursor_to_arrow(cursor) -> pa.Table:
    """The rest of the cursor's range as one pyarrow.Table (a chunk per batch)."""
    pa = need("pyarrow", "to_arrow")
    batches = cursor.batches(allocate=pa.allocate_buffer)
    return pa.Table.from_batches([batch_to_arrow(b) for b in batches], schema=schema())


def cursor_to_reader(cursor) -> pa.RecordBatchReader:
    """The rest of the cursor's range as a pyarrow.RecordBatchReader.

    The cursor is read as the reader is, a batch at a time, so a range larger
    than memory streams through (to a Parquet writer, an IPC stream, DuckDB)."""
    pa = need("pyarrow", "to_reader")
    batches = cursor.batches(allocate=pa.allocate_buffer)
    return pa.RecordBatchReader.from_batches(schema(), map(batch_to_arrow, batches))


def cursor_to_pandas(cursor) -> pd.DataFrame:
    """The rest of the cursor's range as a pandas.DataFrame (see table_to_pandas)."""
    return table_to_pandas(cursor_to_arrow(cursor))


def table_to_pandas(table: pa.Table | pa.RecordBatch) -> pd.DataFrame:
    """Events (a pyarrow Table or RecordBatch) as pandas takes them, the one frame
    schema of to_pandas and monotone.dask: id uint64; key and value Arrow-backed binary
    (pd.ArrowDtype(pa.large_binary())), which keeps Arrow's buffers as they are
    rather than making a Python bytes object per event (numpy's object columns)."""
    pd = need("pandas", "to_pandas")
    pa = need("pyarrow", "to_pandas")
    binary = pd.ArrowDtype(pa.large_binary())
    return table.to_pandas(types_mapper={pa.large_binary(): binary}.get)


def cursor_to_polars(cursor) -> pl.DataFrame:
    """The rest of the cursor's range as a polars.DataFrame: id (u64), key and value
    (Binary), taking Arrow's buffers as they are: a chunk per batch or group of
    batches, not joined into one (rechunk() does that, when a caller wants it).

    Polars keeps binary columns as views (Arrow's binary_view), so key and value
    are cast to those a group of batches (GROUP rows) at a time, as the batches
    come: while the cursor reads the next ones ahead, and with the values' bytes
    left where they are."""
    pl = need("polars", "to_polars")
    pa = need("pyarrow", "to_polars")
    views = _Views(pa)
    chunks: list = []  # tables of binary_view columns
    group: list = []  # record batches not cast yet
    rows = keys = 0  # of the group; keys: key bytes
    for batch in cursor.batches(allocate=pa.allocate_buffer):
        group.append(batch_to_arrow(batch))
        rows += len(batch)
        keys += int(batch.key_offsets[-1])
        if rows >= GROUP:
            chunks.append(views.table(group, keys))
            group, rows, keys = [], 0, 0
    if group or not chunks:
        chunks.append(views.table(group, keys))
    return pl.from_arrow(pa.concat_tables(chunks), rechunk=False)


class _Views:
    """Record batches as tables whose key and value are binary_view."""

    def __init__(self, pa) -> None:
        self.pa, self.view = pa, pa.binary_view()
        self.zeros = None  # views of empty values (zeros), for groups without keys

    def table(self, batches: list, keys: int):
        """batches as one table; keys: their key bytes (none: every key's view is
        zeros, shared by the groups)."""
        pa, view = self.pa, self.view
        table = pa.Table.from_batches(batches, schema=schema())
        n = table.num_rows
        if keys:
            key = table.column("key").cast(view)
        else:
            if self.zeros is None or self.zeros.size < 16 * n:
                self.zeros = pa.py_buffer(np.zeros(16 * n, np.uint8))
            key = pa.Array.from_buffers(view, n, [None, self.zeros])
        return pa.table({"id": table.column("id"), "key": key,
                         "value": table.column("value").cast(view)})


# in: tables ---------------------------------------------------------------------------


def write_table(db, table: TableLike) -> np.ndarray:
    """Write a table's rows as one atomic batch; return their ids (uint64).

    table: a pyarrow.Table or RecordBatch, a pandas or polars DataFrame, with
    columns value (binary), and optionally id (unsigned or non-negative
    integers; absent: serial ids, as write_batch), key (binary) and delete
    (boolean). Nulls and other columns are errors, raised before anything is
    written; each column goes to write_batch as arrays, not event by event.
    """
    pa = need("pyarrow", "write_table")
    table = _as_table(pa, table)
    columns = _columns(table)
    values = _bytes(pa, columns["value"], "value")
    keys = _bytes(pa, columns["key"], "key") if "key" in columns else None
    ids = _ids(pa, columns["id"]) if "id" in columns else None
    deletes = _deletes(pa, columns["delete"]) if "delete" in columns else None
    if ids is None and values is None:  # no rows, no ids: write_batch needs a count
        return np.zeros(0, np.uint64)
    return db.write_batch(ids=ids, values=values, keys=keys, deletes=deletes)


def _as_table(pa, table):
    """Any accepted input as a pyarrow.Table. A frame library not imported yet
    cannot have made the object, so none is imported to check."""
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    pandas, polars = sys.modules.get("pandas"), sys.modules.get("polars")
    try:
        if pandas is not None and isinstance(table, pandas.DataFrame):
            return pa.Table.from_pandas(table, preserve_index=False)
        if polars is not None and isinstance(table, polars.DataFrame):
            return table.to_arrow()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise MonotoneError(f"write_table: the frame cannot be read as Arrow columns ({e})") \
            from None
    raise MonotoneError("write_table takes a pyarrow.Table or RecordBatch, or a pandas or "
                        f"polars DataFrame, got {type(table).__name__}")


def _columns(table) -> dict:
    """The table's columns by name; each known at most once, value present."""
    names = table.column_names
    unknown = sorted({str(n) for n in names} - set(COLUMNS))
    if unknown:
        raise MonotoneError(f"write_table: unknown column(s) {', '.join(map(repr, unknown))}: "
                            "the columns are value, and optionally id, key and delete")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MonotoneError(f"write_table: column(s) {', '.join(map(repr, twice))} more than once")
    if "value" not in names:
        raise MonotoneError("write_table: the table has no 'value' column")
    return {n: table.column(n) for n in names}


def _checked(pa, col, name: str, target):
    """The column as one array of its type, with no nulls; a column of no type
    (pandas' empty object column) as an empty array of target."""
    if col.null_count:
        raise MonotoneError(f"write_table: column {name!r} has {col.null_count} null(s): "
                            "every row needs one")
    if pa.types.is_null(col.type):
        col = col.cast(target)
    return col.combine_chunks()


def _bytes(pa, col, name: str):
    """A binary column as write_batch takes it: a 2-D uint8 array when every row has
    the same width, else an (offsets, data) pair; None when the column is empty."""
    arr = _checked(pa, col, name, pa.large_binary())
    t = arr.type
    if not len(arr):
        return None
    if pa.types.is_fixed_size_binary(t):
        width = t.byte_width
        data = _u8(arr.buffers()[1])[arr.offset * width:(arr.offset + len(arr)) * width]
        return data.reshape(len(arr), width)
    if str(t) not in BINARY:  # by name: binary_view is newer than some pyarrows
        hint = ": encode it to bytes" if "string" in str(t) else ""
        raise MonotoneError(f"write_table: column {name!r} must be binary, got {t}{hint}")
    arr = arr.cast(pa.large_binary())  # int32 offsets widened, views gathered; else as is
    _, offsets, data = arr.buffers()
    offsets = np.frombuffer(offsets, np.int64)[arr.offset:arr.offset + len(arr) + 1]
    return offsets, _u8(data)


def _u8(buffer) -> np.ndarray:
    return np.zeros(0, np.uint8) if buffer is None else np.frombuffer(buffer, np.uint8)


def _ids(pa, col) -> np.ndarray:
    arr = _checked(pa, col, "id", pa.uint64())
    if not pa.types.is_integer(arr.type):
        raise MonotoneError(f"write_table: column 'id' must be integers, got {arr.type}")
    return arr.to_numpy()


def _deletes(pa, col) -> np.ndarray:
    arr = _checked(pa, col, "delete", pa.bool_())
    if not pa.types.is_boolean(arr.type):
        raise MonotoneError(f"write_table: column 'delete' must be boolean, got {arr.type}")
    return arr.to_numpy(zero_copy_only=False)  # Arrow packs bits: numpy needs a byte each
