"""The partition file format: regions, the region index and footer, and whole files
through Writer and Reader.

Nothing here opens a repository; it turns columns into bytes and back and
checks that damage is detected rather than returned as data.
"""
from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest
from event_rows import as_list, check_offsets, make_rows
from hypothesis import given, settings
from hypothesis import strategies as st
from repo_files import flip

import monotone
from monotone.format import region
from monotone.format.rows import DELETE, Rows, sort_dedup
from monotone.partition import fileformat as partition
from monotone.partition.reader import Reader, read_all
from monotone.partition.writer import Writer

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
    # fewer noise regions than PLAIN_STREAK: every region is tried
    noise = [(i, b"", rng.randbytes(100), 0) for i in range(200)]
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
    flip(path, 3, 0xFF)
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


def test_region_checksums_xxh3_now_crc32_in_older_files(tmp_path):
    """Regions are written with xxh3's checksum (flagged); a region carrying zlib's
    crc32, as files written before, is still verified by it, and kept as it is
    when a refresh copies it; damage is caught either way."""
    new, old = str(tmp_path / "new"), str(tmp_path / "old")
    write_small_file(new)
    with Reader(new) as r:
        entries = r.index.entries
        assert (entries["flags"] & partition.REGION_XXH3).all()
        stored = [r.read_stored(i) for i in range(r.index.regions)]
        keys = [(r.index.min_key(i), r.index.max_key(i)) for i in range(r.index.regions)]
    w = Writer(old, "lz4", 0, 1024)
    for data, entry, (lo, hi) in zip(stored, entries.copy(), keys):
        entry["crc"] = zlib.crc32(data)
        entry["flags"] = int(entry["flags"]) & ~partition.REGION_XXH3
        w.add_stored(data, entry, lo, hi)
    w.finish({"min": 0, "max": 999}, sync=False)
    with Reader(old) as r:
        assert not (r.index.entries["flags"] & partition.REGION_XXH3).any()
        assert (r.index.entries["crc"] == [zlib.crc32(d) for d in stored]).all()
    assert as_list(read_all(old)) == as_list(read_all(new))
    for path in (new, old):
        flip(path, 5, 0x01)
        with Reader(path) as r:
            with pytest.raises(monotone.CorruptionError, match="checksum mismatch"):
                r.read_region(0)


def test_compression_is_probed_after_a_run_of_incompressible_regions(tmp_path):
    """After regions in a row that did not compress, compression is tried only now
    and then; once a region compresses again, every region is tried again."""
    from monotone.partition import writer as region_writer
    path = str(tmp_path / "part")
    rng = random.Random(7)
    noise = [(i, b"", rng.randbytes(100), 0) for i in range(1000)]
    text = [(i, b"", b"temperature=21.5 unit=C " * 4, 0) for i in range(1000, 3000)]
    w = Writer(path, "lz4", 0, 1024)
    w.add(make_rows(noise + text))
    w.finish({"min": 0, "max": 9999}, sync=False)
    with Reader(path) as r:
        e = r.index.entries
        plain = (e["flags"] & partition.REGION_PLAIN) != 0
        text_regions = plain[e["min_id"] >= 1000]
    assert plain[e["max_id"] < 1000].all()
    first = int(np.argmin(text_regions))  # the first text region compressed
    assert first < region_writer.PLAIN_PROBE and not text_regions[first:].any()
    assert as_list(read_all(path)) == as_list(make_rows(noise + text))
