"""A cloud storage's manifest read on another machine while the repository works:
each write is a new version that is never changed, a small pointer names the
last, partition objects never change (their name is their min and a digest of
their index) and stay removal_delay after they leave the manifest. A reader of
a version gets one consistent list and reads every event of it once, whatever
uploads, moves and drops happen meanwhile; readers of several manifests read
them as of one moment."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from event_rows import as_list
from readback import read_all

from cloud.clouds import ACCESS, SECRET, Backend
from cloud.test_conformance import STEP, events, name, open_db, places, setup_cloud
from monotone import offline
from monotone.cloud import at_url, manifest
from monotone.errors import MonotoneError

HOUR = "removal_delay 3600000000"  # microseconds, as every duration


@pytest.fixture
def s3_backend(s3):
    return Backend("s3", f"type 's3', url '{s3.url}', access_key '{ACCESS}', "
                         f"secret_key '{SECRET}', {HOUR}", s3)


@pytest.fixture
def options(s3):
    return {"key": ACCESS, "secret": SECRET, "endpoint_url": s3.url}


def manifest_url(db, storage: str = "t") -> str:
    return json.loads(db.execute(f"SHOW STORAGE {storage}"))["manifest"]


def read_parts(parts) -> list[tuple]:
    return [(i, k, v) for part in parts for i, k, v, _ in as_list(offline.read_part(part))]


def want(evs) -> list[tuple]:
    return [(e.id, e.key, e.value) for e in evs]


def test_each_write_is_a_new_version_and_the_pointer_names_the_last(repo, s3_backend,
                                                                    options):
    db = open_db(repo)
    try:
        uuid = setup_cloud(db, s3_backend)
        url = manifest_url(db)
        cloud, _ = at_url(url, options)
        first = manifest.current(cloud, url.rsplit("/", 1)[1])
        for m in (0, STEP, 2 * STEP):
            db.write(events(m, m + 10))
            db.execute(f"REFRESH PARTITION {m}")
        pointer = json.loads(s3_backend.read(repo, uuid, manifest.NAME))
        assert pointer["format"] == manifest.POINTER
        assert pointer["generation"] == manifest.current(cloud, manifest.NAME) > first
        versions = [n for n in s3_backend.all_objects(repo, uuid) if n.startswith("manifest.0")]
        assert pointer["manifest"] == max(versions)
        # the last version names every partition; an older one, read by its own URL, as
        # it was when it was written
        assert [p.min for p in offline.from_manifest(url, options)] == [0, STEP, 2 * STEP]
        older = url.rsplit("/", 1)[0] + "/" + manifest.version_name(pointer["generation"] - 1)
        assert [p.min for p in offline.from_manifest(older, options)] == [0, STEP]
    finally:
        db.close()


def test_a_version_left_past_the_pointer_is_never_overwritten(repo, s3_backend, options):
    """A crash between a version and its pointer leaves the version: the next write
    makes the one after it, and a version is created only where there is none."""
    db = open_db(repo)
    try:
        uuid = setup_cloud(db, s3_backend)
        url = manifest_url(db)
        cloud, _ = at_url(url, options)
        now = manifest.current(cloud, manifest.NAME)
        stray = manifest.version_name(now + 1)
        assert cloud.create(stray, b"left by a crash")
        assert not cloud.create(stray, b"another")  # there is one: nothing written
        db.write(events(0, 10))
        db.execute("REFRESH PARTITION 0")
        assert s3_backend.read(repo, uuid, stray) == b"left by a crash"
        assert manifest.current(cloud, manifest.NAME) == now + 2
        assert [p.min for p in offline.from_manifest(url, options)] == [0]
        # past the generation the coordinator made last, too
        assert cloud.create(manifest.version_name(now + 3), b"left by another crash")
        db.write(events(STEP, STEP + 10))
        db.execute(f"REFRESH PARTITION {STEP}")
        assert manifest.current(cloud, manifest.NAME) == now + 4
        assert [p.min for p in offline.from_manifest(url, options)] == [0, STEP]
    finally:
        db.close()


def test_a_listed_version_reads_whole_while_partitions_are_rewritten_moved_dropped(
        repo, s3_backend, options):
    db = open_db(repo)
    try:
        uuid = setup_cloud(db, s3_backend)
        db.execute("CREATE STORAGE u (cloud 'c')")
        before = events(0, 3 * STEP)
        db.write(before)
        db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {3 * STEP}")
        url = manifest_url(db)
        listed = offline.from_manifest(url, options)
        objects = s3_backend.partition_objects(repo, uuid)
        assert [p.path.rsplit("/", 1)[1] for p in listed] == objects
        # rewritten (a new object), dropped, moved to another storage
        db.write(events(STEP // 2, STEP // 2 + 5, b"w"))
        db.execute("REFRESH PARTITION 0")
        db.execute(f"DROP PARTITION {STEP}")
        db.execute(f"MOVE PARTITION {2 * STEP} INTO u")
        assert read_parts(listed) == want(before)  # the version as it was, whole
        assert set(objects) < set(s3_backend.partition_objects(repo, uuid))  # still there
        now = offline.from_manifest(url, options)
        assert [p.min for p in now] == [0]
        assert read_parts(now) == read_all(db, id=0)[:STEP]
    finally:
        db.close()


def _age_markers(repo, uuid, seconds: float) -> list[str]:
    """The storage's retirement markers made `seconds` older; their names."""
    markers = [n for n in os.listdir(os.path.join(repo, uuid)) if n.endswith(".cloud.drop")]
    for marker in markers:
        when = time.time() - seconds
        os.utime(os.path.join(repo, uuid, marker), (when, when))
    return markers


