"""The pure format layer: regions, WAL records, partition index and footer, rows ops.

Nothing here opens a repository; it turns columns into bytes and back and
checks that damage is detected rather than returned as data.
"""
from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import monotone
from monotone.format import partition, region
from monotone.format import wal as walfmt
from monotone.format.rows import (
    DELETE,
    Ordered,
    Rows,
    concat,
    drop_deletes,
    gather,
    merge,
    pack_bytes,
    sort_dedup,
)
from monotone.region_reader import Reader, read_all
from monotone.workers.region_writer import Writer

# helpers ---------------------------------------------------------------------


def record(*args) -> bytes:
    return walfmt.join(walfmt.encode(*args))


def drop_record(*args) -> bytes:
    return walfmt.join(walfmt.encode_drop(*args))


def make_rows(events) -> Rows:
    """[(id, key, value, flags)] -> Rows, in the given order."""
    ids = np.array([e[0] for e in events], np.uint64)
    ko, kd = pack_bytes([e[1] for e in events])
    vo, vd = pack_bytes([e[2] for e in events])
    flags = np.array([e[3] for e in events], np.uint8)
    return Rows(ids, flags, ko, kd.copy(), vo, vd.copy())


def as_list(rows: Rows) -> list[tuple[int, bytes, bytes, int]]:
    return [(int(rows.ids[i]), rows.key(i), rows.value(i), int(rows.flags[i]))
            for i in range(len(rows))]


def check_offsets(rows: Rows) -> None:
    """Offsets are zero-based, n+1 long, and end at the data length."""
    n = len(rows)
    assert len(rows.key_offsets) == n + 1 and len(rows.value_offsets) == n + 1
    assert int(rows.key_offsets[0]) == 0 and int(rows.value_offsets[0]) == 0
    assert int(rows.key_offsets[-1]) == len(rows.key_data)
    assert int(rows.value_offsets[-1]) == len(rows.value_data)


event_st = st.tuples(
    st.integers(0, 2**64 - 2),
    st.binary(max_size=12),
    st.binary(max_size=40),
    st.sampled_from([0, DELETE]),
)

# regions ---------------------------------------------------------------------


def test_region_round_trip_keys_empty_values_and_deletes():
    events = [
        (0, b"", b"", 0),
        (1, b"k", b"value-1", 0),
        (1, b"k2", b"", DELETE),
        (5, b"\x00" * 255, b"x" * 1000, 0),
        (2**64 - 2, b"last", b"", DELETE),
    ]
    data = region.encode(make_rows(events))
    assert len(data) == region.encoded_size(make_rows(events))
    back = region.decode(bytes(data))
    assert as_list(back) == events
    check_offsets(back)


def test_region_round_trip_empty():
    back = region.decode(bytes(region.encode(Rows.empty())))
    assert len(back) == 0
    check_offsets(back)


def test_region_round_trip_no_keys_fixed_values():
    rows = make_rows([(i, b"", bytes([i % 256]) * 100, 0) for i in range(1000)])
    back = region.decode(bytes(region.encode(rows)))
    assert np.array_equal(back.ids, rows.ids)
    assert np.array_equal(back.value_data, rows.value_data)
    assert np.array_equal(back.value_offsets, rows.value_offsets)
    assert len(back.key_data) == 0 and not back.flags.any()


@settings(max_examples=200, deadline=None)
@given(st.lists(event_st, max_size=40))
def test_region_round_trip_hypothesis(events):
    back = region.decode(bytes(region.encode(make_rows(events))))
    assert as_list(back) == events
    check_offsets(back)


@pytest.mark.parametrize("keep", [0, 10, 31, 32, 33, -14, -5, -1])
def test_region_truncated_raises(keep):
    data = bytes(region.encode(make_rows([(i, b"key", b"value", 0) for i in range(10)])))
    with pytest.raises(monotone.CorruptionError, match="my-origin"):
        region.decode(data[:keep], "my-origin")


def test_region_trailing_bytes_raise():
    data = bytes(region.encode(make_rows([(1, b"key", b"value", 0)])))
    with pytest.raises(monotone.CorruptionError):
        region.decode(data + b"\0")


