"""The typed settings: the config file read and written again byte for byte, and
the records that travel as JSON (to clients, in jobs, in offline parts) come
back as they left."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from monotone.errors import MonotoneError
from monotone.offline import Part
from monotone.partition.merger import MergeJob
from monotone.settings import (
    ClientConfig,
    CloudSettings,
    ConfigFile,
    Place,
    Storage,
    config_path,
    read_config,
    write_config,
)
from monotone.workers.transfer import UPLOAD, TransferJob

CLOUD = CloudSettings("c", "file", url="/tmp/x", options={"auto_mkdir": True})
PLACE = Place("/r/u", "u", "", 1 << 20, True, CLOUD)


def test_the_config_file_comes_back_byte_for_byte(db, repo, tmp_path):
    db.execute("CREATE CLOUD c (type 'mock')")
    db.execute("CREATE STORAGE s (cloud 'c', encryption 'aes', refresh_wm 1000)")
    db.execute("ALTER PIPELINE SET s (events 10), main")
    db.close()
    stored = read_config(config_path(repo))
    assert [s.name for s in stored.storages] == ["main", "s"]
    assert stored.cloud("c") == CloudSettings("c", "mock") and stored.pipeline[0].events == 10
    again = str(tmp_path / "again.json")
    write_config(again, stored)
    with open(config_path(repo), "rb") as a, open(again, "rb") as b:
        assert a.read() == b.read()


def test_records_are_frozen_and_changed_by_replace():
    storage = Storage("s")
    with pytest.raises(AttributeError):
        storage.name = "t"
    assert replace(storage, sync=False).sync is False and storage.sync is True
    keyed = Storage("s", uuid="u", path="p", encryption_key="k", refresh_wm=7)
    assert keyed.place("/r", CLOUD) == Place("/r/p/u", "u", "", 7, True, CLOUD)
    assert replace(keyed, encryption="aes").place("/r", None).key == "k"


def test_fields_that_do_not_fit_name_themselves():
    with pytest.raises(MonotoneError, match="unknown or missing fields"):
        ConfigFile.from_json({"storages": [{"name": "main", "colour": "red"}]})
    with pytest.raises(ValueError, match="not a JSON object"):
        ConfigFile.from_json([1, 2])


def test_what_travels_comes_back_as_it_left():
    def through_json(data: dict) -> dict:
        return json.loads(json.dumps(data))

    assert Place.from_json(through_json(PLACE.to_json())) == PLACE
    client = ClientConfig.from_json(through_json({"wal": True, "storages": {"0": PLACE.to_json()}}))
    assert client == ClientConfig({"wal": True}, {0: PLACE})
    job = TransferJob(UPLOAD, 5, PLACE, True, ["upload"])
    assert TransferJob.from_json(through_json(job.to_json())) == job
    merge = MergeJob(1, 0, 2, 3, None, "", PLACE, "lz4", 0, 1024, "", True, True, {"min": 0})
    assert MergeJob.from_json(through_json(merge.to_json())) == merge
    part = Part(0, 9, "00000000000000000000", 100, 1, place=PLACE)
    assert Part.from_json(through_json(part.to_json())) == part
