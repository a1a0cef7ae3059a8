"""What every cloud backend must do (s3 through moto's server, mock, fsspec's
file): the cloud tier's commands, its files and objects, and the data read
back through them, before and after a reopen."""
from __future__ import annotations

import json
import os

import pytest
from readback import read_all

import monotone
from monotone import Event

STEP = 1000  # partition interval


def open_db(repo, **settings):
    db = monotone.Monotone()
    for name, value in {"workers": 0, "workers_upload": 0, "interval": STEP,
                        **settings}.items():
        db.execute(f"SET {name} TO {value}")
    db.open(repo)
    return db


def setup_cloud(db, backend, options: str = "") -> str:
    """A storage `t` on the backend's cloud, first in the pipeline; its uuid."""
    backend.create(db)
    db.execute(f"CREATE STORAGE t (cloud 'c'{', ' + options if options else ''})")
    db.execute("ALTER PIPELINE SET t")
    return json.loads(db.execute("SHOW STORAGE t"))["config"]["uuid"]


def events(lo: int, hi: int, tag: bytes = b"v") -> list[Event]:
    return [Event(id=i, value=tag + b"%d" % i * 20) for i in range(lo, hi)]


def places(db) -> dict[int, tuple[bool, bool]]:
    return {p["min"]: (p["on_storage"], p["on_cloud"])
            for p in json.loads(db.execute("SHOW PARTITIONS"))}


def files(repo, uuid) -> list[str]:
    return sorted(n for n in os.listdir(os.path.join(repo, uuid)) if n != "mock")


def name(min_: int, state: str = "") -> str:
    return f"{min_:020d}{state}"


def test_refresh_offloads_and_reads_back(repo, backend):
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    expected = events(0, 3 * STEP)
    db.write(expected)
    db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {3 * STEP}")
    assert places(db) == {0: (False, True), STEP: (False, True), 2 * STEP: (False, True)}
    # only stubs stay local; the objects are whole files
    assert files(repo, uuid) == [name(m, ".cloud") for m in (0, STEP, 2 * STEP)]
    assert backend.objects(repo, uuid) == [name(m) for m in (0, STEP, 2 * STEP)]
    want = [(e.id, e.key, e.value) for e in expected]
    assert read_all(db) == want
    db.close()
    db = open_db(repo)
    assert places(db) == {0: (False, True), STEP: (False, True), 2 * STEP: (False, True)}
    assert read_all(db) == want
    assert read_all(db, id=STEP + 5) == want[STEP + 5:]
    db.close()


def test_upload_download_and_drop_copies(repo, backend):
    db = open_db(repo)
    uuid = setup_cloud(db, backend, "cloud_drop_local false")
    db.write(events(0, 100))
    db.execute("REFRESH PARTITION 0")
    assert places(db) == {0: (True, True)}
    db.execute("DROP PARTITION 0 ON STORAGE")
    assert places(db) == {0: (False, True)}
    with pytest.raises(monotone.MonotoneError, match="only copy"):
        db.execute("DROP PARTITION 0 ON CLOUD")
    db.execute("DOWNLOAD PARTITION 0")
    assert places(db) == {0: (True, True)}
    assert files(repo, uuid) == [name(0), name(0, ".cloud")]
    db.execute("DROP PARTITION 0 ON CLOUD")
    assert places(db) == {0: (True, False)}
    assert backend.objects(repo, uuid) == []
    assert files(repo, uuid) == [name(0)]
    db.execute("UPLOAD PARTITION 0")
    db.execute("UPLOAD PARTITION 0")  # already there: nothing to do
    assert places(db) == {0: (True, True)}
    assert backend.objects(repo, uuid) == [name(0)]
    db.close()
    db = open_db(repo)
    assert places(db) == {0: (True, True)}
    assert read_all(db) == [(e.id, e.key, e.value) for e in events(0, 100)]
    db.execute("DROP PARTITION 0")
    assert places(db) == {}
    assert backend.objects(repo, uuid) == [] and files(repo, uuid) == []
    db.close()


