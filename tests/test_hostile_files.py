"""Hostile partition files: every number of a footer, index or region forged, with
its checksums made right again, so that only the read path's own checks stand
between the lie and a reader's memory.

Each case is one row of CASES: a file written by Writer, taken apart, one lie
told, put back together. A child process opens it (as a local file, a cloud
object or a cloud stub), reads every region, and reports the error and its peak
memory; the case passes when that is a MonotoneError naming the file, raised
quickly, with memory bounded.
"""
from __future__ import annotations

import functools
import json
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import zstandard
from event_rows import make_rows

from monotone.format import region
from monotone.format.rows import MAX_KEY
from monotone.partition import fileformat as partition
from monotone.partition.writer import Writer

SPARSE = 20 << 30         # a sparse file's size: what must never be read whole
MAX_GROWTH = 200 << 20    # memory a hostile file may cost a reader (peak RSS growth)
MAX_SECONDS = 10.0


# taking a file apart and putting it back --------------------------------------------


@dataclass
class Forged:
    """A partition file in pieces, to be told a lie and written back with its
    checksums right (set a field left None to write what the pieces say)."""
    meta: dict
    entries: np.ndarray
    keys: bytes
    regions: list[bytes]
    meta_bytes: bytes | None = None   # the meta as stored, when not JSON of meta
    meta_len: int | None = None       # the meta length field
    index_offset: int | None = None   # the footer's
    index_size: int | None = None
    gap: int = 0                      # a hole before the index (a sparse file)
    whole: bool = True                # False: the file is a hole with a footer only
    extra: dict = field(default_factory=dict)

    def put_region(self, i: int, data: bytes, size_origin: int | None = None,
                   plain: bool = False) -> None:
        """Region i's stored bytes, entries updated to match (checksum, size, flags,
        the offsets of the regions after it)."""
        self.regions[i] = data
        e = self.entries[i]
        after = self.entries["offset"][i + 1:]
        after[:] = after.astype(np.int64) + (len(data) - int(e["size"]))
        e["size"] = len(data)
        if size_origin is not None:
            e["size_origin"] = size_origin
        flags = int(e["flags"]) | partition.REGION_XXH3
        e["flags"] = flags | partition.REGION_PLAIN if plain else \
            flags & ~partition.REGION_PLAIN
        e["crc"] = partition.region_checksum(data)


def take_apart(path: str) -> Forged:
    data = open(path, "rb").read()
    offset, length, crc, _ = partition.decode_footer(data[-partition.FOOTER.size:], path)
    index = partition.decode_index(data[offset:offset + length], crc, path)
    e = index.entries
    regions = [data[int(o):int(o) + int(s)] for o, s in zip(e["offset"], e["size"])]
    return Forged(dict(index.meta), e.copy(), index.keys, regions)


def footer(offset: int, size: int, crc: int) -> bytes:
    head = struct.pack("<8sQQII", partition.MAGIC, offset, size, crc, 0)
    return head + struct.pack("<I", zlib.crc32(head))


def put_together(f: Forged, path: str) -> None:
    if not f.whole:  # a hole of SPARSE bytes ending in a footer
        with open(path, "wb") as out:
            out.truncate(SPARSE - partition.FOOTER.size)
            out.seek(SPARSE - partition.FOOTER.size)
            out.write(footer(f.index_offset or 0, f.index_size or 0, 0))
        return
    meta = f.meta_bytes if f.meta_bytes is not None else \
        json.dumps(f.meta, sort_keys=True).encode()
    body = struct.pack("<I", len(meta) if f.meta_len is None else f.meta_len) + meta + \
        f.entries.tobytes() + f.keys
    with open(path, "wb") as out:
        for data in f.regions:
            out.write(data)
        end = out.tell() + f.gap
        out.seek(end)
        out.write(body)
        out.write(footer(end if f.index_offset is None else f.index_offset,
                         len(body) if f.index_size is None else f.index_size,
                         zlib.crc32(body)))


def write_good(path: str, compression: str) -> None:
    """About 2.5 MiB of events in regions of 1 MiB (room for a forged region)."""
    n = 20_000
    events = [(i, b"k%d" % (i % 13), b"value %d " % i * 10, 0) for i in range(n)]
    w = Writer(path, compression, 0, 1 << 20)
    w.add(make_rows(events))
    w.finish({"min": 0, "max": n}, sync=False)