def test_objects_go_once_their_delay_has_passed(repo, s3_backend, options):
    db = open_db(repo)
    uuid = setup_cloud(db, s3_backend)
    db.write(events(0, 10))
    db.execute("REFRESH PARTITION 0")
    db.write(events(10, 20))
    db.execute("REFRESH PARTITION 0")  # a new object; the first retired
    [listed] = offline.from_manifest(manifest_url(db), options)
    new = listed.path.rsplit("/", 1)[1]
    [old] = [n for n in s3_backend.partition_objects(repo, uuid) if n != new]
    assert os.path.exists(os.path.join(repo, uuid, f"{old}.cloud.drop"))
    db.execute("SERVICE")
    assert s3_backend.partition_objects(repo, uuid) == sorted([old, new])  # not due yet
    db.close()
    assert _age_markers(repo, uuid, 30 * 60) == [f"{old}.cloud.drop"]
    db = open_db(repo)
    for _ in range(3):  # the manifest, the removals due; then nothing
        db.execute("SERVICE")
    assert s3_backend.partition_objects(repo, uuid) == sorted([old, new])  # half an hour
    db.close()
    _age_markers(repo, uuid, 2 * 3600)
    db = open_db(repo, workers_upload=1)  # in the background, with upload workers
    db.close()  # a close lets the background's transfers end
    assert s3_backend.partition_objects(repo, uuid) == [new]
    assert not [n for n in os.listdir(os.path.join(repo, uuid)) if n.endswith(".drop")]
    db = open_db(repo)
    assert read_all(db) == want(events(0, 20))
    db.close()


def test_the_same_bytes_uploaded_again_are_not_removed(repo, s3_backend):
    """A copy dropped on cloud and uploaded again unchanged is the same object: its
    retirement is undone, and removing what is due never takes it."""
    db = open_db(repo)
    try:
        uuid = setup_cloud(db, s3_backend, "cloud_drop_local false")
        db.write(events(0, 10))
        db.execute("REFRESH PARTITION 0")
        [object_] = s3_backend.partition_objects(repo, uuid)
        db.execute("DROP PARTITION 0 ON CLOUD")
        assert os.path.exists(os.path.join(repo, uuid, f"{object_}.cloud.drop"))
        db.execute("UPLOAD PARTITION 0")
        assert not os.path.exists(os.path.join(repo, uuid, f"{object_}.cloud.drop"))
        assert s3_backend.partition_objects(repo, uuid) == [object_]
        db.execute("DROP PARTITION 0 ON STORAGE")
        assert places(db) == {0: (False, True)}
        assert read_all(db) == want(events(0, 10))
    finally:
        db.close()


