"""The region cache of cold reads (<repository>/cache, mm_cache bytes) and the
read-ahead across partitions, through the S3 server behind the fault proxy,
whose log tells every GET the engine made."""
from __future__ import annotations

import json
import logging
import os
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


def object_gets(proxy) -> int:
    """GETs of partition objects the proxy has seen."""
    with proxy.lock:
        return sum(1 for s in proxy.log if s.method == "GET" and s.path[-20:].isdigit())


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
            lambda p: any(s.method == "GET" and s.path.endswith(name(STEP)) for s in p.log),
            DEADLINE)
        assert [e.id for e in cur] == list(range(1, N))
    db.close()
