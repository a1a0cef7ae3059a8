"""Data frames: cursors to Arrow, pandas and polars, write_table from them, Batch.to_arrow
(copies of shared memory, zero-copy of file regions), streaming readers, bad input."""
from __future__ import annotations

import gc
import json
import mmap
import os
import random
import subprocess
import sys
import threading
import weakref
import zlib

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import test_hostile_files as hostile
from conftest import ALL, ROOT, open_db
from event_rows import make_rows
from readback import read_all

import monotone
from monotone import Event, frames
from monotone import cursor as cursors
from monotone.format import region
from monotone.format.crypto import Cipher
from monotone.format.rows import DELETE, concat, sort_dedup
from monotone.partition import fileformat as partition
from monotone.partition.fileformat import Identity
from monotone.partition.reader import Reader
from monotone.partition.writer import Writer

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

        def batches(self, **kw):
            for b in self.cursor.batches(**kw):
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


# runs of regions (Reader.read_run; batches() of a file read alone) -----------------


def mixed_events(n: int = 3000) -> list[tuple]:
    """Keys in some stretches and not others, empty values, deletes, regions that
    compress and regions that do not (stored plain)."""
    rng = random.Random(3)
    events = []
    for i in range(n):
        value = rng.randbytes(i % 90) if i % 1000 < 500 else b"reading %d " % (i % 7) * 5
        if 1000 <= i < 1600:  # two keys of one id
            events += [(i, b"k%d" % (i % 5), value, 0), (i, b"k%d+" % (i % 5), b"", 0)]
        else:
            events.append((i, b"", value, DELETE if i % 97 == 0 else 0))
    return events


IDENTITY = Identity("0f4c9a55-3c52-4c3e-9d59-6f3a36d1a001", 0)


def write_file(path: str, events, compression: str = "lz4", encrypted: bool = False,
               crc: bool = True, region_size: int = 2048) -> Cipher | None:
    cipher = Cipher(b"k" * 32) if encrypted else None
    w = Writer(path, compression, 0, region_size, cipher, crc,
               identity=IDENTITY if encrypted else None)
    w.add(sort_dedup(make_rows(events)))
    w.finish({"min": 0, "max": 2**40}, sync=False)
    return cipher


def columns(rows) -> tuple:
    return (rows.ids.tolist(), rows.flags.tolist(), rows.key_offsets.tolist(),
            rows.key_data.tobytes(), rows.value_offsets.tolist(), rows.value_data.tobytes())


def test_decoder_is_decode_joined():
    """Regions of random events, some with a flipped byte: a Decoder gives what
    concat() of their decode() gives, or an error where decode gives one."""
    rng = random.Random(11)

    def encoded() -> bytes:
        events = [(rng.randrange(50), rng.choice([b"", b"", b"k", rng.randbytes(3)]),
                   rng.randbytes(rng.randrange(12)), rng.choice([0, 0, DELETE]))
                  for _ in range(rng.randrange(8))]
        return bytes(region.encode(sort_dedup(make_rows(events))))

    for _ in range(500):
        parts = [bytearray(encoded()) for _ in range(rng.randrange(1, 4))]
        if rng.random() < 0.5:
            part = rng.choice(parts)
            part[rng.randrange(len(part))] ^= 1 << rng.randrange(8)
        try:
            want = columns(concat([region.decode(bytes(p)) for p in parts]))
        except monotone.CorruptionError:
            want = None
        events = sum(region.HEADER.unpack_from(p)[0] for p in parts)
        data = sum(map(len, parts)) - events * region.ROW_BYTES - len(parts) * region.HEADER.size
        if not 0 <= data <= 1 << 20 or events > 1 << 20:  # a damaged count
            assert want is None
            continue
        decoder = region.Decoder(events, data)
        try:
            for p in parts:
                decoder.add(p)
            got = columns(decoder.rows())
        except monotone.CorruptionError:
            got = None
        assert got == want


