"""Uploading a partition a refresh appended to: the bytes the cloud already has are
copied within it (S3 multipart copy), only the appended ones cross the network,
and the object is byte for byte the local file. Where the object is not the
file's beginning any more, the file is sent whole."""
from __future__ import annotations

import json
from contextlib import contextmanager

import boto3
import pytest

from cloud.clouds import ACCESS, SECRET
from cloud.faultproxy import s3_error
from cloud.test_conformance import events, open_db, places
from monotone.errors import MonotoneError
from monotone.scripts.latency_proxy import LatencyProxy

N = 60_000        # events of 120 bytes, uncompressed: a 7 MiB file, past S3's 5 MiB part
MORE = 500
STEP = 1 << 20    # one partition holds them all


def _client(url: str):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ACCESS,
                        aws_secret_access_key=SECRET, region_name="us-east-1")


@pytest.fixture
def proxied(s3):
    """The S3 server behind a proxy that counts the bytes sent to it."""
    with LatencyProxy(s3.url) as proxy:
        yield proxy


@contextmanager
def _open(repo, proxy=None, drop_local: bool = False):
    """The repository, with a storage `t` on the proxied S3 server when proxy is given
    (made at the first open); closed at the end, whatever happened."""
    db = open_db(repo, interval=STEP)
    try:
        uuid = None
        if proxy is not None:
            db.execute(f"CREATE CLOUD c (type 's3', url '{proxy.url}', "
                       f"access_key '{ACCESS}', secret_key '{SECRET}', removal_delay 0)")
            db.execute("CREATE STORAGE t (cloud 'c', compression 'none', region_size 65536, "
                       f"cloud_drop_local {'true' if drop_local else 'false'})")
            db.execute("ALTER PIPELINE SET t")
            uuid = json.loads(db.execute("SHOW STORAGE t"))["config"]["uuid"]
        yield db, uuid
    finally:
        db.close()


def _sent(proxy, step) -> int:
    before = proxy.counts()["bytes_up"]
    step()
    return proxy.counts()["bytes_up"] - before


def _name(url: str, uuid: str) -> str:
    """The name of partition 0's object, as the storage's manifest says."""
    client = _client(url)
    pointer = json.loads(client.get_object(Bucket=uuid, Key="manifest.json")["Body"].read())
    version = json.loads(client.get_object(Bucket=uuid, Key=pointer["manifest"])["Body"].read())
    [entry] = version["partitions"]
    return entry["object"]


def _object(url: str, uuid: str) -> bytes:
    return _client(url).get_object(Bucket=uuid, Key=_name(url, uuid))["Body"].read()


def _partition_objects(url: str, uuid: str) -> list[str]:
    listed = _client(url).list_objects_v2(Bucket=uuid).get("Contents", [])
    return [o["Key"] for o in listed if not o["Key"].startswith("manifest.")]


def _local(repo, uuid) -> bytes:
    with open(f"{repo}/{uuid}/{0:020d}", "rb") as f:
        return f.read()


def test_appended_partition_sends_only_what_was_appended(repo, proxied, s3):
    with _open(repo, proxied) as (db, uuid):
        db.write(events(0, N))
        whole = _sent(proxied, lambda: db.execute("REFRESH PARTITION 0"))
        size = len(_local(repo, uuid))
        assert size > 5 << 20 and whole > size  # the first upload sends the file

        db.write(events(N, N + MORE))
        appended = _sent(proxied, lambda: db.execute("REFRESH PARTITION 0"))
        grown = _local(repo, uuid)
        assert len(grown) > size
        assert appended < (len(grown) - size) + (1 << 20)  # the new bytes and requests
        assert _object(s3.url, uuid) == grown
        assert places(db) == {0: (True, True)}
        assert _partition_objects(s3.url, uuid) == [_name(s3.url, uuid)]  # the old one went

    with _open(repo) as (db, _):
        db.execute("DROP PARTITION 0 ON STORAGE")  # the cloud copy is all there is
        assert [e.id for e in db.cursor()] == list(range(N + MORE))


