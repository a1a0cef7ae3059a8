"""monotone.dask.read on a LocalCluster of worker processes: over a repository
directory, and over a cloud storage's manifest in moto's S3 with the
repository deleted (the object store alone), equal to the local cursor."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from cloud.clouds import ACCESS, SECRET, Backend
from cloud.test_conformance import STEP, events, open_db, setup_cloud
from monotone import offline
from monotone.errors import MonotoneError

pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
import monotone.dask as mdask  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def rows_of(df) -> list[tuple]:
    df = df.reset_index()  # the frame is indexed by id
    return list(zip(df["id"].tolist(), df["key"].tolist(), df["value"].tolist()))


def cursor_rows(db, lo=0, hi=2**64 - 1) -> list[tuple]:
    with db.cursor(id=lo) as cur:
        return [(e.id, e.key, e.value) for e in cur if e.id <= hi]


def test_repository_directory(repo, client, monkeypatch):
    db = open_db(repo, compression="'zstd'")
    db.write(events(0, 3 * STEP) + events(5 * STEP, 5 * STEP + 10))
    db.execute("CREATE STORAGE other (encryption 'aes', region_size 1024)")
    db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {9 * STEP}")
    db.execute(f"MOVE PARTITION {STEP} INTO other")
    db.write(events(9 * STEP, 9 * STEP + 5))  # in memory only: not in the files
    want = cursor_rows(db, 0, 6 * STEP)
    monkeypatch.setattr(offline, "REGIONS_PER_PART", 4)  # big partitions split by regions
    frame = mdask.read(repo)
    assert frame.npartitions > 4
    assert frame.known_divisions
    got = frame.compute()
    assert rows_of(got) == want
    local = db.cursor(max_id=6 * STEP).to_pandas()
    assert got.reset_index().dtypes.to_dict() == local.dtypes.to_dict()
    assert str(got.index.dtype) == "uint64"
    bounded = mdask.read(repo, min_id=STEP + 5, max_id=2 * STEP + 3).compute()
    assert rows_of(bounded) == cursor_rows(db, STEP + 5, 2 * STEP + 3)
    db.close()


def test_manifest_in_s3_without_the_repository(repo, s3, client, monkeypatch):
    backend = Backend("s3", f"type 's3', url '{s3.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}'", s3)
    db = open_db(repo)
    setup_cloud(db, backend, "encryption 'aes', region_size 4096")  # regions of ~100 events
    db.write(events(0, 4 * STEP))
    db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {4 * STEP}")
    want = cursor_rows(db)
    url = json.loads(db.execute("SHOW STORAGE t"))["manifest"]
    key = next(s["encryption_key"] for s in json.load(open(f"{repo}/config.json"))["storages"]
               if s["name"] == "t")
    db.close()
    shutil.rmtree(repo)
    options = {"key": ACCESS, "secret": SECRET, "endpoint_url": s3.url}
    with pytest.raises(MonotoneError, match="encryption_key"):
        mdask.read(url, storage_options=options)
    got = mdask.read(url, storage_options=options, encryption_key=key).compute()
    assert rows_of(got) == want
    # big partitions split by regions, their bounds from each object's index (a tail GET)
    monkeypatch.setattr(offline, "REGIONS_PER_PART", 2)
    frame = mdask.read(url, storage_options=options, encryption_key=key)
    assert frame.known_divisions and frame.npartitions > 4
    assert rows_of(frame.compute()) == want
    assert rows_of(frame.loc[STEP + 3:STEP + 7].compute()) == want[STEP + 3:STEP + 8]
    assert rows_of(mdask.read(url, storage_options=options, encryption_key=key,
                              min_id=STEP, max_id=STEP + 9).compute()) == want[STEP:STEP + 10]


def test_not_a_repository_or_manifest(tmp_path):
    with pytest.raises(MonotoneError, match="no repository here|no manifest"):
        mdask.read(str(tmp_path))
    with pytest.raises(MonotoneError, match="not a range"):
        mdask.read(str(tmp_path), min_id=5, max_id=1)


def test_a_mistyped_path_says_what_is_missing(tmp_path):
    repos = tmp_path / "repos"
    os.makedirs(repos / "events" / "wal")
    (repos / "events" / "config.json").write_text("{}")
    with pytest.raises(MonotoneError, match=f"{repos}/evnets: no such file or directory; "
                                            f"beside it: {repos}/events"):
        mdask.read(str(repos / "evnets"))
    with pytest.raises(MonotoneError, match=rf"no such file or directory \({tmp_path}/repso "
                                            r"does not exist\)"):
        mdask.read(str(tmp_path / "repso" / "events"))
    with pytest.raises(MonotoneError, match=f"{repos}: no repository here \\(no config.json\\); "
                                            f"it holds {repos}/events"):
        mdask.read(str(repos))
    assert sorted(os.listdir(tmp_path)) == ["repos"]  # nothing made


def test_a_copy_dropped_after_listing_is_read_from_the_other(repo, s3):
    """Listed while both copies were there (the local one is read), the local copies
    dropped before the tasks ran: each task finds its partition's cloud copy; then the
    other way round."""
    backend = Backend("s3", f"type 's3', url '{s3.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}'", s3)
    db = open_db(repo)
    try:
        setup_cloud(db, backend)
        db.write(events(0, 3 * STEP))
        db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {3 * STEP}")  # uploaded too
        want = cursor_rows(db)
        frame = mdask.read(repo)
        db.execute(f"DROP PARTITIONS BETWEEN 0 AND {3 * STEP} ON STORAGE")
        assert rows_of(frame.compute(scheduler="sync")) == want
        frame = mdask.read(repo)  # now the cloud copies are listed
        db.execute(f"DOWNLOAD PARTITIONS BETWEEN 0 AND {3 * STEP}")
        db.execute(f"DROP PARTITIONS BETWEEN 0 AND {3 * STEP} ON CLOUD")
        assert rows_of(frame.compute(scheduler="sync")) == want
    finally:
        db.close()