def test_commands_without_a_cloud_copy(repo, backend):
    db = open_db(repo)
    setup_cloud(db, backend)
    db.write(events(0, 10))
    with pytest.raises(monotone.MonotoneError, match="does not exist locally"):
        db.execute("UPLOAD PARTITION 0")
    db.execute("DOWNLOAD PARTITION 0")  # nothing in the cloud: nothing to do
    db.execute("CREATE STORAGE plain")
    db.execute("CREATE PARTITION 50000 50999")
    db.execute("MOVE PARTITION 50000 INTO plain")
    with pytest.raises(monotone.MonotoneError, match="no associated cloud"):
        db.execute("UPLOAD PARTITION 50000")
    db.execute("UPLOAD PARTITION 50000 IF CLOUD")
    db.close()


def test_writes_into_a_cloud_partition_refresh_through_it(repo, backend):
    """Refresh of a partition living in the cloud: download, drop on cloud, merge,
    upload, drop local."""
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.write(events(0, 200))
    db.execute("REFRESH PARTITION 0")
    db.write(events(100, 300, b"new"))
    db.write([Event(id=5, delete=True)])
    assert places(db) == {0: (False, True)}
    db.execute("REFRESH PARTITION 0")
    assert places(db) == {0: (False, True)}
    assert files(repo, uuid) == [name(0, ".cloud")]
    want = [(e.id, e.key, e.value) for e in events(0, 100) + events(100, 300, b"new")
            if e.id != 5]
    assert read_all(db) == want
    db.close()
    db = open_db(repo)
    assert read_all(db) == want
    part = json.loads(db.execute("SHOW PARTITION 0"))
    assert part["refreshes"] == 2 and part["events"] == len(want)
    db.close()


def test_move_into_and_out_of_the_cloud(repo, backend):
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.execute("ALTER PIPELINE RESET")
    db.write(events(0, 2 * STEP))
    db.execute("REFRESH PARTITIONS BETWEEN 0 AND 9999")
    main = json.loads(db.execute("SHOW STORAGE main"))["config"]["uuid"]
    db.execute("MOVE PARTITION 0 INTO t")
    assert places(db) == {0: (False, True), STEP: (True, False)}
    assert backend.objects(repo, uuid) == [name(0)]
    assert name(0) not in files(repo, main)
    db.execute("MOVE PARTITION 0 INTO main")
    assert places(db) == {0: (True, False), STEP: (True, False)}
    assert backend.objects(repo, uuid) == [] and files(repo, uuid) == []
    storages = {p["min"]: p["storage"] for p in json.loads(db.execute("SHOW PARTITIONS"))}
    assert storages == {0: "main", STEP: "main"}
    assert read_all(db) == [(e.id, e.key, e.value) for e in events(0, 2 * STEP)]
    db.close()


def test_pipeline_moves_the_oldest_into_the_cloud(repo, backend):
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.execute("ALTER PIPELINE SET main (partitions 1), t")
    for i in range(3):
        db.write(events(i * STEP, i * STEP + 10))
    db.execute("REBALANCE")
    where = {p["min"]: (p["storage"], p["on_storage"], p["on_cloud"])
             for p in json.loads(db.execute("SHOW PARTITIONS"))}
    assert where == {0: ("t", False, True), STEP: ("t", False, True),
                     2 * STEP: ("main", False, False)}
    stats = json.loads(db.execute("SHOW STORAGE t"))["stats"]
    assert (stats["partitions"], stats["partitions_local"], stats["partitions_cloud"]) == (2, 0, 2)
    assert backend.objects(repo, uuid) == [name(0), name(STEP)]
    db.execute("ALTER PIPELINE SET main (partitions 1), t (partitions 1)")
    db.execute("REBALANCE")  # the last tier drops its oldest: its object too
    assert backend.objects(repo, uuid) == [name(STEP)]
    db.close()