# bombs ---------------------------------------------------------------------------------


@functools.cache
def lz4_bomb(size: int) -> bytes:
    """An lz4 block of size bytes decompressed, ~size/255 stored: a literal, one match
    of offset 1 as long as 255-bytes length can make it, then the 5 last literals."""
    k = (size - 25) // 255
    return bytes([0x1F]) + b"a" + b"\x01\x00" + b"\xff" * k + b"\x00" + b"\x50" + b"tail!"


@functools.cache
def zstd_bomb(size: int) -> bytes:
    """A zstd frame of zeros declaring size bytes: 131 KB for 4 GiB."""
    c = zstandard.ZstdCompressor(level=1).compressobj(size=size)
    chunk = bytes(16 << 20)
    out = [c.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join(out) + c.flush()


def plain_region(f: Forged, header: tuple | None = None, vlen_add: int = 0) -> None:
    """Region 0 stored plain (a file written with 'none'), its header or its value
    lengths forged."""
    data = bytearray(f.regions[0])
    if header is not None:
        data[:region.HEADER.size] = region.HEADER.pack(*header)
    if vlen_add:
        n = region.HEADER.unpack_from(data, 0)[0]
        at = region.HEADER.size + 8 * n
        (v,) = struct.unpack_from("<I", data, at)
        struct.pack_into("<I", data, at, v + vlen_add)
    f.put_region(0, bytes(data), plain=True)


def set_entry(i: int, **values) -> Callable[[Forged], None]:
    def forge(f: Forged) -> None:
        for name, value in values.items():
            f.entries[i if i >= 0 else len(f.entries) + i][name] = value
    return forge


def set_meta(**values) -> Callable[[Forged], None]:
    def forge(f: Forged) -> None:
        f.meta.update(values)
    return forge


def set_fields(**values) -> Callable[[Forged], None]:
    def forge(f: Forged) -> None:
        for name, value in values.items():
            setattr(f, name, value)
    return forge


def huge_last_region(f: Forged) -> None:
    """A sparse file whose last region spans the hole up to the index."""
    f.gap = SPARSE
    f.entries[-1]["size"] += SPARSE


# the cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    forge: Callable[[Forged], None]
    match: str                 # in the error's message (besides the file's name)
    compression: str = "lz4"
    open_as: str = "local"     # local | cloud (an fsspec object) | stub (a cloud stub)


def largest_index(f: Forged) -> None:
    """An index as large as the limits allow (every region's keys at their longest),
    its checksum right, at the end of a sparse file: what it costs is the index."""
    count = partition.MAX_REGIONS - 1
    f.meta["regions"] = count
    f.entries = np.zeros(count, partition.ENTRY)
    f.keys = bytes(count * 2 * MAX_KEY)
    f.regions = []
    f.gap = SPARSE


CASES = [
    Case("lz4 bomb", lambda f: f.put_region(0, lz4_bomb(1_280_000_000), 1_280_000_000),
         "decodes to more than"),
    Case("lz4 size_origin beyond what its bytes give",
         set_entry(0, size_origin=200 << 20), "cannot decompress to"),
    Case("zstd bomb", lambda f: f.put_region(0, zstd_bomb(4 << 30), 4 << 30),
         "decodes to more than", "zstd"),
    Case("zstd frame declares more than its index",
         lambda f: f.put_region(0, zstd_bomb(4 << 30)), "declares 4294967296", "zstd"),
    Case("size_origin huge", set_entry(0, size_origin=2**62), "decodes to more than"),
    Case("region stored size huge", set_entry(0, size=2**40), "stored in more bytes"),
    Case("region beyond the file", set_entry(-1, offset=2**40), "do not fill the file"),
    Case("regions overlap", set_entry(1, offset=0), "do not fill the file"),
    Case("events zero", set_entry(0, events=0), "does not hold its events"),
    Case("events huge", set_entry(0, events=2**60), "does not hold its events"),
    Case("key beyond the key bytes", set_entry(0, max_key=2**31), "beyond the index's"),
    Case("key too long", set_entry(0, min_key_len=4096), "beyond the index's"),
    Case("index count huge", set_meta(regions=2**40), "cannot hold"),
    Case("index count beyond the index", lambda f: f.meta.update(regions=len(f.entries) + 9),
         "cannot hold"),
    Case("index count not a number", set_meta(regions="3"), "cannot hold"),
    Case("index count negative", set_meta(regions=-1), "cannot hold"),
    Case("meta not an object", set_fields(meta_bytes=b"[1, 2]"), "cannot hold"),
    Case("meta nested deep", set_fields(meta_bytes=b"[" * 200_000), "unreadable"),
    Case("meta length beyond the index", set_fields(meta_len=2**31), "does not fit"),
    Case("compression not a name", set_meta(compression=["lz4"]), "not supported"),
    Case("footer offset beyond file", set_fields(index_offset=2**63), "does not fit the file"),
    Case("footer index size huge", set_fields(index_size=2**40), "more than the"),
    Case("sparse file, index huge", set_fields(whole=False, index_size=SPARSE - 40),
         "more than the"),
    Case("sparse file, region huge", huge_last_region, "stored in more bytes"),
    Case("region count in its header huge", lambda f: plain_region(f, (2**60, 0, 0, 0)),
         "does not match its header", "none"),
    Case("region lengths do not add up", lambda f: plain_region(f, vlen_add=7),
         "does not match its header|do not add up", "none"),
    Case("cloud object, sparse", set_fields(whole=False, index_size=SPARSE - 40),
         "more than the", open_as="cloud"),
    Case("cloud object, lz4 bomb",
         lambda f: f.put_region(0, lz4_bomb(1_280_000_000), 1_280_000_000),
         "decodes to more than", open_as="cloud"),
    Case("sparse file, the largest index a reader takes", largest_index,
         "does not hold its events"),
    Case("cloud stub, sparse", set_fields(whole=False, index_size=SPARSE - 40),
         "more than the index and footer", open_as="stub"),
]

# the child: open the file, read every region, say what happened -------------------------

CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import monotone
from monotone.partition.reader import Reader
from monotone.partition.cloud_file import CloudFile
from monotone.cloud import at_url
from monotone.store import LocalFile
path, open_as = sys.argv[1], sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.monotonic()
out = {"error": None, "monotone": False, "message": ""}
try:
    if open_as == "local":
        handle = LocalFile(path, own=False)
    elif open_as == "cloud":
        cloud, name = at_url("file://" + path, {})
        handle = CloudFile.fetch(cloud, name)
    else:
        cloud, name = at_url("file://" + path, {})
        handle = CloudFile.from_stub(LocalFile(path, own=False), cloud, name)
    with Reader(handle) as r:
        for i in range(r.index.regions):
            r.read_region(i)
except BaseException as e:
    out = {"error": type(e).__name__, "monotone": isinstance(e, monotone.MonotoneError),
           "message": str(e)}
out["seconds"] = time.monotonic() - start
out["growth"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps(out))
"""


def read_in_child(path: str, open_as: str) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", CHILD, path, open_as], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def forged_file(tmp_path, case: Case) -> str:
    good = str(tmp_path / "good")
    write_good(good, case.compression)
    f = take_apart(good)
    case.forge(f)
    path = str(tmp_path / "hostile")
    put_together(f, path)
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_file_is_an_error_naming_it(tmp_path, case):
    path = forged_file(tmp_path, case)
    got = read_in_child(path, case.open_as)
    assert got["monotone"], got
    assert os.path.basename(path) in got["message"], got
    assert any(m in got["message"] for m in case.match.split("|")), got
    assert got["seconds"] < MAX_SECONDS, got
    assert got["growth"] < MAX_GROWTH, got


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_harness_round_trip_keeps_a_good_file_good(tmp_path, compression):
    """Taken apart and put back with no lie told, the file reads as before: what
    the cases find is their lie, not the harness."""
    case = Case("no lie", lambda f: None, "", compression)
    for open_as in ("local", "cloud"):
        got = read_in_child(forged_file(tmp_path, case), open_as)
        assert got["error"] is None, got
        assert got["seconds"] < MAX_SECONDS, got
