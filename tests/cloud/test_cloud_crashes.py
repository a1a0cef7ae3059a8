"""Crashes and failures at every step of the cloud tier: by fault point (an
error, as error_upload / error_download; a kill -9 of the process running the
step: the coordinator, or the upload worker) and by the S3 server going away.
After each, a reopen must read every acknowledged event, hold no half-done
file, and leave no object in the cloud that no partition owns."""
from __future__ import annotations

import json
import os

import pytest
from readback import read_all

from cloud.clouds import ACCESS, SECRET, Backend
from cloud.test_conformance import STEP, events, open_db, places, setup_cloud
from monotone.errors import CoordinatorError, MonotoneError


def settled(repo, backend, uuid, db) -> None:
    """No half-done state left, and the cloud holds exactly the partitions'
    cloud copies; every local stub has its object. With no upload workers, the cloud
    work an open leaves waits for SERVICE: it is run first."""
    for _ in range(8):  # the manifest, the removals, the uploads; then no-ops
        db.execute("SERVICE")
    names = sorted(os.listdir(os.path.join(repo, uuid)))
    assert not [n for n in names if n.endswith((".incomplete", ".complete", ".drop"))], names
    on_cloud = sorted(f"{m:020d}" for m, (_, c) in places(db).items() if c)
    assert backend.objects(repo, uuid) == on_cloud
    manifest = backend.manifest(repo, uuid)  # written at open, and after every change
    assert manifest is not None
    assert sorted(p["object"] for p in manifest["partitions"]) == \
        backend.partition_objects(repo, uuid)
    assert sorted(n[:-len(".cloud")] for n in names if n.endswith(".cloud")) == on_cloud
    local = sorted(f"{m:020d}" for m, (s, _) in places(db).items() if s)
    assert sorted(n for n in names if n.isdigit()) == local


def want(evs) -> list[tuple]:
    return [(e.id, e.key, e.value) for e in evs]


# (fault point, what sets the stage, the command that reaches the point)
STEPS = [
    ("upload", "", "REFRESH PARTITION 0"),
    ("upload.sent", "", "REFRESH PARTITION 0"),
    ("upload.done", "", "REFRESH PARTITION 0"),
    ("local.dropping", "", "REFRESH PARTITION 0"),
    ("download", "REFRESH PARTITION 0", "DOWNLOAD PARTITION 0"),
    ("download.done", "REFRESH PARTITION 0", "DOWNLOAD PARTITION 0"),
    ("download.done", "REFRESH PARTITION 0", "REFRESH PARTITION 0"),
    ("cloud.dropping", "REFRESH PARTITION 0", "REFRESH PARTITION 0"),
    ("cloud.dropping", "REFRESH PARTITION 0", "DROP PARTITION 0"),
    ("refresh_2", "REFRESH PARTITION 0", "REFRESH PARTITION 0"),
    ("append.written", "REFRESH PARTITION 0", "REFRESH PARTITION 0"),
]
# the steps an upload worker runs (the others run in the coordinator)
IN_WORKER = {"upload", "upload.sent", "download"}
# by default every point once, in the coordinator, and an upload worker's once; a second
# command reaching a point, and the worker's other points, in the long runs (-m slow)
LONG_ONLY = {("download.done", "REFRESH PARTITION 0"), ("cloud.dropping", "DROP PARTITION 0"),
             ("upload", "worker"), ("download", "worker")}


def _case(point, stage, command, worker):
    long_only = (point, "worker" if worker else command) in LONG_ONLY
    return pytest.param(point, stage, command, worker,
                        marks=[pytest.mark.slow] if long_only else [])


CASES = [_case(*step, False) for step in STEPS] + \
    [_case(*step, True) for step in STEPS if step[0] in IN_WORKER]


# s3 by default; the mock (a local directory, as file is) in the long runs
@pytest.mark.parametrize("backend", ["s3", pytest.param("mock", marks=pytest.mark.slow)],
                         indirect=True)
