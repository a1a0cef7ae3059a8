"""Data frames: cursors to Arrow, pandas and polars, write_table from them, Batch.to_arrow
(copies of shared memory, zero-copy of file regions), streaming readers, bad input."""
from __future__ import annotations

import gc
import mmap
import subprocess
import sys
import weakref

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from conftest import ALL, ROOT
from readback import read_all

import monotone
from monotone import Event, frames

# mixed value lengths (empty ones too), NUL bytes, keys, ids across two partitions
EVENTS = [(0, b"", b""), (1, b"", b"\x00"), (1, b"k", b"a\x00b"), (2, b"\x00", b"x" * 1000),
          (7, b"kk", b""), (3_000_000, b"", b"far"), (3_000_001, b"z" * 255, b"\x00\x00")]
SCHEMA = pa.schema([pa.field("id", pa.uint64(), nullable=False),
                    pa.field("key", pa.large_binary(), nullable=False),
                    pa.field("value", pa.large_binary(), nullable=False)])


def rows_of(table) -> list[tuple]:
    """(id, key, value) of each row of an Arrow table, pandas or polars frame."""
    if isinstance(table, pd.DataFrame):
        return list(zip(table["id"].tolist(), table["key"].tolist(), table["value"].tolist()))
    if isinstance(table, pl.DataFrame):
        return list(zip(table["id"].to_list(), table["key"].to_list(), table["value"].to_list()))
    return list(zip(*(table.column(c).to_pylist() for c in ("id", "key", "value"))))


def write_events(db, events=EVENTS):
    db.write([Event(id=i, key=k, value=v) for i, k, v in events])


def shared_map(a: np.ndarray):
    """The mmap an array views, or None."""
    base = a
    while isinstance(base, np.ndarray):
        base = base.base
    base = base.obj if isinstance(base, memoryview) else base
    return base if isinstance(base, mmap.mmap) else None


# out: cursors and batches ----------------------------------------------------------


@pytest.mark.parametrize("refreshed", [False, True])
def test_cursor_to_arrow_pandas_polars(db, refreshed):
    write_events(db)
    if refreshed:
        db.execute(ALL)
    table = frames.cursor_to_arrow(db.cursor())
    assert table.schema == SCHEMA
    assert rows_of(table) == EVENTS == read_all(db)
    df = frames.cursor_to_pandas(db.cursor())
    assert list(df.columns) == ["id", "key", "value"] and df["id"].dtype == np.uint64
    assert rows_of(df) == EVENTS
    frame = frames.cursor_to_polars(db.cursor())
    assert frame.schema == {"id": pl.UInt64, "key": pl.Binary, "value": pl.Binary}
    assert rows_of(frame) == EVENTS


def test_cursor_exports_the_rest_of_its_range(db):
    write_events(db)
    with db.cursor(id=1, key=b"k") as cur:
        assert rows_of(frames.cursor_to_arrow(cur)) == EVENTS[2:]
        assert frames.cursor_to_arrow(cur).num_rows == 0  # nothing is left
    with db.cursor() as cur:
        cur.next()
        cur.next()
        assert rows_of(frames.cursor_to_arrow(cur)) == EVENTS[2:]


def test_empty_ranges_keep_the_schema(db):
    for cursor in (db.cursor(), db.cursor(id=5)):
        table = frames.cursor_to_arrow(cursor)
        assert table.num_rows == 0 and table.schema == SCHEMA
    write_events(db)
    reader = frames.cursor_to_reader(db.cursor(id=2**64 - 1))
    assert reader.schema == SCHEMA and reader.read_all().num_rows == 0
    df = frames.cursor_to_pandas(db.cursor(id=2**64 - 1))
    assert len(df) == 0 and list(df.columns) == ["id", "key", "value"]
    assert frames.cursor_to_polars(db.cursor(id=2**64 - 1)).shape == (0, 3)


def test_deletes_never_reach_an_export(db):
    write_events(db)
    db.write([Event(id=1, key=b"k", delete=True), Event(id=7, key=b"kk", delete=True)])
    want = [e for e in EVENTS if e[:2] not in ((1, b"k"), (7, b"kk"))]
    assert rows_of(frames.cursor_to_arrow(db.cursor())) == want
    assert frames.cursor_to_arrow(db.cursor()).column_names == ["id", "key", "value"]


def test_file_batches_are_zero_copy(db):
    write_events(db)
    db.execute(ALL)
    with db.cursor() as cur:
        batch = next(cur.batches())
        rb = batch.to_arrow()
        ids, keys, values = (rb.column(i).buffers() for i in range(3))
        assert ids[1].address == batch.ids.ctypes.data
        assert keys[2].address == batch.key_data.ctypes.data
        assert values[2].address == batch.value_data.ctypes.data
        assert values[1].address == batch.value_offsets.ctypes.data
        assert rows_of(rb) == EVENTS[:5]