def test_region_bad_lengths_raise():
    data = bytearray(region.encode(make_rows([(i, b"key", b"value", 0) for i in range(10)])))
    # value length column of event 0 -> 6; header still says 50 value bytes
    vlen_pos = region.HEADER.size + 8 * 10
    struct.pack_into("<I", data, vlen_pos, 6)
    with pytest.raises(monotone.CorruptionError):
        region.decode(bytes(data))
    # header says one more key byte than the data has
    data = bytearray(region.encode(make_rows([(1, b"ab", b"c", 0)])))
    n, kb, vb, r = region.HEADER.unpack_from(data, 0)
    region.HEADER.pack_into(data, 0, n, kb + 1, vb, r)
    with pytest.raises(monotone.CorruptionError):
        region.decode(bytes(data))

# WAL records -----------------------------------------------------------------


def wal_rows():
    return make_rows([(3, b"", b"abc", 0), (4, b"k", b"", DELETE), (9, b"kk", b"v" * 50, 0)])


@pytest.mark.parametrize("crc", [False, True])
def test_wal_record_round_trip(crc):
    rows = wal_rows()
    rec = record(17, 42, rows, crc)
    buf = memoryview(b"junk" + rec + b"more")
    out = walfmt.decode_at(buf, 4, "test")
    assert out is not None
    assert (out.lsn, out.ssn, out.size) == (17, 42, len(rec))
    assert as_list(out.rows) == as_list(rows)


def test_wal_records_back_to_back():
    recs = [record(i, 100 + i, make_rows([(i, b"", bytes([i]) * i, 0)]), i % 2 == 0)
            for i in range(1, 6)]
    buf = memoryview(b"".join(recs))
    pos, seen = 0, []
    while pos < len(buf):
        rec = walfmt.decode_at(buf, pos, "test")
        assert rec is not None
        seen.append((rec.lsn, rec.ssn, as_list(rec.rows)))
        pos += rec.size
    assert pos == len(buf)
    assert seen == [(i, 100 + i, [(i, b"", bytes([i]) * i, 0)]) for i in range(1, 6)]


def test_wal_empty_batch_round_trip():
    rec = record(1, 0, Rows.empty(), True)
    out = walfmt.decode_at(memoryview(rec), 0, "t")
    assert out is not None and len(out.rows) == 0 and out.size == len(rec)


@pytest.mark.parametrize("crc", [False, True])
@pytest.mark.parametrize("keep", [0, 1, 8, walfmt.HEADER.size - 1])
def test_wal_truncated_header_is_none(crc, keep):
    rec = record(1, 2, wal_rows(), crc)
    assert walfmt.decode_at(memoryview(rec[:keep]), 0, "t") is None


@pytest.mark.parametrize("crc", [False, True])
@pytest.mark.parametrize("missing", [1, 10, 50])
def test_wal_truncated_payload_is_none(crc, missing):
    rec = record(1, 2, wal_rows(), crc)
    assert len(rec) - missing >= walfmt.HEADER.size
    assert walfmt.decode_at(memoryview(rec[:-missing]), 0, "t") is None


@pytest.mark.parametrize("crc", [False, True])
def test_wal_any_header_byte_flip_is_none(crc):
    rec = record(123456, 789, wal_rows(), crc)
    for i in range(walfmt.HEADER.size):
        for bit in (0x01, 0x80):
            bad = bytearray(rec)
            bad[i] ^= bit
            assert walfmt.decode_at(memoryview(bytes(bad)), 0, "t") is None, (i, bit)


def test_wal_payload_byte_flip_with_data_crc_is_none():
    rec = record(5, 6, wal_rows(), True)
    for i in range(walfmt.HEADER.size, len(rec)):
        bad = bytearray(rec)
        bad[i] ^= 0x10
        assert walfmt.decode_at(memoryview(bytes(bad)), 0, "t") is None, i


def test_wal_value_byte_flip_without_data_crc_is_not_detected_but_framing_is():
    # documents the trade-off of wal_crc off: a flipped value byte decodes (framing intact)
    rec = record(5, 6, wal_rows(), False)
    bad = bytearray(rec)
    bad[-1] ^= 0x10
    out = walfmt.decode_at(memoryview(bytes(bad)), 0, "t")
    assert out is not None and out.rows.value(2) != b"v" * 50
    # but damage to the payload's own framing (its region header) is caught
    bad = bytearray(rec)
    bad[walfmt.HEADER.size] ^= 0x01  # region event count
    assert walfmt.decode_at(memoryview(bytes(bad)), 0, "t") is None


def test_wal_zeroed_tail_is_none():
    rec = record(5, 6, wal_rows(), False)
    assert walfmt.decode_at(memoryview(rec + b"\0" * 64), len(rec), "t") is None
    assert walfmt.decode_at(memoryview(b"\0" * 200), 0, "t") is None

# partition index and footer --------------------------------------------------


