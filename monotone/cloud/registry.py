"""Cloud types and their backends: the only place that knows the type names.

  s3      an S3-compatible endpoint, through s3fs (s3.py)
  mock    a local directory every process sees (mock.py)
  <proto> any other fsspec protocol by name: file, gcs, az, sftp, ...
          (filesystem.py)
`memory` is refused: other processes cannot see it. A URL a reader was given
(at_url) is read through its protocol's filesystem; s3:// through s3.py's
S3UrlCloud, bounded as the engine's own S3 requests are.
"""
from __future__ import annotations

from .. import redact
from ..errors import MonotoneError
from ..settings import CloudSettings, Place
from .base import Cloud
from .filesystem import FilesystemCloud, need_fsspec
from .mock import MockCloud
from .s3 import S3Cloud, S3UrlCloud

BACKENDS: dict[str, type[Cloud]] = {"s3": S3Cloud, "mock": MockCloud}
URL_BACKENDS: dict[str, type[Cloud]] = {"s3": S3UrlCloud, "s3a": S3UrlCloud}
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


def at_url(url: str, options: dict) -> tuple[Cloud, str]:
    """The object at an fsspec URL a reader was given, opened with options: a cloud
    rooted where it is, and its name there."""
    protocol, path = need_fsspec().core.split_protocol(url)
    root, _, name = url.rpartition("/")
    kind = protocol or "file"
    if not name or (kind in URL_BACKENDS and "/" not in path.strip("/")):
        raise MonotoneError(f"{redact.url(url)}: names no object (give the object's own "
                            "URL, such as s3://bucket/prefix/manifest.json)")
    settings = CloudSettings(redact.url(root), kind, url=root, options=dict(options))
    return URL_BACKENDS.get(kind, FilesystemCloud)(settings, root), name