def test_memtable_batch_outlives_its_refresh(db):
    """A memtable's batch views shared memory: its export is a copy, which holds no
    reference to the mapping, so the refresh frees it and the copy stays intact."""
    write_events(db)
    with db.cursor() as cur:
        batch = next(cur.batches())
        mapping = weakref.ref(shared_map(batch.value_data))
        rb = batch.to_arrow()
        assert rb.column(2).buffers()[2].address != batch.value_data.ctypes.data
        del batch
    db.execute(ALL)
    assert rows_of(frames.cursor_to_arrow(db.cursor())) == EVENTS  # a new snapshot unmaps
    gc.collect()
    assert mapping() is None, "the export keeps the retired memtable mapped"
    rb.validate(full=True)
    assert rows_of(rb) == EVENTS[:5]


def test_large_scan_round_trip(db):
    n = 200_000  # several memtable chunks, then several regions
    ids = np.arange(n, dtype=np.uint64) * np.uint64(3)
    values = (np.arange(n * 10, dtype=np.uint64) % np.uint64(251)).astype(np.uint8)
    db.write_batch(ids=ids, values=values.reshape(n, 10))
    for refreshed in (False, True):
        if refreshed:
            db.execute(ALL)
        table = frames.cursor_to_arrow(db.cursor())
        assert table.num_rows == n and table.column("id").num_chunks > 1
        assert np.array_equal(table.column("id").to_numpy(), ids)
        got = table.column("value").combine_chunks().buffers()[2]
        assert np.array_equal(np.frombuffer(got, np.uint8)[:n * 10], values)


def test_reader_streams_batch_by_batch(db):
    n = 300_000
    db.write_batch(ids=np.arange(n, dtype=np.uint64), values=np.zeros((n, 4), np.uint8))
    pulled = []

    class Counting:  # a cursor that counts the batches taken from it
        def __init__(self, cursor):
            self.cursor = cursor

        def batches(self):
            for b in self.cursor.batches():
                pulled.append(len(b))
                yield b

    with db.cursor() as cur:
        reader = frames.cursor_to_reader(Counting(cur))
        assert reader.schema == SCHEMA and pulled == []
        first = reader.read_next_batch()
        assert len(pulled) == 1 and first.num_rows == pulled[0] < n
        rest = list(reader)
    assert len(rest) >= 2 and first.num_rows + sum(b.num_rows for b in rest) == n
    assert rest[-1].column(0)[-1].as_py() == n - 1


# in: write_table ------------------------------------------------------------------


def test_write_table_arrow_round_trip(db):
    ids, keys, values = map(list, zip(*EVENTS))
    got = frames.write_table(db, pa.table({"id": pa.array(ids, pa.uint64()), "key": keys,
                                           "value": values}))
    assert got.dtype == np.uint64 and got.tolist() == ids
    assert read_all(db) == EVENTS


def test_write_table_serial_ids(db):
    db.write([Event(value=b"before")])
    got = frames.write_table(db, pa.RecordBatch.from_pydict({"value": [b"a", b"", b"c"]}))
    assert got.tolist() == [1, 2, 3]
    assert read_all(db) == [(0, b"", b"before"), (1, b"", b"a"), (2, b"", b""), (3, b"", b"c")]


def test_write_table_deletes(db):
    write_events(db)
    table = pa.table({"id": pa.array([1, 7, 8], pa.uint64()), "key": [b"k", b"kk", b""],
                      "value": [b"", b"", b"new"], "delete": [True, True, False]})
    frames.write_table(db, table)
    want = sorted([e for e in EVENTS if e[:2] not in ((1, b"k"), (7, b"kk"))] + [(8, b"", b"new")])
    assert read_all(db) == want


def test_write_table_pandas_round_trip(db):
    df = pd.DataFrame({"id": np.array([5, 6, 9], np.int64), "key": [b"", b"a", b"\x00"],
                       "value": [b"five", b"", b"n\x00ne"]})
    assert frames.write_table(db, df).tolist() == [5, 6, 9]
    out = frames.cursor_to_pandas(db.cursor())
    assert rows_of(out) == rows_of(df)
    assert frames.write_table(db, pd.DataFrame({"value": []})).tolist() == []  # no type: empty
    assert len(read_all(db)) == 3


def test_write_table_polars_round_trip(db):
    frame = pl.DataFrame({"id": pl.Series([3, 4], dtype=pl.UInt64), "value": [b"x", b"\x00y"]})
    frames.write_table(db, frame)
    assert rows_of(frames.cursor_to_polars(db.cursor())) == [(3, b"", b"x"), (4, b"", b"\x00y")]


