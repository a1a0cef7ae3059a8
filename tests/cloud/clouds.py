"""Clouds for the tests: a real S3 server (moto's, a subprocess on 127.0.0.1),
the mock cloud, and fsspec's `file` protocol.

The S3 server (monotone.scripts.s3_server) runs once per session and is
reset before each test that uses it.
"""
from __future__ import annotations

import os

from monotone.scripts.s3_server import S3Server

ACCESS, SECRET = "test-access", "test-secret-5a1f"


class Backend:
    """A cloud of one kind for a test: the CREATE CLOUD options, and what is in it."""

    def __init__(self, kind: str, options: str, server: S3Server | None, root: str = "") -> None:
        self.kind = kind
        self.options = options
        self.server = server
        self.root = root

    def create(self, db, name: str = "c") -> None:
        db.execute(f"CREATE CLOUD {name} ({self.options})")

    def objects(self, base: str, storage_uuid: str) -> list[str]:
        """Names of the objects of a storage, listed with the backend's own tools."""
        if self.kind == "s3":
            import boto3
            s3 = boto3.client("s3", endpoint_url=self.server.url, aws_access_key_id=ACCESS,
                              aws_secret_access_key=SECRET, region_name="us-east-1")
            try:
                found = s3.list_objects_v2(Bucket=storage_uuid).get("Contents", [])
            except s3.exceptions.NoSuchBucket:
                return []
            return sorted(o["Key"] for o in found)
        if self.kind == "mock":
            where = os.path.join(base, storage_uuid, "mock")
        else:
            where = os.path.join(self.root, storage_uuid)
        return sorted(os.listdir(where)) if os.path.isdir(where) else []
