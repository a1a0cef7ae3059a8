"""Cloud types and their backends: the only place that knows the type names.

  s3      an S3-compatible endpoint, through s3fs (s3.py)
  mock    a local directory every process sees (mock.py)
  <proto> any other fsspec protocol by name: file, gcs, az, sftp, ...
          (filesystem.py)
`memory` is refused: other processes cannot see it.
"""
from __future__ import annotations

from ..errors import MonotoneError
from ..settings import CloudSettings, Place
from .base import Cloud
from .filesystem import FilesystemCloud
from .mock import MockCloud
from .s3 import S3Cloud

BACKENDS: dict[str, type[Cloud]] = {"s3": S3Cloud, "mock": MockCloud}
REFUSED = {"memory": "lives in one process; the coordinator, workers and readers are "
                     "several: use 'mock' or 'file' for a local cloud"}


def backend(kind: str) -> type[Cloud]:
    """The backend of a cloud type (any name not listed: an fsspec protocol)."""
    return BACKENDS.get(kind, FilesystemCloud)


def check(settings: CloudSettings) -> None:
    """A cloud's options make sense, and what it needs is installed."""
    kind, name = settings.type, settings.name
    if not kind:
        raise MonotoneError(f"cloud '{name}': unknown cloud type")
    if kind in REFUSED:
        raise MonotoneError(f"cloud '{name}': type '{kind}' {REFUSED[kind]}")
    backend(kind).check(settings)


def open_cloud(settings: CloudSettings, uuid: str, directory: str) -> Cloud:
    """A storage's objects in a cloud (uuid, directory: the storage's)."""
    cls = backend(settings.type)
    return cls(settings, cls.root_of(settings, uuid, directory))


def objects_of(place: Place) -> Cloud | None:
    """A storage's objects in its cloud (None: it has no cloud)."""
    if place.cloud is None:
        return None
    return open_cloud(place.cloud, place.uuid, place.directory)
