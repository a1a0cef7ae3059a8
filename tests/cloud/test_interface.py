"""The cloud interface on its own, for every backend (s3 through moto's server,
mock, fsspec's file): its verbs, its errors, the capabilities each backend
declares, and CloudFile, the read handle over an object."""
from __future__ import annotations

import os

import numpy as np
import pytest

from cloud.clouds import ACCESS, SECRET
from monotone.cloud import CloudError, ObjectMissing, backend, check, open_cloud
from monotone.cloud.filesystem import FilesystemCloud
from monotone.cloud.mock import MockCloud
from monotone.cloud.s3 import S3Cloud
from monotone.errors import MonotoneError
from monotone.partition import cloud_file
from monotone.partition.cloud_file import CloudFile
from monotone.settings import CloudSettings
from monotone.store import Fallback, LocalFile

UUID = "0b6e1c9a-5f3e-4c1e-9d7a-2a4c8e6f0b11"
DATA = bytes(range(256)) * 64


def settings_of(kind) -> CloudSettings:
    if kind.kind == "s3":
        return CloudSettings("c", "s3", ACCESS, SECRET, kind.server.url)
    if kind.kind == "mock":
        return CloudSettings("c", "mock")
    return CloudSettings("c", "file", url=kind.root)


@pytest.fixture
def cloud(backend, tmp_path):
    directory = tmp_path / UUID
    directory.mkdir()
    objects = open_cloud(settings_of(backend), UUID, str(directory))
    objects.attach()
    return objects


def test_the_verbs(cloud, tmp_path):
    local = tmp_path / "local"
    local.write_bytes(DATA)
    cloud.put(str(local), "a")
    cloud.write("b", b"small")
    assert cloud.list() == ["a", "b"] and cloud.exists("a") and not cloud.exists("c")
    assert cloud.size("a") == len(DATA)
    assert cloud.read("a", 1000, 24) == DATA[1000:1024]
    assert cloud.read("b") == b"small"
    back = tmp_path / "back"
    back.write_bytes(b"")
    cloud.get("a", str(back))
    assert back.read_bytes() == DATA
    assert cloud.url("a").endswith("/a")
    assert cloud.remove("a")
    cloud.remove("a")  # no error (S3 answers a DELETE of nothing as done)
    with pytest.raises(ObjectMissing, match="cloud 'c'.*GET 0\\+10: no such object"):
        cloud.read("a", 0, 10)
    cloud.remove("b")
    cloud.detach()
    assert cloud.list() == []


def test_the_registry_knows_the_types():
    assert backend("s3") is S3Cloud and backend("mock") is MockCloud
    assert backend("file") is FilesystemCloud and backend("gcs") is FilesystemCloud
    assert not S3Cloud.takes_options and not MockCloud.takes_options
    assert FilesystemCloud.takes_options
    assert MockCloud.local_directory and not S3Cloud.local_directory
    for kind, message in (("", "unknown cloud type"), ("memory", "lives in one process"),
                          ("nonesuch", "unknown cloud type 'nonesuch'"),
                          ("s3", "s3: url is not defined")):
        with pytest.raises(MonotoneError, match=message):
            check(CloudSettings("c", kind))
    check(CloudSettings("c", "mock"))


def test_the_mock_keeps_its_objects_in_the_storage_directory(tmp_path):
    objects = open_cloud(CloudSettings("c", "mock"), UUID, str(tmp_path))
    objects.attach()
    objects.write("x", b"1")
    assert os.listdir(tmp_path / "mock") == ["x"]
    assert os.stat(tmp_path / "mock" / "x").st_mode & 0o777 == 0o600