def with_crc32(path: str, to: str) -> None:
    """The file as written before xxh3: each region's checksum zlib's crc32."""
    w = Writer(to, "none", 0, 2048)
    with Reader(path) as r:
        for i, entry in enumerate(r.index.entries.copy()):
            data = r.read_stored(i)
            entry["crc"] = zlib.crc32(data)
            entry["flags"] = int(entry["flags"]) & ~partition.REGION_XXH3
            w.add_stored(data, entry, r.index.min_key(i), r.index.max_key(i))
    w.finish({"min": 0, "max": 2**40}, sync=False)


@pytest.mark.parametrize("compression, encrypted, crc", [
    ("none", False, True), ("lz4", False, True), ("zstd", False, True),
    ("lz4", True, True), ("none", False, False), ("none", False, "crc32")])
def test_a_run_is_its_regions_joined(tmp_path, compression, encrypted, crc):
    """Regions read straight into their places (plain ones of a local file) or
    copied there once decrypted and decompressed: what read_region reads."""
    path = str(tmp_path / "part")
    cipher = write_file(path, mixed_events(), compression, encrypted, bool(crc))
    if crc == "crc32":
        with_crc32(path, path + ".old")
        path += ".old"
    with Reader(path, cipher, IDENTITY if encrypted else None) as r:
        regions, flags = r.index.regions, r.index.entries["flags"]
        plain = flags & partition.REGION_PLAIN
        assert regions > 10 and (compression == "none" or 0 < plain.sum() < regions)
        assert not crc or (flags & partition.REGION_XXH3 == 0).all() == (crc == "crc32")
        for first, end in [(0, regions), (0, 1), (2, 7), (regions - 3, regions)]:
            want = columns(concat([r.read_region(i) for i in range(first, end)]))
            for allocate in (None, pa.allocate_buffer):
                assert columns(r.read_run(first, end, allocate)) == want


def test_a_damaged_run_fails_as_its_region_does(tmp_path):
    """The error names the first region at fault, as read_region does; what
    opening the file refuses is left to it."""
    reached = 0
    for case in hostile.CASES:
        if case.open_as != "local":
            continue
        path = hostile.forged_file(tmp_path, case)
        try:
            reader = Reader(path)
        except monotone.CorruptionError:
            continue
        with reader:
            errors = []
            for i in range(reader.index.regions):
                try:
                    reader.read_region(i)
                except monotone.MonotoneError as e:
                    errors.append(str(e))
            with pytest.raises(monotone.MonotoneError) as run:
                reader.read_run(0, reader.index.regions)
        assert errors and str(run.value) == errors[0], case.name
        reached += 1
    assert reached >= 3
    path = str(tmp_path / "flipped")
    write_file(path, mixed_events(), "none")
    with Reader(path) as r:
        at = int(r.index.entries["offset"][4]) + 50
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0xFF]))
    with Reader(path) as r:
        with pytest.raises(monotone.CorruptionError, match="region 4 checksum mismatch"):
            r.read_run(1, 9)
        assert columns(r.read_run(5, 9)) == columns(concat([r.read_region(i)
                                                            for i in range(5, 9)]))


@pytest.fixture
def small_runs(monkeypatch):
    """Runs of a few regions: a scan reads several, ahead in threads (after its first
    regions, read one at a time)."""
    monkeypatch.setattr(cursors, "RUN_BYTES", 300_000)
    monkeypatch.setattr(cursors, "FIRST_RUN", 100_000)


def scan_rows(db, **where) -> list[tuple]:
    with db.cursor(**where) as cur:
        return [(e.id, e.key, e.value) for e in cur]


