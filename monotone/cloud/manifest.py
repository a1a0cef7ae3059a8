"""A cloud storage's manifest: one object, manifest.json, beside its partition
files, naming those in the cloud (min, max, object, size, events, regions, lsn),
so a reader elsewhere (monotone.dask) finds them without the repository.
The coordinator writes it (workers/cloud_tier.py); offline.py reads it.

A manifest is read from a store anyone with write access to the bucket could
have written, so decode() trusts nothing: it is parsed into typed records,
every number is an integer in range, an entry's object is the plain name of a
partition file (no path of any kind), its regions are what its size can hold,
and the whole is bounded before anything is sized by it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import MonotoneError
from ..format.rows import MAX_ID

NAME = "manifest.json"
FORMAT = "monotone-manifest"
VERSION = 1
MAX_BYTES = 64 * 1024 * 1024  # of the manifest object: more is refused unread
MAX_REGIONS = 2**24           # in all the files it names (2 TiB at 128 KiB regions)
REGION_BYTES = 72             # a region costs a file at least its index entry
_FIELDS = ("min", "max", "size", "events", "regions", "lsn", "created", "refreshes")


class BadManifest(MonotoneError):
    """A manifest that is not one this version can read."""


@dataclass(frozen=True)
class Entry:
    """One partition file of the storage, in its cloud."""
    min: int
    max: int
    object: str
    size: int
    events: int
    regions: int
    lsn: int = 0
    created: int = 0
    refreshes: int = 0


@dataclass(frozen=True)
class Manifest:
    storage: str
    uuid: str
    compression: str
    encrypted: bool
    crc: bool
    partitions: tuple[Entry, ...]


def encode(storage, parts: list[dict]) -> bytes:
    """The manifest of storage (a settings.Storage) naming parts."""
    return json.dumps({"format": FORMAT, "version": VERSION, "storage": storage.name,
                       "uuid": storage.uuid, "compression": storage.compression,
                       "encrypted": bool(storage.encryption), "crc": storage.crc,
                       "partitions": parts}, indent=1).encode()


def decode(data: bytes, where: str) -> Manifest:
    """A manifest read back; BadManifest, naming where, for anything else."""
    if len(data) > MAX_BYTES:
        raise BadManifest(f"{where}: not a monotone manifest: more than {MAX_BYTES} bytes "
                          "(a larger manifest is refused)")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadManifest(f"{where}: not a monotone manifest")
    version = doc.get("version")
    if not _integer(version) or not 1 <= version <= VERSION:
        raise BadManifest(f"{where}: manifest version {version!r} is not one this monotone "
                          f"reads (1 to {VERSION})")
    items = doc.get("partitions")
    if not isinstance(items, list):
        raise BadManifest(f"{where}: 'partitions' is not a list")
    entries = tuple(_entry(item, f"{where}: partition {n}") for n, item in enumerate(items))
    total = sum(e.regions for e in entries)
    if total > MAX_REGIONS:
        raise BadManifest(f"{where}: names {total} regions, more than {MAX_REGIONS} "
                          "are refused")
    texts = {name: doc.get(name, "") for name in ("storage", "uuid", "compression")}
    for name, value in texts.items():
        if not isinstance(value, str):
            raise BadManifest(f"{where}: '{name}' is not a string")
    return Manifest(texts["storage"], texts["uuid"], texts["compression"],
                    doc.get("encrypted") is True, doc.get("crc") is not False, entries)


def _entry(item, where: str) -> Entry:
    if not isinstance(item, dict):
        raise BadManifest(f"{where}: not an object")
    values = {}
    for name in _FIELDS:
        value = item.get(name, 0)
        if not _integer(value) or not 0 <= value <= MAX_ID:
            raise BadManifest(f"{where}: '{name}' is not an integer in [0, 2**64-1]")
        values[name] = value
    if values["min"] > values["max"]:
        raise BadManifest(f"{where}: min {values['min']} is above max {values['max']}")
    expected = f"{values['min']:020d}"  # a partition file's name: its min, nothing else
    if item.get("object") != expected:
        raise BadManifest(f"{where}: object {item.get('object')!r} is not the partition's "
                          f"file ({expected})")
    if values["regions"] > values["size"] // REGION_BYTES:
        raise BadManifest(f"{where}: {values['regions']} regions do not fit in "
                          f"{values['size']} bytes")
    return Entry(object=expected, **values)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
