"""The region cache of cold reads (<repository>/cache, mm_cache bytes) and the
read-ahead across partitions, through the S3 server behind the fault proxy,
whose log tells every GET the engine made."""
from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess

from conftest import run_python
from readback import read_all

from cloud.test_bad_network import proxied
from cloud.test_cloud_crashes import want
from cloud.test_conformance import STEP, events, name, open_db, places, setup_cloud
from monotone.partition import fileformat as partition

DEADLINE = 30.0
PARTS = 3
N = PARTS * STEP
OBJECT = re.compile(r"/\d{20}\.[0-9a-f]{16}(\?|$)")  # a partition's object in a request path


def object_gets(proxy) -> int:
    """GETs of partition objects the proxy has seen."""
    with proxy.lock:
        return sum(1 for s in proxy.log if s.method == "GET" and OBJECT.search(s.path))


def cold_repo(repo, proxy, s3, **settings):
    """A repository whose PARTS partitions (2 KiB regions) are in the cloud only,
    reopened: its handle and uuid."""
    db = open_db(repo, **settings)
    uuid = setup_cloud(db, proxied(proxy, s3), "region_size 2048, compression 'none'")
    db.write(events(0, N))
    db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {N}")
    assert places(db) == {m: (False, True) for m in range(0, N, STEP)}
    db.close()
    return open_db(repo, **settings), uuid


def cache_files(repo) -> list[str]:
    return sorted(os.listdir(os.path.join(repo, "cache")))


def regions(db) -> int:
    return sum(p["regions"] for p in json.loads(db.execute("SHOW PARTITIONS")))


def test_a_second_scan_is_served_by_the_cache_after_a_reopen(repo, s3, fault_proxy):
    db, _ = cold_repo(repo, fault_proxy, s3)
    assert read_all(db) == want(events(0, N))
    fetched = object_gets(fault_proxy)
    assert 0 < fetched <= 2 * PARTS  # read ahead: neighbouring regions in few GETs
    shown = json.loads(db.execute("SHOW CACHE"))
    assert shown["requests"] == fetched and shown["hits"] == 0 and shown["files"] == PARTS
    db.close()
    db = open_db(repo)
    assert read_all(db) == want(events(0, N))
    assert object_gets(fault_proxy) == fetched  # not one GET more
    shown = json.loads(db.execute("SHOW CACHE"))
    assert shown["hits"] == regions(db) and shown["requests"] == 0  # a new coordinator
    directory = os.path.join(repo, "cache")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for f in cache_files(repo):
        assert stat.S_IMODE(os.stat(os.path.join(directory, f)).st_mode) == 0o600
    db.close()


def test_a_damaged_cache_costs_a_request_not_a_wrong_answer(repo, s3, fault_proxy):
    db, _ = cold_repo(repo, fault_proxy, s3)
    assert read_all(db) == want(events(0, N))
    for f in cache_files(repo):  # a byte of each file's first region flipped
        with open(os.path.join(repo, "cache", f), "r+b") as out:
            out.seek(100)
            byte = out.read(1)
            out.seek(100)
            out.write(bytes([byte[0] ^ 0xFF]))
    before = object_gets(fault_proxy)
    assert read_all(db) == want(events(0, N))
    assert object_gets(fault_proxy) == before + PARTS  # each damaged region, once
    assert read_all(db) == want(events(0, N))
    assert object_gets(fault_proxy) == before + PARTS  # mended: all from the cache
    db.close()


def test_the_cache_keeps_within_mm_cache(repo, s3, fault_proxy):
    db, uuid = cold_repo(repo, fault_proxy, s3)
    stubs = [os.path.join(repo, uuid, name(m, ".cloud")) for m in range(0, N, STEP)]
    sizes = []
    for stub in stubs:  # a partition's regions: the file less its tail (the stub)
        with open(stub, "rb") as f:
            f.seek(-partition.FOOTER.size, os.SEEK_END)
            sizes.append(partition.decode_footer(f.read(), stub)[0])
    limit = sizes[0] + sizes[1] + sizes[2] // 2  # room for two partitions and a half
    db.close()
    db = open_db(repo, mm_cache=limit)  # set before open() only
    for _ in range(2):
        assert read_all(db) == want(events(0, N))
        shown = json.loads(db.execute("SHOW CACHE"))
        assert shown["size"] <= limit and shown["limit"] == limit
    assert shown["evictions"] >= 1 and 1 <= shown["files"] < PARTS
    db.close()
    db = open_db(repo, mm_cache=0)  # no cache: nothing kept, every read a GET
    before = object_gets(fault_proxy)
    assert read_all(db) == want(events(0, N))
    assert object_gets(fault_proxy) > before
    db.close()


def test_without_a_cache_every_scan_asks_the_cloud(repo, s3, fault_proxy):
    db, _ = cold_repo(repo, fault_proxy, s3, mm_cache=0)
    assert read_all(db) == want(events(0, N))
    once = object_gets(fault_proxy)
    assert read_all(db) == want(events(0, N))
    assert object_gets(fault_proxy) == 2 * once
    assert not os.path.exists(os.path.join(repo, "cache"))
    db.close()


def test_a_link_in_place_of_the_cache_is_not_followed(repo, s3, fault_proxy, tmp_path,
                                                      caplog):
    db, _ = cold_repo(repo, fault_proxy, s3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, os.path.join(repo, "cache"))
    with caplog.at_level(logging.WARNING, logger="monotone.cache"):
        assert read_all(db) == want(events(0, N))
    assert "symbolic link" in caplog.text
    assert os.listdir(elsewhere) == []
    db.close()