def test_write_table_binary_layouts(db):
    """int32 offsets, fixed widths, several chunks and a slice that starts mid-buffer."""
    chunked = pa.Table.from_batches([
        pa.RecordBatch.from_pydict({"id": pa.array([0, 1], pa.uint64()),
                                    "value": pa.array([b"a", b"bb"], pa.binary())}),
        pa.RecordBatch.from_pydict({"id": pa.array([2], pa.uint64()),
                                    "value": pa.array([b""], pa.binary())})])
    frames.write_table(db, chunked)
    fixed = pa.table({"id": pa.array([10, 11, 12, 13], pa.uint64()),
                      "value": pa.array([b"w0", b"w1", b"w2", b"w3"], pa.binary(2))})
    frames.write_table(db, fixed.slice(1, 2))
    sliced = pa.table({"id": pa.array([20, 21, 22], pa.uint64()),
                       "key": pa.array([b"p", b"qq", b"r"], pa.large_binary()),
                       "value": pa.array([b"v20", b"v21", b"v22"], pa.large_binary())})
    frames.write_table(db, sliced.slice(1))
    assert read_all(db) == [(0, b"", b"a"), (1, b"", b"bb"), (2, b"", b""), (11, b"", b"w1"),
                            (12, b"", b"w2"), (21, b"qq", b"v21"), (22, b"r", b"v22")]


BAD = [  # (table, words of the error)
    (pa.table({"id": pa.array([1], pa.uint64())}), "no 'value' column"),
    (pa.table({"value": [b"a"], "when": [1]}), "unknown column(s) 'when'"),
    (pa.table({"value": ["text"]}), "must be binary, got string: encode it to bytes"),
    (pa.table({"value": [b"a", None]}), "'value' has 1 null"),
    (pa.table({"value": [b"a"], "key": [None]}), "'key' has 1 null"),
    (pa.table({"value": [b"a"], "id": [1.5]}), "'id' must be integers"),
    (pa.table({"value": [b"a"], "id": pa.array([-1], pa.int64())}), "must not be negative"),
    (pa.table({"value": [b"a"], "id": pa.array([None], pa.uint64())}), "'id' has 1 null"),
    (pa.table({"value": [b"a"], "delete": [1]}), "'delete' must be boolean"),
    (pa.table({"value": [b"a", b"b"], "delete": [True, None]}), "'delete' has 1 null"),
    (pa.table({"value": [b"a"], "key": [b"k" * 256]}), "longer than 255"),
    (pd.DataFrame({"value": [b"a", 1]}), "cannot be read as Arrow"),
    (pd.DataFrame({"value": [b"a", None]}), "'value' has 1 null"),
    ({"value": [b"a"]}, "takes a pyarrow.Table"),
]


def test_write_table_bad_input_writes_nothing(db):
    write_events(db)
    for table, words in BAD:
        with pytest.raises(monotone.MonotoneError) as e:
            frames.write_table(db, table)
        assert words in str(e.value), (words, str(e.value))
    doubled = pa.Table.from_arrays([pa.array([b"a"]), pa.array([b"b"])], ["value", "value"])
    with pytest.raises(monotone.MonotoneError, match="'value' more than once"):
        frames.write_table(db, doubled)
    assert read_all(db) == EVENTS


# optional extras ----------------------------------------------------------------


@pytest.mark.parametrize("module, call", [
    ("pyarrow", lambda db: next(db.cursor().batches()).to_arrow()),
    ("pyarrow", lambda db: frames.write_table(db, None)),
    ("pandas", lambda db: frames.cursor_to_pandas(db.cursor())),
    ("polars", lambda db: frames.cursor_to_polars(db.cursor())),
])
def test_missing_extra_is_named(db, monkeypatch, module, call):
    write_events(db)
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(monotone.MonotoneError) as e:
        call(db)
    assert f"needs {module}: pip install 'monotone-py[arrow]'" in str(e.value)


def test_import_monotone_imports_no_frame_library():
    code = ("import sys, monotone; monotone.Monotone; monotone.Cursor; monotone.Batch; "
            "import monotone.frames; "
            "print(sorted({'pyarrow', 'pandas', 'polars'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_the_methods_users_call(db):
    """Cursor.to_arrow/to_reader/to_pandas/to_polars and Monotone.write_table."""
    import pyarrow as pa
    ids = db.write_table(pa.table({"value": pa.array([b"a", b"", b"c\0"], pa.binary())}))
    assert len(ids) == 3
    with db.cursor() as cur:
        table = cur.to_arrow()
    assert table.column("value").to_pylist() == [b"a", b"", b"c\0"]
    with db.cursor(id=int(ids[1])) as cur:
        assert cur.to_pandas()["id"].tolist() == [int(i) for i in ids[1:]]
    with db.cursor() as cur:
        assert cur.to_polars()["value"].to_list() == [b"a", b"", b"c\0"]
    with db.cursor() as cur:
        assert sum(len(b) for b in cur.to_reader()) == 3