class _Counting(MockCloud):
    """A mock that counts its GETs; ranged or not as a test says."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.gets = 0

    def _read(self, path, offset, size, timeout):
        self.gets += 1
        return super()._read(path, offset, size, timeout)

    def _read_all(self, path, timeout):
        self.gets += 1
        return super()._read_all(path, timeout)


def _counting(tmp_path, ranged: bool = True) -> _Counting:
    settings = CloudSettings("c", "mock")
    objects = _Counting(settings, MockCloud.root_of(settings, UUID, str(tmp_path)))
    objects.ranged_reads = ranged
    objects.attach()
    objects.write("o", DATA)
    return objects


def offer(f, ranges, ascending=True):
    """CloudFile.prefetch of (offset, size) pairs, as a reader offers them."""
    offsets, sizes = (np.array(column, np.uint64) for column in zip(*ranges))
    return f.prefetch(offsets, sizes, ascending)


def test_a_cloud_file_reads_its_tail_once_and_ranges_ahead(tmp_path):
    objects = _counting(tmp_path)
    f = CloudFile.fetch(objects, "o", tail=1024)
    assert f.size == len(DATA) and objects.gets == 1  # the tail (the size: a HEAD)
    assert f.read(len(DATA) - 100, 100) == DATA[-100:] and objects.gets == 1
    offer(f, [(0, 4096)])
    assert f.read(100, 50) == DATA[100:150] and f.read(4000, 96) == DATA[4000:4096]
    assert objects.gets == 2  # both from the one span fetched ahead
    assert f.read(5000, 10) == DATA[5000:5010] and objects.gets == 3
    assert f.ranged and f.prefetches and not f.rewritten()
    f.close()


def test_read_ahead_joins_neighbouring_ranges_within_its_budget(tmp_path, monkeypatch):
    """Ranges side by side are one GET of up to REQUEST bytes; no more than BUDGET
    bytes are fetched ahead of the reader, and what it reads is given back."""
    monkeypatch.setattr(cloud_file, "REQUEST", 4096)
    monkeypatch.setattr(cloud_file, "BUDGET", 8192)
    objects = _counting(tmp_path)
    f = CloudFile(objects, "o", len(DATA), DATA[-16:])
    regions = [(at, 1024) for at in range(0, 12 * 1024, 1024)]  # 12 regions of 1 KiB
    assert not offer(f, regions)  # the budget stopped it
    assert sorted(f.ahead) == [0, 4096] and f.budget.outstanding == 8192  # two GETs of four
    assert not offer(f, regions)  # the budget is full: nothing more is asked for
    assert sorted(f.ahead) == [0, 4096] and f.budget.outstanding == 8192
    for at, size in regions[:4]:
        assert f.read(at, size) == DATA[at:at + size]
    assert sorted(f.ahead) == [4096] and f.budget.outstanding == 4096  # the first run read
    assert offer(f, regions[4:])
    assert sorted(f.ahead) == [4096, 8192] and f.budget.outstanding == 8192
    assert offer(f, regions[4:])  # all asked for already: nothing more
    assert sorted(f.ahead) == [4096, 8192]
    for at, size in regions[4:]:
        assert f.read(at, size) == DATA[at:at + size]
    assert objects.gets == 3 and f.budget.outstanding == 0 and not f.parts
    offer(f, [(0, 1024), (3072, 1024)], ascending=False)  # not side by side: two GETs
    assert sorted(f.ahead) == [0, 3072]
    f.close()
    assert not f.ahead and f.budget.outstanding == 0


def test_files_sharing_a_budget_read_ahead_within_it(tmp_path, monkeypatch):
    """Two files sharing a budget (a cursor's partitions): what one holds ahead the
    other cannot ask for, until it is read, or the file holding it is closed."""
    monkeypatch.setattr(cloud_file, "REQUEST", 4096)
    objects = _counting(tmp_path)
    budget = cloud_file.Budget(8192)
    a = CloudFile(objects, "o", len(DATA), DATA[-16:])
    b = CloudFile(objects, "o", len(DATA), DATA[-16:])
    a.share(budget)
    b.share(budget)
    regions = [(at, 1024) for at in range(0, 8 * 1024, 1024)]
    assert offer(a, regions) and budget.full
    assert not offer(b, regions) and not b.ahead
    for at, size in regions[:4]:
        assert a.read(at, size) == DATA[at:at + size]
    assert offer(b, regions[:4]) and sorted(b.ahead) == [0] and budget.full
    a.close()
    assert budget.outstanding == 4096
    assert offer(b, regions) and sorted(b.ahead) == [0, 4096]
    b.close()
    assert budget.outstanding == 0


def test_a_cloud_without_ranged_reads_gets_the_object_once(tmp_path):
    objects = _counting(tmp_path, ranged=False)
    f = CloudFile.fetch(objects, "o", tail=1024, size=len(DATA))
    assert not f.ranged
    assert f.read(10, 10) == DATA[10:20] and f.read(9000, 5) == DATA[9000:9005]
    assert objects.gets == 2  # the tail, then the whole object


def test_when_the_object_goes_the_fallback_decides(tmp_path):
    objects = _counting(tmp_path)
    copy = tmp_path / "copy"
    copy.write_bytes(DATA)
    current = [True]
    f = CloudFile(objects, "o", len(DATA), DATA[-16:],
                  Fallback(lambda: LocalFile(str(copy), own=False), lambda: current[0]))
    objects.remove("o")
    assert f.read(0, 8) == DATA[:8]  # from the local copy from now on
    assert not f.rewritten()
    current[0] = False
    assert f.rewritten()
    f.close()
    objects.write("o", DATA)
    gone = CloudFile(objects, "o", len(DATA), DATA[-16:], Fallback(lambda: None, lambda: False))
    objects.remove("o")
    with pytest.raises(ObjectMissing, match="rewritten while this cursor read it"):
        gone.read(0, 8)
    alone = CloudFile(objects, "o", len(DATA), DATA[-16:])
    with pytest.raises(CloudError, match="no such object"):
        alone.read(0, 8)