def build_index():
    b = partition.IndexBuilder()
    b.add(0, 100, 200, 10, 0, b"", 9, b"zz", 0xDEADBEEF)
    b.add(100, 50, 80, 3, 10, b"a", 12, b"", 7)
    meta = {"min": 0, "max": 99, "lsn": 4, "events": 13, "regions": 2, "size": 150,
            "compression": "lz4"}
    body = b.encode(meta)
    return meta, body


def test_index_and_footer_round_trip():
    meta, body = build_index()
    footer = partition.encode_footer(150, body)
    assert len(footer) == partition.FOOTER.size
    offset, length, crc, _ = partition.decode_footer(footer, "/p")
    assert (offset, length) == (150, len(body))
    index = partition.decode_index(body, crc, "/p")
    assert index.meta == meta
    assert index.regions == 2
    e = index.entries
    assert e["offset"].tolist() == [0, 100]
    assert e["size"].tolist() == [100, 50]
    assert e["size_origin"].tolist() == [200, 80]
    assert e["events"].tolist() == [10, 3]
    assert e["min_id"].tolist() == [0, 10] and e["max_id"].tolist() == [9, 12]
    assert e["crc"].tolist() == [0xDEADBEEF, 7]
    assert [index.min_key(0), index.max_key(0), index.min_key(1), index.max_key(1)] == \
        [b"", b"zz", b"a", b""]
    assert index.first_region(0, b"") == 0
    assert index.first_region(9, b"zz") == 0
    assert index.first_region(9, b"zzz") == 1
    assert index.first_region(11, b"") == 1
    assert index.first_region(13, b"") == 2


@pytest.mark.parametrize("pos", range(partition.FOOTER.size))
def test_footer_byte_flip_raises(pos):
    _, body = build_index()
    footer = bytearray(partition.encode_footer(150, body))
    footer[pos] ^= 0x04
    with pytest.raises(monotone.CorruptionError, match="/some/path"):
        partition.decode_footer(bytes(footer), "/some/path")


def test_footer_truncated_raises():
    _, body = build_index()
    footer = partition.encode_footer(150, body)
    with pytest.raises(monotone.CorruptionError, match="/p"):
        partition.decode_footer(footer[:-1], "/p")


def test_index_byte_flip_raises():
    _, body = build_index()
    crc = zlib.crc32(body)
    for pos in range(0, len(body), 7):
        bad = bytearray(body)
        bad[pos] ^= 0x01
        with pytest.raises(monotone.CorruptionError, match="/idx"):
            partition.decode_index(bytes(bad), crc, "/idx")


def test_index_unreadable_meta_raises_corruption():
    # a checksum that matches garbage: the decoder must still say CorruptionError
    bad = struct.pack("<I", 5) + b"{nope" + b"\0" * 10
    with pytest.raises(monotone.CorruptionError, match="/idx"):
        partition.decode_index(bad, zlib.crc32(bad), "/idx")

# partition files (Writer/Reader) ---------------------------------------------


@pytest.mark.parametrize("compression", ["lz4", "none"])
def test_partition_file_round_trip(tmp_path, compression):
    path = str(tmp_path / "00000000000000000000")
    events = [(i, b"k%03d" % (i % 7), bytes([i % 251]) * (i % 300), 0) for i in range(3000)]
    rows = sort_dedup(make_rows(events))
    w = Writer(path, compression, 0, 4096)
    w.add(rows.slice(0, 1000))
    w.add(rows.slice(1000, len(rows)))
    meta = w.finish({"min": 0, "max": 9999, "lsn": 3}, sync=False)
    assert meta["events"] == len(rows) and meta["regions"] > 1
    with Reader(path) as r:
        assert r.meta["lsn"] == 3 and r.meta["compression"] == compression
        assert r.index.regions == meta["regions"]
        assert int(r.index.entries["events"].sum()) == len(rows)
    assert as_list(read_all(path)) == as_list(rows)


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_regions_that_do_not_compress_are_stored_plain(tmp_path, compression):
    path = str(tmp_path / "part")
    rng = random.Random(5)
    noise = [(i, b"", rng.randbytes(100), 0) for i in range(300)]
    text = [(i, b"", b"temperature=21.5 unit=C " * 4, 0) for i in range(300, 600)]
    w = Writer(path, compression, 0, 4096)
    w.add(make_rows(noise + text))
    w.finish({"min": 0, "max": 999}, sync=False)
    with Reader(path) as r:
        entries = r.index.entries
        plain = (entries["flags"] & partition.REGION_PLAIN) != 0
        assert plain[entries["max_id"] < 300].all()          # random bytes: plain
        assert not plain[entries["min_id"] >= 300].any()     # text: compressed
        assert (entries["size"][~plain] < entries["size_origin"][~plain]).all()
    assert as_list(read_all(path)) == as_list(make_rows(noise + text))


