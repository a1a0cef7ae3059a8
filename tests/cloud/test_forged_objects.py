"""Forged objects in an encrypted cloud storage: whoever can write the bucket but has
no key cannot get events read as the storage's, through a cold read, a DOWNLOAD
PARTITION (which verifies an object before it becomes the local copy) or
monotone.dask over the storage's manifest. (Local files: tests/test_forged_files.py.)"""
from __future__ import annotations

import json
import os

import pytest
from readback import read_all
from test_forged_files import forge_plain

from cloud.clouds import ACCESS, SECRET, Backend
from cloud.test_conformance import STEP, events, name, open_db, places, setup_cloud
from monotone.errors import MonotoneError
from monotone.partition import fileformat as partition
from monotone.partition.cloud_file import object_name


def put(backend, repo: str, uuid: str, object_name: str, data: bytes) -> None:
    """An object of the storage replaced behind monotone's back."""
    if backend.kind == "s3":
        backend._s3().put_object(Bucket=uuid, Key=object_name, Body=data)
        return
    where = os.path.join(repo, uuid, "mock") if backend.kind == "mock" else \
        os.path.join(backend.root, uuid)
    with open(os.path.join(where, object_name), "wb") as f:
        f.write(data)


def get(backend, repo: str, uuid: str, object_name: str) -> bytes:
    if backend.kind == "s3":
        return backend._s3().get_object(Bucket=uuid, Key=object_name)["Body"].read()
    where = os.path.join(repo, uuid, "mock") if backend.kind == "mock" else \
        os.path.join(backend.root, uuid)
    with open(os.path.join(where, object_name), "rb") as f:
        return f.read()


def live(backend, repo: str, uuid: str, min_: int) -> str:
    """The name of partition min_'s object (<min>.<digest>)."""
    [found] = [n for n in backend.partition_objects(repo, uuid) if n.startswith(name(min_))]
    return found


def stub_of(data: bytes) -> bytes:
    """What a partition file's stub holds: its index and footer."""
    offset = partition.FOOTER.unpack(data[-partition.FOOTER.size:])[1]
    return data[offset:]


def cold(repo, backend, *mins):
    """An open repository whose partitions (mins) are in an encrypted cloud storage
    only; its storage uuid and what a cursor reads. Without a region cache: every
    cold read asks the cloud (test_region_cache.py: what the cache holds)."""
    db = open_db(repo, mm_cache=0)
    uuid = setup_cloud(db, backend, "encryption 'aes', compression 'none'")
    for m in mins:
        db.write(events(m, m + 50))
        db.execute(f"REFRESH PARTITION {m}")
    assert places(db) == {m: (False, True) for m in mins}
    return db, uuid, read_all(db)


def local_files(repo, uuid):
    return sorted(n for n in os.listdir(os.path.join(repo, uuid)) if n != "mock")


def test_download_and_cold_reads_refuse_a_plaintext_object(repo, backend, tmp_path):
    db, uuid, want = cold(repo, backend, 0)
    try:
        forged = forge_plain(str(tmp_path / "forged"), 0)
        put(backend, repo, uuid, live(backend, repo, uuid, 0), forged)
        # the object alone: it is not the file its stub describes
        with pytest.raises(MonotoneError, match="does not match its stub") as info:
            db.execute("DOWNLOAD PARTITION 0")
        assert name(0) in str(info.value)
        assert local_files(repo, uuid) == [name(0, ".cloud")]
        with pytest.raises(MonotoneError):
            read_all(db)
        # object and stub (the object under the name the stub gives): the storage is
        # encrypted, the file is not
        with open(os.path.join(repo, uuid, name(0, ".cloud")), "wb") as f:
            f.write(stub_of(forged))
        put(backend, repo, uuid, object_name(0, stub_of(forged)), forged)
        with pytest.raises(MonotoneError, match="not encrypted but its storage is") as info:
            db.execute("DOWNLOAD PARTITION 0")
        assert name(0) in str(info.value)
        assert local_files(repo, uuid) == [name(0, ".cloud")]  # no .incomplete left
        assert places(db) == {0: (False, True)}
        with pytest.raises(MonotoneError, match="not encrypted but its storage is"):
            read_all(db)
    finally:
        db.close()