def test_runs_read_what_a_merge_reads(repo, small_runs):
    """A refreshed file read in runs, memtable rows after it or among its regions,
    across partitions, from positions and to bounds: what the events are."""
    db = open_db(repo, interval=40_000)
    try:
        n = 60_000
        ids = np.arange(n, dtype=np.uint64)
        values = (ids.reshape(-1, 1) * np.arange(1, 41, dtype=np.uint64)).astype(np.uint8)
        db.write_batch(ids=ids, values=values)
        db.write([Event(id=i, key=b"k", value=b"keyed %d" % i) for i in range(0, n, 3)])
        model = {(i, b""): values[i].tobytes() for i in range(n)}
        model.update({(i, b"k"): b"keyed %d" % i for i in range(0, n, 3)})
        db.execute(ALL)
        late = [Event(id=n + i, value=b"late") for i in range(5)]  # after the file
        for step in ("refreshed", "after", "among"):
            if step == "after":
                db.write(late)
                model.update({(e.id, b""): e.value for e in late})
            if step == "among":  # a memtable row among the first file's regions
                db.write([Event(id=30_001, key=b"j", value=b"among")])
                model[(30_001, b"j")] = b"among"
            events = [(i, k, v) for (i, k), v in sorted(model.items())]
            for start, key, top in [(None, None, None), (1, None, None), (30_000, b"k", None),
                                    (0, None, 45_000), (39_999, b"", 40_001), (2, b"k", 2)]:
                where = dict(id=start, key=key, max_id=top)
                want = [e for e in events if (e[0], e[1]) >= (start or 0, key or b"") and
                        (top is None or e[0] <= top)]
                assert scan_rows(db, **where) == want, (step, where)
                with db.cursor(**where) as cur:
                    assert rows_of(cur.to_arrow()) == want, (step, where)
                with db.cursor(**where) as cur:
                    assert rows_of(cur.to_polars()) == want, (step, where)
    finally:
        db.close()


def test_runs_come_from_arrow_memory_in_few_chunks(db):
    n = 200_000
    db.write_batch(ids=np.arange(n, dtype=np.uint64), values=np.ones((n, 100), np.uint8))
    db.execute(ALL)
    before = pa.total_allocated_bytes()
    table = db.cursor().to_arrow()
    assert pa.total_allocated_bytes() - before >= n * 100  # the values, in Arrow's pool
    regions = sum(p["regions"] for p in json.loads(db.execute("SHOW PARTITIONS")))
    # the first FIRST_RUN bytes a region a chunk, then a run a chunk
    assert table.column("value").num_chunks < regions // 4
    assert table.column("value").to_pylist()[::50_000] == [b"\x01" * 100] * 4
    frame = db.cursor().to_polars()
    assert frame.schema == {"id": pl.UInt64, "key": pl.Binary, "value": pl.Binary}
    assert frame["id"].to_list() == list(range(n))


def test_a_scan_left_early_lets_go_of_its_threads_and_file(db, small_runs):
    n = 100_000
    db.write_batch(ids=np.arange(n, dtype=np.uint64), values=np.ones((n, 50), np.uint8))
    db.execute(ALL)
    fds = set(os.listdir("/proc/self/fd"))
    cur = db.cursor()
    batches = cur.batches()
    next(batches)
    assert len(next(batches)) > 0  # a run: the next ones are read ahead in threads
    readers = [t for t in threading.enumerate() if t.name.startswith("monotone-read")]
    assert readers
    cur.close()  # waits for no thread: the reads under way end, then the file is closed
    for thread in readers:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in readers)
    assert set(os.listdir("/proc/self/fd")) <= fds


def test_scans_dropped_unclosed_are_let_go_of_by_the_collector(db, small_runs):
    """A cursor dropped mid-scan is closed by the garbage collector, in whatever thread
    it runs (one of the read-ahead threads among them): nothing waits there."""
    n = 100_000
    db.write_batch(ids=np.arange(n, dtype=np.uint64), values=np.ones((n, 50), np.uint8))
    db.execute(ALL)
    fds = set(os.listdir("/proc/self/fd"))
    threshold = gc.get_threshold()
    gc.set_threshold(50, 2, 2)  # collections often, in the read-ahead threads too
    try:
        for _ in range(60):
            batches = db.cursor().batches()
            next(batches)
            next(batches)
            del batches
        gc.collect()
    finally:
        gc.set_threshold(*threshold)
    for thread in [t for t in threading.enumerate() if t.name.startswith("monotone-read")]:
        thread.join(timeout=30)
    assert set(os.listdir("/proc/self/fd")) <= fds


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