SCAN = r"""
import sys, hashlib
import monotone
db = monotone.Monotone()
db.open(sys.argv[1])
h = hashlib.sha256()
with db.cursor() as cur:
    for e in cur:
        h.update(b"%d:%s;" % (e.id, e.value))
db.close()
print(h.hexdigest())
"""


def test_processes_reading_at_once_fill_one_cache(repo, s3, fault_proxy):
    import hashlib
    db, _ = cold_repo(repo, fault_proxy, s3)
    expected = hashlib.sha256()
    for e in events(0, N):
        expected.update(b"%d:%s;" % (e.id, e.value))
    readers = [run_python(SCAN, repo, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    for child in readers:
        out, _ = child.communicate(timeout=DEADLINE)
        assert child.returncode == 0 and out.strip() == expected.hexdigest()
    before = object_gets(fault_proxy)
    assert read_all(db) == want(events(0, N))
    assert object_gets(fault_proxy) == before  # what they fetched serves this one
    assert len(cache_files(repo)) == PARTS
    db.close()


def test_the_read_ahead_crosses_into_the_next_partition(repo, s3, fault_proxy):
    """While the cursor stands on its first batch, the GET of the next partition's
    regions is already made (the first partition's all asked for already)."""
    db, _ = cold_repo(repo, fault_proxy, s3, mm_cache=0)
    with db.cursor() as cur:
        first = next(iter(cur))
        assert first.id == 0
        assert fault_proxy.wait(
            lambda p: any(s.method == "GET" and f"/{name(STEP)}." in s.path for s in p.log),
            DEADLINE)
        assert [e.id for e in cur] == list(range(1, N))
    db.close()


def test_a_failed_cached_region_falls_back_to_the_local_copy(repo, s3, fault_proxy):
    """A region read from the cache fails its check (a byte flipped) after the
    partition came back to local storage and went from the cloud: the cursor goes on
    from the local copy, as it does without a cache. (And a bounded cursor before it
    left only whole blocks in the cache: nothing it did not fetch seems cached.)"""
    db, _ = cold_repo(repo, fault_proxy, s3)
    with db.cursor(max_id=100) as bounded:  # partition 0's first regions
        assert [e.id for e in bounded] == list(range(101))
    [f] = cache_files(repo)
    with open(os.path.join(repo, "cache", f), "r+b") as out:  # its second region's
        out.seek(3000)
        byte = out.read(1)
        assert byte != b"\0"
        out.seek(3000)
        out.write(bytes([byte[0] ^ 0xFF]))
    cursor = db.cursor()
    got = [next(iter(cursor)).id]  # the first region, from the cache
    db.execute("DOWNLOAD PARTITION 0")
    db.execute("DROP PARTITION 0 ON CLOUD")
    assert places(db)[0] == (True, False)
    got += [e.id for e in cursor]
    assert got == list(range(N))
    cursor.close()
    db.close()


def test_an_encrypted_storage_caches_what_it_stores(repo, s3, fault_proxy):
    """The cache holds the regions as stored (sealed): a second scan is read from it
    and opened there, and no value is in it in the clear."""
    db = open_db(repo)
    setup_cloud(db, proxied(fault_proxy, s3), "region_size 2048, compression 'none', "
                "encryption 'aes'")
    db.write(events(0, STEP))
    db.execute("REFRESH PARTITION 0")
    db.close()
    db = open_db(repo)
    assert read_all(db) == want(events(0, STEP))
    fetched = object_gets(fault_proxy)
    assert read_all(db) == want(events(0, STEP))
    assert object_gets(fault_proxy) == fetched
    assert json.loads(db.execute("SHOW CACHE"))["hits"] == regions(db)
    [f] = cache_files(repo)
    with open(os.path.join(repo, "cache", f), "rb") as stored:
        assert events(500, 501)[0].value not in stored.read()
    db.close()


def test_the_cache_writes_whole_blocks_and_removes_only_its_own_files(tmp_path):
    """RegionCache alone: a range is kept only as whole blocks of the file system
    (a neighbour's bytes never seem present), and eviction passes over what it did
    not make."""
    from monotone.partition.region_cache import RegionCache
    cache = RegionCache(str(tmp_path))
    cache.resize(1 << 20)
    obj = cache.open("s3://bucket/object", b"tail", 3 * cache.block + 100)
    block = cache.block
    lo, n = obj.span(block + 10, 20)
    assert (lo, n) == (block, block)
    obj.write(block + 10, b"x" * 20)  # not whole blocks: not kept
    assert not obj.present(block + 10, 20)
    obj.write(lo, b"y" * n)
    assert obj.present(block + 10, 20) and obj.read(block + 10, 4) == b"yyyy"
    assert not obj.present(0, 10) and not obj.present(2 * block, 10)
    assert obj.span(3 * block + 50, 10) == (3 * block, 100)  # the last block: to the end
    foreign = tmp_path / "cache" / "notes.txt"
    foreign.write_bytes(b"n" * 4096)
    cache.resize(0)  # none: every cache file goes, nothing else
    assert os.listdir(tmp_path / "cache") == ["notes.txt"]
    assert cache.take_counts()["evictions"] == 1
    obj.close()
    assert cache.open("s3://bucket/object", b"tail", 100) is None  # limit 0
