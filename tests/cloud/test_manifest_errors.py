"""A reader pointed at a manifest URL it cannot read (monotone.dask.read,
offline.from_manifest) gets a MonotoneError that says which case it is, names
the URL or bucket and shows no secret: no credentials, credentials refused, no
such bucket, an object that is not a manifest, a URL that names no object, an
endpoint refusing connections or never answering (both within a deadline).

All against moto's S3 server (conftest.py), with nothing of botocore mocked.
"""
from __future__ import annotations

import io
import json
import random
import socket
import time

import pytest

from cloud.clouds import ACCESS, SECRET
from monotone import offline
from monotone.cloud import manifest
from monotone.errors import MonotoneError
from monotone.scripts.s3_server import S3Server

BUCKET, PREFIX = "manifest-errors", "storage"
WRONG_SECRET = "wrong-secret-93c1e7"
DEADLINE = 20  # seconds a failed read may take (4 attempts at most, with backoff)
# what botocore reads credentials from, besides the options
AWS_CREDENTIALS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                   "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                   "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                   "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
                   "AWS_ROLE_ARN"]


def with_dask(url: str, options: dict):
    mdask = pytest.importorskip("monotone.dask")
    pytest.importorskip("dask.dataframe")
    return mdask.read(url, storage_options=options)


def with_offline(url: str, options: dict):
    return offline.from_manifest(url, options)


READERS = pytest.mark.parametrize("read", [with_dask, with_offline], ids=["dask", "offline"])


def refused(read, url: str, options: dict) -> str:
    """The message of the MonotoneError read(url, options) raises, checked for secrets."""
    with pytest.raises(MonotoneError) as e:
        read(url, options)
    message = str(e.value)
    assert SECRET not in message and WRONG_SECRET not in message, message
    return message


def url_of(name: str, bucket: str = BUCKET) -> str:
    return f"s3://{bucket}/{PREFIX}/{name}"


@pytest.fixture
def bucket(s3):
    """The bucket, empty, and a way to put an object in it: put(name, data) -> its URL."""
    import boto3
    client = boto3.client("s3", endpoint_url=s3.url, aws_access_key_id=ACCESS,
                          aws_secret_access_key=SECRET, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)

    def put(name: str, data: bytes) -> str:
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}", Body=data)
        return url_of(name)
    return put


@pytest.fixture
def options(s3) -> dict:
    return {"key": ACCESS, "secret": SECRET, "endpoint_url": s3.url}


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """An environment where botocore finds no credentials: no variables, empty
    credentials and config files, no instance metadata."""
    for name in AWS_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty-aws-file"
    empty.write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_with_auth(monkeypatch):
    """A second moto server that checks credentials (it knows none of ours)."""
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


@READERS
def test_missing_credentials_say_how_to_give_them(read, bucket, s3, no_aws_credentials):
    url = bucket(manifest.NAME, b"{}")
    message = refused(read, url, {"endpoint_url": s3.url})
    assert "no credentials" in message and url in message, message
    assert "storage_options" in message and "AWS_ACCESS_KEY_ID" in message, message


def test_a_key_without_its_secret_is_missing_credentials(bucket, s3, no_aws_credentials):
    url = bucket(manifest.NAME, b"{}")
    message = refused(with_offline, url, {"key": ACCESS, "endpoint_url": s3.url})
    assert "no credentials" in message and "storage_options" in message, message


def test_wrong_credentials_are_refused(s3_with_auth):
    url = url_of(manifest.NAME)
    start = time.monotonic()
    message = refused(with_offline, url, {"key": ACCESS, "secret": WRONG_SECRET,
                                          "endpoint_url": s3_with_auth.url})
    assert time.monotonic() - start < DEADLINE
    assert "credentials were refused" in message and url in message, message


def test_a_missing_bucket_says_so(bucket, options, read=with_offline):
    url = url_of(manifest.NAME, bucket="no-such-bucket")
    message = refused(read, url, options)
    assert "bucket 'no-such-bucket' does not exist" in message and url in message, message


def parquet() -> bytes:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    out = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(100))}), out)
    return out.getvalue()


NOT_MANIFESTS = [
    ("empty", lambda: b""),
    ("random bytes", lambda: random.Random(3).randbytes(512)),
    ("json of another shape", lambda: json.dumps({"rows": [1, 2, 3]}).encode()),
    ("json not an object", lambda: b'"monotone-manifest"'),
    ("parquet", parquet),
    ("larger than a manifest may be", lambda: json.dumps({"pad": "x" * 4096}).encode()),
]


@pytest.mark.parametrize("name, data", NOT_MANIFESTS, ids=[row[0] for row in NOT_MANIFESTS])
def test_an_object_that_is_not_a_manifest_says_so(bucket, options, monkeypatch, name, data):
    monkeypatch.setattr(manifest, "MAX_BYTES", 1024)
    url = bucket("object", data())
    message = refused(with_offline, url, options)
    assert f"{url}: not a monotone manifest" in message, message


@pytest.mark.parametrize("url", [f"s3://{BUCKET}", f"s3://{BUCKET}/", url_of("")])
def test_a_url_that_names_no_object_says_so(bucket, options, url):
    message = refused(with_offline, url, options)
    assert "names no object" in message and url in message, message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_fails_within_its_deadline(read=with_offline):
    url = url_of(manifest.NAME)
    endpoint = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    message = refused(read, url, {"key": ACCESS, "secret": SECRET, "endpoint_url": endpoint})
    assert time.monotonic() - start < DEADLINE
    assert "the endpoint cannot be reached" in message and url in message, message


def test_a_silent_endpoint_fails_within_its_deadline():
    """An endpoint that takes connections and never answers: each attempt ends at
    the read timeout the options give, and there are few."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections complete in the backlog, never answered
        endpoint = "http://127.0.0.1:%d" % silent.getsockname()[1]
        url = url_of(manifest.NAME)
        start = time.monotonic()
        message = refused(with_offline, url, {
            "key": ACCESS, "secret": SECRET, "endpoint_url": endpoint,
            "config_kwargs": {"connect_timeout": 0.25, "read_timeout": 0.25}})
        assert time.monotonic() - start < DEADLINE
    assert "after 4 attempts" in message and "timeout" in message.lower(), message
    assert url in message, message