@pytest.mark.parametrize("point,stage,command,worker", CASES)
def test_kill_at_every_step(repo, backend, monkeypatch, point, stage, command, worker):
    """kill -9 of the process running the step (worker: an upload worker)."""
    db = open_db(repo)
    # an append needs regions to keep, and old indexes a small share of the file
    uuid = setup_cloud(db, backend, "region_size 1024, compression 'none'"
                       if point.startswith("append") else "")
    acked = events(0, 100)
    db.write(acked)
    if stage:
        db.execute(stage)
        # the cloud partition gets new writes: a refresh goes through it, appending
        # them (past the file's end), or for refresh_2 (a new file) among the old ones
        more = events(50 if point == "refresh_2" else 100, 150, b"late")
        db.write(more)
        acked = acked[:more[0].id] + more
    db.close()
    monkeypatch.setenv("MONOTONE_FAULTS", f"{point}:kill@1")
    db = open_db(repo, workers_upload=1 if worker else 0)
    monkeypatch.delenv("MONOTONE_FAULTS")
    if worker and command.startswith(("UPLOAD", "DOWNLOAD")):
        db.execute(command)  # scheduled: the worker dies in the background
        db.close()
        with open(os.path.join(repo, "log")) as f:
            assert "died during a job" in f.read()
    else:
        with pytest.raises(MonotoneError) as failed:
            db.execute(command)
        if not worker:
            assert isinstance(failed.value, CoordinatorError)
        db.close()
    db = open_db(repo)
    if command != "DROP PARTITION 0":
        assert read_all(db) == want(acked)
    settled(repo, backend, uuid, db)
    db.execute("REFRESH PARTITION IF EXISTS 0")  # and it works on
    settled(repo, backend, uuid, db)
    if command != "DROP PARTITION 0":
        assert read_all(db) == want(acked)
        assert places(db) == {0: (False, True)}
    db.close()


# two steps by default, every step in the long runs (pytest -m slow)
KEPT = ["cloud.dropping", "upload.sent"] + \
    [pytest.param(p, marks=pytest.mark.slow) for p in ("append.written", "upload", "upload.done")]


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
@pytest.mark.parametrize("point", KEPT)
def test_kill_while_the_object_is_kept_for_an_append(repo, backend, monkeypatch, point):
    """A partition with both copies keeps its object through a refresh in place, for
    the upload after it to extend: kill -9 at each step from there to the new object."""
    db = open_db(repo)
    uuid = setup_cloud(db, backend, "region_size 1024, compression 'none', "
                                    "cloud_drop_local false")
    acked = events(0, 100)
    db.write(acked)
    db.execute("REFRESH PARTITION 0")
    more = events(100, 150, b"late")
    db.write(more)
    acked += more
    db.close()
    monkeypatch.setenv("MONOTONE_FAULTS", f"{point}:kill@1")
    db = open_db(repo)
    monkeypatch.delenv("MONOTONE_FAULTS")
    with pytest.raises(CoordinatorError):
        db.execute("REFRESH PARTITION 0")
    db.close()
    db = open_db(repo)
    assert read_all(db) == want(acked)
    settled(repo, backend, uuid, db)
    db.execute("REFRESH PARTITION 0")
    settled(repo, backend, uuid, db)
    assert read_all(db) == want(acked)
    assert places(db) == {0: (True, True)}
    db.close()


@pytest.mark.parametrize("switch", ["error_upload", "error_download"])
def test_failed_transfer_loses_nothing_and_retries(repo, backend, switch):
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.write(events(0, 100))
    if switch == "error_download":
        db.execute("REFRESH PARTITION 0")
    db.execute(f"SET {switch} TO true")
    command = "REFRESH PARTITION 0" if switch == "error_upload" else "DOWNLOAD PARTITION 0"
    with pytest.raises(MonotoneError, match=f"error injection: {switch}"):
        db.execute(command)
    expected_places = {0: (True, False)} if switch == "error_upload" else {0: (False, True)}
    assert places(db) == expected_places
    settled(repo, backend, uuid, db)
    assert read_all(db) == want(events(0, 100))
    db.execute(f"SET {switch} TO false")
    db.execute(command if switch == "error_download" else "UPLOAD PARTITION 0")
    assert places(db) == {0: (True, True)}
    settled(repo, backend, uuid, db)
    db.close()


