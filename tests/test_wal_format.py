"""The WAL record format: round trips, torn and damaged records, and the headers gc reads.

Nothing here opens a repository; it turns columns into bytes and back and
checks that damage is detected rather than returned as data.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from event_rows import as_list, make_rows

from monotone.format import region
from monotone.format.rows import DELETE, Rows
from monotone.wal import records as walfmt


def record(*args) -> bytes:
    return walfmt.join(walfmt.encode(*args))


def drop_record(*args) -> bytes:
    return walfmt.join(walfmt.encode_drop(*args))


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


def crc32_record(lsn: int, ssn: int, rows) -> bytes:
    """A record as written before payload checksums were xxh3: crc32 over the payload."""
    payload = b"".join(bytes(memoryview(p).cast("B")) for p in region.encode_parts(rows))
    tail = walfmt.HEADER.pack(walfmt.MAGIC, 0, lsn, ssn, len(payload), zlib.crc32(payload),
                              len(rows), walfmt.FLAG_DATA_CRC)[8:]
    return struct.pack("<II", walfmt.MAGIC, zlib.crc32(tail)) + tail + payload


@pytest.mark.parametrize("old", [False, True])
def test_wal_payload_checksum_xxh3_now_crc32_before(old):
    """Records carry xxh3's checksum of their payload; crc32 ones written before are still
    read and checked. Any byte of the payload changed is caught either way."""
    rows = wal_rows()
    rec = crc32_record(5, 6, rows) if old else record(5, 6, rows, True)
    flags = walfmt.HEADER.unpack_from(rec)[7]
    assert bool(flags & walfmt.FLAG_DATA_XXH3) != old
    out = walfmt.decode_at(memoryview(rec), 0, "t")
    assert out is not None and as_list(out.rows) == as_list(rows)
    for at in range(walfmt.HEADER.size, len(rec)):
        bad = bytearray(rec)
        bad[at] ^= 0x10
        assert walfmt.decode_at(memoryview(bytes(bad)), 0, "t") is None, at


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


def test_wal_headers_alone_give_lsns_and_drops_up_to_a_torn_record(tmp_path):
    """gc reads headers only, and learns whether they reach the end of the file."""
    from monotone.wal import files as wal
    rows = Rows(np.arange(3, dtype=np.uint64), np.zeros(3, np.uint8), np.zeros(4, np.uint64),
                np.zeros(0, np.uint8), np.arange(4, dtype=np.uint64) * 2, np.ones(6, np.uint8))
    path = tmp_path / "1.wal"
    data = record(1, 0, rows, False) + drop_record(2, 0, 0, 99)
    torn = record(3, 0, rows, True)
    path.write_bytes(data + torn[:-1])
    assert wal.read_headers(str(path)) == ([(1, False), (2, True)], False)
    path.write_bytes(data + torn)
    assert wal.read_headers(str(path)) == ([(1, False), (2, True), (3, False)], True)