def test_an_object_gone_past_the_delay_says_so(repo, s3, options):
    backend = Backend("s3", f"type 's3', url '{s3.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}'", s3)  # removal_delay 0
    db = open_db(repo)
    try:
        setup_cloud(db, backend)
        db.write(events(0, 10))
        db.execute("REFRESH PARTITION 0")
        listed = offline.from_manifest(manifest_url(db), options)
        db.execute("DROP PARTITION 0")
        with pytest.raises(MonotoneError, match="removal_delay") as info:
            read_parts(listed)
        assert name(0) in str(info.value)
    finally:
        db.close()


MUTATOR = r"""
import os, sys
import monotone
db = monotone.Monotone()
for name, value in (("workers", 0), ("workers_upload", 0), ("interval", int(sys.argv[3]))):
    db.execute(f"SET {name} TO {value}")
db.open(sys.argv[1])
rounds = 0
step = int(sys.argv[3])
while not os.path.exists(sys.argv[2]):
    into = "u" if rounds % 2 == 0 else "t"
    for min_ in (0, step, 2 * step):
        db.execute(f"MOVE PARTITION {min_} INTO {into}")
    db.execute(f"DROP PARTITION {step} ON STORAGE")  # its object alone: the next move
    db.execute("REFRESH PARTITION 0")                # downloads it; a refresh in place
    rounds += 1
    if rounds == 1:
        print("mutating", flush=True)
db.close()
print(rounds)
"""