@pytest.fixture
def s3_backend(s3):
    return Backend("s3", f"type 's3', url '{s3.url}', access_key '{ACCESS}', "
                         f"secret_key '{SECRET}'", s3)


def test_neighbouring_regions_in_one_get_and_none_outside_the_range(repo, s3, s3_backend):
    """The partitions' small files are read ahead whole, one GET each (neighbouring
    regions join); a range starting at STEP reads nothing of partition 0. (Without a
    region cache: with one, the second read makes no GET, test_region_cache.py.)"""
    backend = s3_backend
    db = open_db(repo)
    uuid = setup_cloud(db, backend, "region_size 2048, compression 'none'")
    db.write(events(0, 2 * STEP))
    db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {2 * STEP}")
    regions = {p["min"]: p["regions"] for p in json.loads(db.execute("SHOW PARTITIONS"))}
    assert regions[0] > 10 and regions[STEP] > 10
    db.close()
    db = open_db(repo, mm_cache=0)
    others = s3.count("HEAD", f"/{uuid}"), s3.count("GET", f"/{uuid}?")
    first = s3.count("GET", f"/{uuid}/")
    assert read_all(db) == want(events(0, 2 * STEP))
    assert s3.count("GET", f"/{uuid}/") - first == 2
    second = s3.count("GET", f"/{uuid}/")
    assert read_all(db, id=STEP) == want(events(STEP, 2 * STEP))
    assert s3.count("GET", f"/{uuid}/") - second == 1
    assert s3.count("GET", f"/{uuid}/{0:020d}") == 1  # partition 0's object: not again
    # opening and reading cost no HEAD and no listing: the stubs say everything
    assert (s3.count("HEAD", f"/{uuid}"), s3.count("GET", f"/{uuid}?")) == others
    db.close()


def test_clean_close_with_background_uploads(repo, backend):
    """With upload workers the commands return at once; a close after them
    leaves every partition whole, on cloud or still local (and uploaded at the
    next open)."""
    db = open_db(repo, workers=1, workers_upload=1)
    uuid = setup_cloud(db, backend, "cloud_drop_local false")
    db.execute("ALTER PIPELINE RESET")
    db.write(events(0, 3 * STEP))
    db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {3 * STEP}")
    db.execute("ALTER PIPELINE SET t")
    db.close()
    db = open_db(repo, workers=1, workers_upload=1)
    db.execute(f"MOVE PARTITIONS BETWEEN 0 AND {3 * STEP} INTO t")
    db.execute(f"UPLOAD PARTITIONS BETWEEN 0 AND {3 * STEP}")
    assert read_all(db) == want(events(0, 3 * STEP))
    db.close()
    db = open_db(repo)
    assert read_all(db) == want(events(0, 3 * STEP))
    settled(repo, backend, uuid, db)
    db.close()


def test_upload_cut_short_is_resumed_by_upload_workers(repo, backend, monkeypatch):
    """A partition of a cloud storage left local by a crash goes up when a
    coordinator with upload workers next opens the repository."""
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.write(events(0, 100))
    db.close()
    monkeypatch.setenv("MONOTONE_FAULTS", "upload.sent:kill@1")
    db = open_db(repo)
    monkeypatch.delenv("MONOTONE_FAULTS")
    with pytest.raises(MonotoneError):
        db.execute("REFRESH PARTITION 0")
    db.close()
    db = open_db(repo, workers_upload=1)  # the upload resumes in the background
    db.close()                            # a clean close lets it finish
    db = open_db(repo)
    assert places(db) == {0: (False, True)}
    settled(repo, backend, uuid, db)
    assert read_all(db) == want(events(0, 100))
    db.close()