def write_small_file(path):
    rows = make_rows([(i, b"", b"value-%d" % i, 0) for i in range(500)])
    w = Writer(path, "lz4", 0, 1024)
    w.add(rows)
    return w.finish({"min": 0, "max": 999}, sync=False)


def test_partition_file_region_flip_raises_with_path(tmp_path):
    path = str(tmp_path / "part")
    write_small_file(path)
    with open(path, "r+b") as f:
        f.seek(3)
        b = f.read(1)
        f.seek(3)
        f.write(bytes([b[0] ^ 0xFF]))
    with Reader(path) as r:
        with pytest.raises(monotone.CorruptionError, match=str(path)):
            r.read_region(0)
        r.read_region(1)  # the others are fine


@pytest.mark.parametrize("where", ["footer", "index", "truncate", "tiny"])
def test_partition_file_damaged_index_or_footer_raises_with_path(tmp_path, where):
    path = str(tmp_path / "part")
    meta = write_small_file(path)
    size = len(open(path, "rb").read())
    with open(path, "r+b") as f:
        if where == "footer":
            f.seek(size - 5)
            f.write(b"\xAA")
        elif where == "index":
            f.seek(meta["size"] + 2)
            f.write(b"\xAA")
        elif where == "truncate":
            f.truncate(size - 3)
        else:
            f.truncate(10)
    with pytest.raises(monotone.CorruptionError, match=str(path)):
        Reader(path)

# rows: sort_dedup, gather/take, merge -----------------------------------------


def reference_sort_dedup(events):
    last = {}
    for e in events:
        last[(e[0], e[1])] = e  # later row wins
    return [last[k] for k in sorted(last)]  # bytes compare == memcmp, shorter first


def test_sort_dedup_key_order_memcmp_shorter_first():
    keys = [b"b", b"a", b"ab", b"", b"a\x00", b"\x00", b"\xff", b"a\x00\x00", b"aa", b"\x00\x00"]
    events = [(7, k, b"v" + k, 0) for k in keys] + [(3, b"z", b"", 0)]
    out = as_list(sort_dedup(make_rows(events)))
    assert [(e[0], e[1]) for e in out] == [(3, b"z")] + [
        (7, k) for k in [b"", b"\x00", b"\x00\x00", b"a", b"a\x00", b"a\x00\x00", b"aa", b"ab",
                         b"b", b"\xff"]]


def test_sort_dedup_later_row_wins():
    events = [(1, b"", b"first", 0), (2, b"k", b"a", 0), (1, b"", b"second", 0),
              (2, b"k", b"b", DELETE), (1, b"", b"third", 0), (0, b"", b"zero", 0)]
    out = as_list(sort_dedup(make_rows(events)))
    assert out == [(0, b"", b"zero", 0), (1, b"", b"third", 0), (2, b"k", b"b", DELETE)]


def test_sort_dedup_large_ids_order():
    ids = [2**64 - 2, 2**63, 2**63 - 1, 0, 2**32, 255, 256]
    out = sort_dedup(make_rows([(i, b"", b"", 0) for i in ids]))
    assert out.ids.tolist() == sorted(ids)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.binary(max_size=4), st.binary(max_size=6),
                          st.sampled_from([0, DELETE])), max_size=60))
def test_sort_dedup_matches_reference(events):
    out = sort_dedup(make_rows(events))
    assert as_list(out) == reference_sort_dedup(events)
    check_offsets(out)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**64 - 2), st.just(b""), st.binary(max_size=3),
                          st.just(0)), max_size=60))
def test_sort_dedup_no_keys_matches_reference(events):
    assert as_list(sort_dedup(make_rows(events))) == reference_sort_dedup(events)


def reference_take(rows_list, idx):
    return [rows_list[i] for i in idx]