def test_encrypted_storage_in_the_cloud(repo, backend):
    db = open_db(repo)
    uuid = setup_cloud(db, backend, "encryption 'aes'")
    secret = b"plaintext-marker-" * 8
    db.write([Event(id=i, value=secret) for i in range(50)])
    db.execute("REFRESH PARTITION 0")
    db.close()
    [stored] = backend.partition_objects(repo, uuid)
    assert secret[:16] not in backend.read(repo, uuid, stored)
    db = open_db(repo)
    assert [e.value for e in db.cursor()] == [secret] * 50
    db.close()


@pytest.mark.parametrize("uploads", [0, 1], ids=["inline", "upload-worker"])
def test_secrets_never_shown(repo, backend, uploads):
    db = open_db(repo, workers_upload=uploads)
    backend.create(db)
    db.execute("ALTER CLOUD c SET (debug true)")
    db.execute("CREATE STORAGE t (cloud 'c')")
    db.execute("ALTER PIPELINE SET t")
    db.write(events(0, 10))
    db.execute("REFRESH PARTITION 0")
    shown = db.execute("SHOW CLOUDS") + db.execute("SHOW ALL") + db.execute("SHOW STORAGES")
    db.close()
    with open(os.path.join(repo, "log")) as f:
        log = f.read()
    assert "cloud c: PUT" in log  # debug: requests are logged, by whoever makes them
    for text in (shown, log):
        assert "test-secret-5a1f" not in text


def test_cloud_of_a_storage_changes_only_with_nothing_on_it(repo, backend):
    db = open_db(repo)
    setup_cloud(db, backend)
    db.write(events(0, 10))
    db.execute("REFRESH PARTITION 0")
    with pytest.raises(monotone.MonotoneError, match="still on the cloud"):
        db.execute("ALTER STORAGE t SET (cloud '')")
    db.execute("DOWNLOAD PARTITION 0")
    db.execute("DROP PARTITION 0 ON CLOUD")
    db.execute("ALTER STORAGE t SET (cloud '')")
    assert places(db) == {0: (True, False)}
    with pytest.raises(monotone.MonotoneError, match="no associated cloud"):
        db.execute("UPLOAD PARTITION 0")
    db.execute("ALTER STORAGE t SET (cloud 'c')")  # local partitions may stay
    db.execute("UPLOAD PARTITION 0")
    assert places(db) == {0: (True, True)}
    assert read_all(db) == [(e.id, e.key, e.value) for e in events(0, 10)]
    db.close()


def test_manifest_names_what_is_in_the_cloud_and_no_key(repo, backend):
    db = open_db(repo)
    uuid = setup_cloud(db, backend, "encryption 'aes'")
    shown = json.loads(db.execute("SHOW STORAGE t"))
    assert backend.manifest(repo, uuid)["partitions"] == []  # written when attached
    db.write(events(0, 3 * STEP))
    db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {3 * STEP}")
    db.execute(f"DROP PARTITION {STEP}")
    manifest = backend.manifest(repo, uuid)
    parts = json.loads(db.execute("SHOW PARTITIONS"))
    assert [(p["min"], p["max"], p["events"], p["size"]) for p in manifest["partitions"]] == \
        [(p["min"], p["max"], p["events"], p["size"]) for p in parts]
    assert manifest["encrypted"] is True and manifest["uuid"] == uuid
    key = json.loads(open(os.path.join(repo, "config.json")).read())
    key = next(s["encryption_key"] for s in key["storages"] if s["name"] == "t")
    assert key and key not in json.dumps(manifest)
    url = json.loads(db.execute("SHOW STORAGE t"))["manifest"]
    assert url.endswith("/manifest.json") and uuid in url and "manifest" not in shown["config"]
    db.close()
