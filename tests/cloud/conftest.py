"""Fixtures: the S3 server (one per session, reset per test) and `backend`, which
runs a test against every kind of cloud (clouds.py)."""
from __future__ import annotations

import os

import pytest

from cloud.clouds import ACCESS, SECRET, Backend, S3Server
from cloud.faultproxy import fault_proxy  # noqa: F401 - a fixture for every cloud test


@pytest.fixture(scope="session")
def s3_server():
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture(params=["s3", "mock", "file"])
def backend(request, tmp_path):
    """Each test using it runs against every kind of cloud."""
    kind = request.param
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        server.reset()
        yield Backend("s3", f"type 's3', url '{server.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}'", server)
    elif kind == "mock":
        yield Backend("mock", "type 'mock'", None)
    else:
        root = str(tmp_path / "file-cloud")
        os.makedirs(root)
        yield Backend("file", f"type 'file', url '{root}'", None, root)


@pytest.fixture
def s3(s3_server):
    """The S3 server, reset."""
    s3_server.reset()
    return s3_server
