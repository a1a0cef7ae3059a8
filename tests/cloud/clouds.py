"""Clouds for the tests: a real S3 server (moto's, a subprocess on 127.0.0.1),
the mock cloud, and fsspec's `file` protocol.

The S3 server (monotone.scripts.s3_server) runs once per session and is
reset before each test that uses it.
"""
from __future__ import annotations

import json
import os

from monotone.scripts.s3_server import S3Server

ACCESS, SECRET = "test-access", "test-secret-5a1f"


class Backend:
    """A cloud of one kind for a test: the CREATE CLOUD options, and what is in it.

    Retired objects are removed at once (removal_delay 0) unless the options say
    otherwise: most tests look at what a command leaves in the cloud."""

    def __init__(self, kind: str, options: str, server: S3Server | None, root: str = "") -> None:
        self.kind = kind
        self.options = options if "removal_delay" in options else \
            f"{options}, removal_delay 0"
        self.server = server
        self.root = root

    def create(self, db, name: str = "c") -> None:
        db.execute(f"CREATE CLOUD {name} ({self.options})")

    def _s3(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.server.url, aws_access_key_id=ACCESS,
                            aws_secret_access_key=SECRET, region_name="us-east-1")

    def _where(self, base: str, storage_uuid: str) -> str:
        if self.kind == "mock":
            return os.path.join(base, storage_uuid, "mock")
        return os.path.join(self.root, storage_uuid)

    def all_objects(self, base: str, storage_uuid: str) -> list[str]:
        """Names of every object of a storage, listed with the backend's own tools."""
        if self.kind == "s3":
            s3 = self._s3()
            try:
                found = s3.list_objects_v2(Bucket=storage_uuid).get("Contents", [])
            except s3.exceptions.NoSuchBucket:
                return []
            return sorted(o["Key"] for o in found)
        where = self._where(base, storage_uuid)
        return sorted(os.listdir(where)) if os.path.isdir(where) else []

    def partition_objects(self, base: str, storage_uuid: str) -> list[str]:
        """Names of the partition objects of a storage (<min>.<digest>; the manifest
        and its versions left out)."""
        return [n for n in self.all_objects(base, storage_uuid)
                if not n.startswith("manifest.")]

    def objects(self, base: str, storage_uuid: str) -> list[str]:
        """The partitions a storage has objects of, by their file name (<min>), once
        per object."""
        return [n.split(".")[0] for n in self.partition_objects(base, storage_uuid)]

    def read(self, base: str, storage_uuid: str, name: str) -> bytes:
        if self.kind == "s3":
            return self._s3().get_object(Bucket=storage_uuid, Key=name)["Body"].read()
        with open(os.path.join(self._where(base, storage_uuid), name), "rb") as f:
            return f.read()

    def manifest(self, base: str, storage_uuid: str) -> dict | None:
        """The storage's manifest as the backend holds it: the version its pointer
        names (None: there is none)."""
        if "manifest.json" not in self.all_objects(base, storage_uuid):
            return None
        pointer = json.loads(self.read(base, storage_uuid, "manifest.json"))
        return json.loads(self.read(base, storage_uuid, pointer["manifest"]))