def test_an_object_that_changed_is_replaced_whole(repo, proxied, s3):
    with _open(repo, proxied) as (db, uuid):
        db.write(events(0, N))
        db.execute("REFRESH PARTITION 0")
        object_ = _object(s3.url, uuid)
        # someone else's bytes of the same size where the index was
        forged = object_[:-4096] + bytes(4096)
        _client(s3.url).put_object(Bucket=uuid, Key=_name(s3.url, uuid), Body=forged)

        db.write(events(N, N + MORE))
        sent = _sent(proxied, lambda: db.execute("REFRESH PARTITION 0"))
        grown = _local(repo, uuid)
        assert sent > len(grown)  # sent whole
        assert _object(s3.url, uuid) == grown


def test_offloaded_partition_sends_only_what_was_appended(repo, proxied, s3):
    """cloud_drop_local: the local copy goes after each upload, so the refresh
    downloads the file first; the upload after it still sends only the append."""
    with _open(repo, proxied, drop_local=True) as (db, uuid):
        db.write(events(0, N))
        db.execute("REFRESH PARTITION 0")
        assert places(db) == {0: (False, True)}
        size = len(_object(s3.url, uuid))
        db.write(events(N, N + MORE))
        sent = _sent(proxied, lambda: db.execute("REFRESH PARTITION 0"))
        assert places(db) == {0: (False, True)}
        grown = len(_object(s3.url, uuid))
        assert size < grown and sent < (grown - size) + (1 << 20)
        got = list(db.cursor())
        assert [e.id for e in got] == list(range(N + MORE))
        assert got[-1].value == events(N + MORE - 1, N + MORE)[0].value


def test_dropped_partition_removes_a_kept_object(repo, proxied, s3):
    """A refresh that fails after keeping the object leaves it behind its marker:
    DROP PARTITION removes it too."""
    with _open(repo, proxied) as (db, uuid):
        db.write(events(0, N))
        db.execute("REFRESH PARTITION 0")
        db.execute("SET error_refresh_1 TO true")
        db.write(events(N, N + MORE))
        with pytest.raises(MonotoneError, match="refresh"):
            db.execute("REFRESH PARTITION 0")
        db.execute("SET error_refresh_1 TO false")
        assert places(db) == {0: (True, False)}
        assert len(_partition_objects(s3.url, uuid)) == 1  # kept, behind its marker
        db.execute("DROP PARTITION 0")
        assert _partition_objects(s3.url, uuid) == []


def test_removal_aborts_an_upload_left_unfinished(repo, proxied, s3):
    """A crash in the middle of a multipart upload leaves its parts in the bucket:
    the object's removal (recovery's, or a drop's) aborts them."""
    with _open(repo, proxied) as (db, uuid):
        db.write(events(0, 100))
        db.execute("REFRESH PARTITION 0")
        client, key = _client(s3.url), _name(s3.url, uuid)
        left = client.create_multipart_upload(Bucket=uuid, Key=key)["UploadId"]
        client.upload_part(Bucket=uuid, Key=key, UploadId=left, PartNumber=1, Body=b"x" * 100)
        assert client.list_multipart_uploads(Bucket=uuid).get("Uploads")
        db.execute("DROP PARTITION 0 ON CLOUD")
        assert not client.list_multipart_uploads(Bucket=uuid).get("Uploads")


def test_an_endpoint_without_part_copies_gets_the_file_whole(repo, fault_proxy, s3):
    """An S3-compatible store that refuses UploadPartCopy: the upload after an append
    is sent whole, as on any other cloud, and nothing is lost or left behind."""
    refused = []

    def refuse_copies(ex):
        if ex.headers.get("x-amz-copy-source"):
            refused.append(ex.path)
            ex.body()
            ex.reply(s3_error(501, "NotImplemented", "part copies are not supported"))
        else:
            ex.reply(ex.forward())

    with _open(repo, fault_proxy) as (db, uuid):
        db.write(events(0, N))
        db.execute("REFRESH PARTITION 0")
        fault_proxy.set(refuse_copies, method="PUT")
        db.write(events(N, N + MORE))
        db.execute("REFRESH PARTITION 0")
        assert refused
        assert _object(s3.url, uuid) == _local(repo, uuid)
        assert places(db) == {0: (True, True)}
        assert not _client(s3.url).list_multipart_uploads(Bucket=uuid).get("Uploads")
