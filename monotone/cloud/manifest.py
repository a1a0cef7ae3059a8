"""A cloud storage's manifest: one object, manifest.json, beside its partition
files, naming those in the cloud (min, max, object, size, events, regions, lsn),
so a reader elsewhere (monotone.dask) finds them without the repository.
The coordinator writes it (workers/cloud_tier.py); offline.py reads it."""
from __future__ import annotations

import json

from ..errors import MonotoneError

NAME = "manifest.json"
FORMAT = "monotone-manifest"
VERSION = 1


def encode(storage, parts: list[dict]) -> bytes:
    """The manifest of storage (a settings.Storage) naming parts."""
    return json.dumps({"format": FORMAT, "version": VERSION, "storage": storage.name,
                       "uuid": storage.uuid, "compression": storage.compression,
                       "encrypted": bool(storage.encryption), "crc": storage.crc,
                       "partitions": parts}, indent=1).encode()


def decode(data: bytes, where: str) -> dict:
    """A manifest read back; where names it in errors."""
    try:
        manifest = json.loads(data)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MonotoneError(f"{where}: not a monotone manifest")
    return manifest
