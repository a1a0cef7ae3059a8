"""An open makes no cloud request before it answers: the cloud work recovery finds
(an object removal cut short, an upload cut short) is left for after it. With no
upload workers it waits for SERVICE, which runs it once no refresh is waiting,
as the original's service does; with upload workers it runs in the background."""
from __future__ import annotations

import os

from readback import read_all

from cloud.test_conformance import STEP, events, files, name, open_db, places, setup_cloud


def _cut_short(repo, backend, options: str = "", **settings) -> tuple[str, str]:
    """Partition 0 on storage and cloud, then closed as if a drop on cloud stopped
    between its two steps (the stub is the marker of its retired object); the
    storage's uuid and the marker's name."""
    db = open_db(repo, **settings)
    uuid = setup_cloud(db, backend, "cloud_drop_local false" + options)
    db.write(events(0, 100))
    db.execute("REFRESH PARTITION 0")
    assert places(db) == {0: (True, True)}
    db.close()
    [object_] = backend.partition_objects(repo, uuid)
    os.rename(os.path.join(repo, uuid, name(0, ".cloud")),
              os.path.join(repo, uuid, f"{object_}.cloud.drop"))
    return uuid, f"{object_}.cloud.drop"


def test_service_finishes_a_removal_and_resumes_the_upload(repo, backend):
    uuid, marker = _cut_short(repo, backend)

    db = open_db(repo)  # workers_upload 0: nothing of the cloud is touched at open
    assert places(db) == {0: (True, False)}
    assert files(repo, uuid) == [name(0), marker]
    assert backend.objects(repo, uuid) == [name(0)]  # the old object, still there
    assert [p["min"] for p in backend.manifest(repo, uuid)["partitions"]] == [0]
    db.execute("SERVICE")  # the manifest, which no longer names the object to remove
    assert backend.manifest(repo, uuid)["partitions"] == []
    assert backend.objects(repo, uuid) == [name(0)]
    db.execute("SERVICE")  # the removal
    assert files(repo, uuid) == [name(0)]
    assert backend.objects(repo, uuid) == []
    db.execute("SERVICE")  # the upload the storage is owed
    assert places(db) == {0: (True, True)}
    assert files(repo, uuid) == [name(0), name(0, ".cloud")]
    assert backend.objects(repo, uuid) == [name(0)]
    db.execute("SERVICE")  # nothing left: a no-op
    assert read_all(db) == [(e.id, e.key, e.value) for e in events(0, 100)]
    db.close()


def test_a_refresh_waiting_runs_before_cloud_work(repo, backend):
    uuid, marker = _cut_short(repo, backend, ", refresh_wm 1")

    db = open_db(repo)
    db.write(events(STEP, STEP + 10))  # past refresh_wm: its refresh is queued
    for _ in range(3):  # the pipeline's rebalance (a partition was created), the refresh
        assert marker in files(repo, uuid)  # the removal still waits
        db.execute("SERVICE")
        if places(db)[STEP][0]:
            break
    assert places(db)[STEP] == (True, True)  # refreshed (and offloaded, a refresh's own)
    assert marker in files(repo, uuid)
    db.execute("SERVICE")  # the manifest
    assert marker in files(repo, uuid)
    db.execute("SERVICE")  # the removal
    assert marker not in files(repo, uuid)
    db.close()


def test_with_upload_workers_the_background_does_it(repo, backend):
    uuid, _ = _cut_short(repo, backend, workers_upload=1)

    db = open_db(repo, workers_upload=1)
    db.execute("SHOW ALL")  # answered; the background works on
    db.close()  # waits for the background's transfers
    db = open_db(repo)
    assert places(db) == {0: (True, True)}
    assert files(repo, uuid) == [name(0), name(0, ".cloud")]
    assert backend.objects(repo, uuid) == [name(0)]
    db.close()
