"""A cloud storage's manifest: which partition files are in its cloud (min, max,
object, size, events, regions, lsn), so a reader elsewhere (monotone.dask)
finds them without the repository. The coordinator writes it
(workers/cloud_tier.py, through publish() in an upload worker); offline.py
reads it.

Versions and a pointer. Each manifest is a new object that is never changed,
manifest.<generation>.json, created only if there is none of its name (a
conditional PUT: two writers cannot both make one generation); then
manifest.json, the pointer, is rewritten to name it. A reader reads the
pointer, then the version it names: one consistent list, whatever is written
meanwhile. Partition objects never change either (their name is their min
and a digest of their index, partition/cloud_file.py), and one that leaves
the manifest is removed only after the cloud's removal_delay, so a reader of
a version finds every object it names for at least that long. The last
VERSIONS versions are kept; a version given by URL is read as it is.

A manifest is read from a store anyone with write access to the bucket could
have written, so decode() trusts nothing: it is parsed into typed records,
every number is an integer in range, an entry's object is the plain name of a
partition file (no path of any kind), its regions are what its size can hold,
and the whole is bounded before anything is sized by it.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace

from ..errors import MonotoneError
from ..format.rows import MAX_ID
from .base import ObjectMissing

log = logging.getLogger("monotone")

NAME = "manifest.json"  # the pointer
FORMAT = "monotone-manifest"
POINTER = "monotone-manifest-pointer"
VERSION = 1
VERSIONS = 16      # manifest versions kept (a reader needs its own only between two GETs)
GENERATIONS = 64   # generations tried past the pointer's for a version not yet made
MAX_POINTER = 4096
_VERSION_NAME = re.compile(r"manifest\.(\d{20})\.json")
_OBJECT = re.compile(r"(\d{20})\.[0-9a-f]{16}")  # a partition's object: min.digest
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
    repository: str = ""  # the repository's uuid: its storages' manifests share it
    generation: int = 0   # the version's, when read through the pointer


def version_name(generation: int) -> str:
    return f"manifest.{generation:020d}.json"


def is_manifest(name: str) -> bool:
    """Whether an object's name is the pointer's or a manifest version's."""
    return name == NAME or _VERSION_NAME.fullmatch(name) is not None


def encode_pointer(generation: int) -> bytes:
    return json.dumps({"format": POINTER, "version": VERSION, "generation": generation,
                       "manifest": version_name(generation)}).encode()


def pointed(data: bytes, where: str) -> str | None:
    """The version a pointer names (None: the object is a manifest itself, a version
    read by its own URL); BadManifest for anything else."""
    if len(data) > MAX_POINTER:
        return None  # too big to be a pointer: decode() says what it is
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != POINTER:
        return None
    name = doc.get("manifest")
    if not isinstance(name, str) or not _VERSION_NAME.fullmatch(name) or \
            doc.get("generation") != int(name.split(".")[1]):
        raise BadManifest(f"{where}: the manifest pointer names no manifest version "
                          f"({str(name)[:80]!r})")
    return name


def generation(data: bytes | None) -> int:
    """The generation a pointer names (0: none, or not a pointer)."""
    try:
        name = pointed(data, "") if data is not None else None
    except BadManifest:
        return 0
    return int(name.split(".")[1]) if name else 0


def current(cloud, name: str) -> int:
    """The generation the pointer at name names now (0: none, or name is a version)."""
    try:
        return generation(cloud.read(name, 0, MAX_POINTER + 1))
    except ObjectMissing:
        return 0


def publish(cloud, content: bytes, previous: bool = False,
            after: int = 0) -> tuple[int, list[str] | None]:
    """Write a manifest as the next version, then point to it: its generation, and
    (previous) the objects the version it replaced named (None: not asked, or not
    known). after: the generation the writer last made (0: not known, the pointer
    is asked); when a version past it is there already (a crash may have left one
    past the pointer), the pointer is asked and the next free one taken. The
    versions at or below VERSIONS back go, best effort (those a crash left past a
    pointer, when their turn comes)."""
    now = after or current(cloud, NAME)
    named = None
    if previous and now:
        try:
            old = decode(cloud.read(version_name(now), 0, MAX_BYTES + 1), version_name(now))
            named = [e.object for e in old.partitions]
        except MonotoneError as e:  # gone or damaged: what it named is not known
            log.warning("the manifest version before this one could not be read: %s", e)
    elif previous:
        named = []  # no version before: nothing was named
    gen = now + 1
    if not cloud.create(version_name(gen), content):
        if after:  # the writer's own count fell behind: as the pointer says
            now = max(now, current(cloud, NAME))
        for gen in range(max(gen + 1, now + 1), now + 1 + GENERATIONS):
            if cloud.create(version_name(gen), content):
                break
        else:
            raise BadManifest(f"{cloud.where()}: manifest versions {now + 1} to "
                              f"{now + GENERATIONS} are there already, past the pointer's "
                              f"{now}: another writer?")
    cloud.write(NAME, encode_pointer(gen))
    for old_gen in range(max(1, now - VERSIONS + 1), gen - VERSIONS + 1):
        try:
            cloud.remove(version_name(old_gen))
        except MonotoneError as e:
            log.warning("an old manifest version stays: %s", e)
    return gen, named


def read(cloud, name: str, where: str, attempts: int = 3) -> Manifest:
    """The manifest at name: the version a pointer there names, or a version itself.
    A version gone between the two reads (written past, VERSIONS times) is looked
    for again through the pointer."""
    for _ in range(attempts):
        data = cloud.read(name, 0, MAX_BYTES + 1)  # bounded: a larger object is refused
        version = pointed(data, where)
        if version is None:
            return decode(data, where)
        base = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
        try:
            data = cloud.read(base + version, 0, MAX_BYTES + 1)
        except ObjectMissing:
            continue
        return replace(decode(data, f"{where} ({version})"),
                       generation=int(version.split(".")[1]))
    raise BadManifest(f"{where}: the manifest changed faster than it could be read: "
                      "read again")


def encode(storage, parts: list[dict], repository: str = "") -> bytes:
    """The manifest of storage (a settings.Storage) of a repository (its uuid) naming
    parts."""
    return json.dumps({"format": FORMAT, "version": VERSION, "repository": repository,
                       "storage": storage.name,
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
    texts = {name: doc.get(name, "") for name in ("storage", "uuid", "compression",
                                                  "repository")}
    for name, value in texts.items():
        if not isinstance(value, str):
            raise BadManifest(f"{where}: '{name}' is not a string")
    return Manifest(texts["storage"], texts["uuid"], texts["compression"],
                    doc.get("encrypted") is True, doc.get("crc") is not False, entries,
                    texts["repository"])


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
    name = item.get("object")  # its min and a digest, nothing else (no path of any kind)
    found = _OBJECT.fullmatch(name) if isinstance(name, str) else None
    if found is None or int(found.group(1)) != values["min"]:
        raise BadManifest(f"{where}: object {str(name)[:80]!r} is not a partition object of "
                          f"min {values['min']} ({values['min']:020d}.<digest>)")
    if values["regions"] > values["size"] // REGION_BYTES:
        raise BadManifest(f"{where}: {values['regions']} regions do not fit in "
                          f"{values['size']} bytes")
    return Entry(object=name, **values)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