def test_swapped_objects_are_refused(repo, tmp_path):
    """Objects (and their stubs) swapped between two partitions of the storage: each is
    the file its stub describes, sealed with the storage's key, for another partition."""
    backend = Backend("file", f"type 'file', url '{tmp_path / 'cloud'}'", None,
                      str(tmp_path / "cloud"))
    os.makedirs(backend.root)
    db, uuid, want = cold(repo, backend, STEP, 2 * STEP)
    try:
        a = get(backend, repo, uuid, live(backend, repo, uuid, STEP))
        b = get(backend, repo, uuid, live(backend, repo, uuid, 2 * STEP))
        for m, data in ((STEP, b), (2 * STEP, a)):  # each under the name its new stub gives
            put(backend, repo, uuid, object_name(m, stub_of(data)), data)
            with open(os.path.join(repo, uuid, name(m, ".cloud")), "wb") as f:
                f.write(stub_of(data))
        with pytest.raises(MonotoneError, match=f"not partition {STEP} of storage {uuid}"):
            db.execute(f"DOWNLOAD PARTITION {STEP}")
        assert local_files(repo, uuid) == [name(m, ".cloud") for m in (STEP, 2 * STEP)]
        with pytest.raises(MonotoneError, match="not partition"):
            read_all(db)
    finally:
        db.close()


def test_dask_over_a_manifest_refuses_forged_and_moved_objects(repo, s3, tmp_path):
    dask = pytest.importorskip("monotone.dask")
    pytest.importorskip("dask.dataframe")
    backend = Backend("s3", f"type 's3', url '{s3.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}'", s3)
    db, uuid, want = cold(repo, backend, STEP, 2 * STEP)
    url = json.loads(db.execute("SHOW STORAGE t"))["manifest"]
    db.close()
    key = next(s["encryption_key"] for s in json.load(open(f"{repo}/config.json"))["storages"]
               if s["name"] == "t")
    options = {"key": ACCESS, "secret": SECRET, "endpoint_url": s3.url}

    def read():
        frame = dask.read(url, storage_options=options, encryption_key=key)
        flat = frame.compute(scheduler="sync").reset_index()  # indexed by id
        return list(zip(*(flat[c].tolist() for c in ("id", "key", "value"))))

    assert read() == want
    real_name = live(backend, repo, uuid, STEP)
    real = get(backend, repo, uuid, real_name)
    other = get(backend, repo, uuid, live(backend, repo, uuid, 2 * STEP))
    # a plaintext object, as large as the real one (the manifest gives its size)
    forged = forge_plain(str(tmp_path / "forged"), STEP, {"pad": ""})
    forged = forge_plain(str(tmp_path / "forged"), STEP,
                         {"pad": "x" * (len(real) - len(forged))})
    assert len(forged) == len(real)
    # under the real one's name: not the index the name was made of
    put(backend, repo, uuid, real_name, forged)
    with pytest.raises(MonotoneError, match="not the object its name says"):
        read()
    put(backend, repo, uuid, real_name, real)
    # under its own name, the manifest rewritten to name it: not encrypted
    renamed = object_name(STEP, stub_of(forged))
    put(backend, repo, uuid, renamed, forged)
    name_in_manifest(backend, uuid, STEP, renamed)
    with pytest.raises(MonotoneError, match="not encrypted but its storage is"):
        read()
    # partition 2*STEP's object as partition STEP's (as large: the same events but ids)
    assert len(other) == len(real)
    renamed = object_name(STEP, stub_of(other))
    put(backend, repo, uuid, renamed, other)
    name_in_manifest(backend, uuid, STEP, renamed)
    with pytest.raises(MonotoneError, match=f"not partition {STEP} of storage {uuid}"):
        read()
    name_in_manifest(backend, uuid, STEP, real_name)
    assert read() == want


def name_in_manifest(backend, uuid: str, min_: int, object_: str) -> None:
    """The manifest version the pointer names rewritten to name object_ for min_."""
    pointer = json.loads(get(backend, "", uuid, "manifest.json"))["manifest"]
    doc = json.loads(get(backend, "", uuid, pointer))
    for entry in doc["partitions"]:
        if entry["min"] == min_:
            entry["object"] = object_
    put(backend, "", uuid, pointer, json.dumps(doc).encode())