def test_readers_looping_while_partitions_move_read_every_event_once(repo, s3_backend,
                                                                      options):
    """Two storages' manifests read as one frame, again and again, while a process
    moves every partition between them (each move a download, a refresh, an upload
    and the old copy's drop), drops local copies and refreshes in place."""
    mdask = pytest.importorskip("monotone.dask")
    pytest.importorskip("dask.dataframe")
    db = open_db(repo)
    setup_cloud(db, s3_backend, "cloud_drop_local false")
    db.execute("CREATE STORAGE u (cloud 'c', cloud_drop_local false)")
    expected = events(0, 3 * STEP)
    db.write(expected)
    db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {3 * STEP}")
    urls = [manifest_url(db, "t"), manifest_url(db, "u")]
    db.close()
    stop = os.path.join(os.path.dirname(repo), "stop")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    mutator = subprocess.Popen([sys.executable, "-c", MUTATOR, repo, stop, str(STEP)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert mutator.stdout.readline() == "mutating\n"  # (or it died: its stderr below)
        for _ in range(8):
            frame = mdask.read(urls, storage_options=options).compute(scheduler="sync")
            flat = frame.reset_index()
            assert flat["id"].tolist() == [e.id for e in expected]
            assert flat["value"].tolist() == [e.value for e in expected]
    finally:
        open(stop, "w").close()
        out, err = mutator.communicate(timeout=120)
    assert mutator.returncode == 0, err
    assert int(out) > 1  # partitions moved while it read


def test_a_partition_moving_between_manifests_as_they_are_read_is_read_once(
        repo, s3_backend, options, monkeypatch):
    """The move lands between the reading of the storage it goes to and of the one
    it leaves: neither reading had it, the second reading of each does."""
    mdask = pytest.importorskip("monotone.dask")
    pytest.importorskip("dask.dataframe")
    db = open_db(repo)
    try:
        setup_cloud(db, s3_backend)
        db.execute("CREATE STORAGE u (cloud 'c')")
        expected = events(0, 2 * STEP)
        db.write(expected)
        db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {2 * STEP}")
        db.execute(f"MOVE PARTITION {STEP} INTO u")
        urls = [manifest_url(db, "t"), manifest_url(db, "u")]
        listed = mdask.parts
        moved = []

        def parts(location, *args):
            if location == urls[1] and not moved:  # t read: the move, then u
                db.execute(f"MOVE PARTITION {STEP} INTO t")
                moved.append(STEP)
            return listed(location, *args)

        monkeypatch.setattr(mdask, "parts", parts)
        flat = mdask.read(urls, storage_options=options).compute(scheduler="sync")
        assert moved and flat.index.tolist() == [e.id for e in expected]
        # both name it (u's version from before it left, pinned by its URL): the later
        # copy, t's, is read, once
        cloud, _ = at_url(urls[1], options)
        before = urls[1].rsplit("/", 1)[0] + "/" + \
            manifest.version_name(manifest.current(cloud, manifest.NAME) - 1)
        assert STEP in [p.min for p in offline.from_manifest(before, options)]
        monkeypatch.setattr(mdask, "parts", listed)
        flat = mdask.read([before, urls[0]], storage_options=options).compute(scheduler="sync")
        assert flat.index.tolist() == [e.id for e in expected]
    finally:
        db.close()


def test_the_delay_counts_from_when_the_manifest_stops_naming_an_object(
        repo, s3, options, monkeypatch):
    """A refresh in place retires the old object as it starts, but the manifest names
    it until the new one is up: its removal_delay starts then, however long the
    refresh took (here 2 s, the delay 1 s)."""
    backend = Backend("s3", f"type 's3', url '{s3.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}', removal_delay 1000000", s3)
    db = open_db(repo)
    setup_cloud(db, backend, "cloud_drop_local false")
    db.write(events(0, 10))
    db.execute("REFRESH PARTITION 0")
    listed = offline.from_manifest(manifest_url(db), options)
    db.close()
    monkeypatch.setenv("MONOTONE_FAULTS", "refresh.frozen:delay=2")
    db = open_db(repo)
    monkeypatch.delenv("MONOTONE_FAULTS")
    try:
        db.write(events(10, 20))
        db.execute("REFRESH PARTITION 0")  # removes what is due after its upload
        assert read_parts(listed) == want(events(0, 10))  # the version before, whole
        assert read_parts(offline.from_manifest(manifest_url(db), options)) == \
            want(events(0, 20))
    finally:
        db.close()


def test_nothing_the_current_manifest_names_is_removed(repo, s3, options):
    """While the manifest cannot be written (here: versions past the pointer that block
    it), the objects it still names stay, retired or not; once it is written they go."""
    backend = Backend("s3", f"type 's3', url '{s3.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}'", s3)  # removal_delay 0
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.write(events(0, 10))
    db.execute("REFRESH PARTITION 0")
    url = manifest_url(db)
    [object_] = backend.partition_objects(repo, uuid)
    cloud, _ = at_url(url, options)
    now = manifest.current(cloud, manifest.NAME)
    blocking = [manifest.version_name(now + i) for i in range(1, manifest.GENERATIONS + 1)]
    for name_ in blocking:
        assert cloud.create(name_, b"{}")
    try:
        with pytest.raises(MonotoneError, match="another writer"):
            db.execute("DROP PARTITION 0")
        assert backend.partition_objects(repo, uuid) == [object_]  # named still: it stays
    finally:
        db.close()
    db = open_db(repo)
    try:
        for _ in range(2):  # the manifest, then the removals (the manifest first): both fail
            with pytest.raises(MonotoneError, match="another writer"):
                db.execute("SERVICE")
        assert backend.partition_objects(repo, uuid) == [object_]
        assert read_parts(offline.from_manifest(url, options)) == want(events(0, 10))
        for name_ in blocking:
            cloud.remove(name_)
    finally:
        db.close()
    db = open_db(repo)
    try:
        for _ in range(3):
            db.execute("SERVICE")
        assert backend.partition_objects(repo, uuid) == []
        assert offline.from_manifest(url, options) == []
    finally:
        db.close()