@pytest.mark.parametrize("shape", ["fixed", "variable", "empty-values", "mixed-empty"])
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 500, 5000])
def test_take_random_permutation_matches_reference(shape, n):
    rnd = random.Random(n * 31 + len(shape))
    if shape == "fixed":
        values = [bytes([rnd.randrange(256)]) * 8 for _ in range(n)]
    elif shape == "variable":
        values = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(20))) for _ in range(n)]
    elif shape == "empty-values":
        values = [b""] * n
    else:
        values = [b"" if rnd.random() < 0.5 else b"xyz" * rnd.randrange(1, 3) for _ in range(n)]
    events = [(i, b"k%d" % (i % 3) if i % 2 else b"", values[i], i % 2) for i in range(n)]
    rows = make_rows(events)
    for idx in (np.random.default_rng(n).permutation(n),
                np.sort(np.random.default_rng(n + 1).choice(n, size=max(1, n // 2), replace=False)),
                np.arange(n)[::-1],
                np.concatenate([np.arange(n // 2, n), np.arange(0, n // 2)])):
        out = rows.take(idx)
        assert as_list(out) == reference_take(events, idx.tolist())
        check_offsets(out)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=10), min_size=1, max_size=200), st.data())
def test_gather_hypothesis(items, data):
    offsets, blob = pack_bytes(items)
    idx = np.array(data.draw(st.lists(st.integers(0, len(items) - 1), max_size=300)), np.int64)
    out_off, out = gather(offsets, blob, idx)
    expect = [items[i] for i in idx.tolist()]
    assert len(out_off) == len(idx) + 1
    assert [out[int(out_off[i]):int(out_off[i + 1])].tobytes() for i in range(len(idx))] == expect
    assert out.tobytes() == b"".join(expect)


def test_take_identity_and_slice_concat():
    events = [(i, b"", b"v%d" % i, 0) for i in range(10)]
    rows = make_rows(events)
    assert as_list(rows.take(np.arange(10))) == events
    s = rows.slice(3, 7)
    check_offsets(s)
    assert as_list(s) == events[3:7]
    both = concat([rows.slice(0, 2), Rows.empty(), rows.slice(8, 10)])
    check_offsets(both)
    assert as_list(both) == events[:2] + events[8:]


def test_merge_later_source_wins_and_keeps_deletes():
    old = make_rows([(1, b"", b"old1", 0), (2, b"", b"old2", 0), (3, b"a", b"old3", 0)])
    new = make_rows([(2, b"", b"new2", 0), (3, b"a", b"", DELETE), (4, b"", b"new4", 0)])
    out = merge([old, new])
    assert as_list(out) == [(1, b"", b"old1", 0), (2, b"", b"new2", 0), (3, b"a", b"", DELETE),
                            (4, b"", b"new4", 0)]
    assert as_list(drop_deletes(out)) == [(1, b"", b"old1", 0), (2, b"", b"new2", 0),
                                          (4, b"", b"new4", 0)]
    assert as_list(merge([new, old]))[1] == (2, b"", b"old2", 0)
    assert len(merge([])) == 0
    assert as_list(merge([Rows.empty(), old])) == as_list(old)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 8), st.binary(max_size=2),
                                   st.binary(max_size=3), st.sampled_from([0, DELETE])),
                         max_size=15), max_size=4))
def test_merge_matches_reference(sources):
    srcs = [sort_dedup(make_rows(s)) for s in sources]
    flat = [e for s in srcs for e in as_list(s)]  # order of sources: later wins
    assert as_list(merge(srcs)) == reference_sort_dedup(flat)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.binary(max_size=3), st.just(b""), st.just(0)),
                max_size=30),
       st.integers(0, 9), st.binary(max_size=4))
def test_ordered_bound_matches_reference(events, id_, key):
    rows = sort_dedup(make_rows(events))
    ref = [(e[0], e[1]) for e in as_list(rows)]
    o = Ordered(rows)
    assert o.bound(id_, key) == sum(1 for x in ref if x < (id_, key))
    assert o.bound(id_, key, "right") == sum(1 for x in ref if x <= (id_, key))


def test_wal_headers_alone_give_lsns_and_drops_up_to_a_torn_record(tmp_path):
    """gc reads headers only, and learns whether they reach the end of the file."""
    from monotone.workers import wal_files as wal
    rows = Rows(np.arange(3, dtype=np.uint64), np.zeros(3, np.uint8), np.zeros(4, np.uint64),
                np.zeros(0, np.uint8), np.arange(4, dtype=np.uint64) * 2, np.ones(6, np.uint8))
    path = tmp_path / "1.wal"
    data = record(1, 0, rows, False) + drop_record(2, 0, 0, 99)
    torn = record(3, 0, rows, True)
    path.write_bytes(data + torn[:-1])
    assert wal.read_headers(str(path)) == ([(1, False), (2, True)], False)
    path.write_bytes(data + torn)
    assert wal.read_headers(str(path)) == ([(1, False), (2, True), (3, False)], True)
