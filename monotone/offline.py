"""Reading partition files with no coordinator: from a repository directory, or
from a cloud storage's manifest, on any machine.

A Part names one partition file and how to reach it (a local path, an object
of a storage's cloud, or an fsspec URL with the options to open it), and a
span of its regions; objects are read through monotone.cloud. read_part
turns it into Rows, one region at a time, keeping ids in [min_id, max_id].
A file is read as the partition its Part names (storage uuid and min): a file
moved from another partition, and with a key a file that is not encrypted for
that storage, is refused (partition/fileformat.py).
Parts are plain data, so they travel to other processes and machines (Dask
workers) as they are.

What a repository directory holds in files is what was refreshed: events
still only in memtables and the WAL are not there until a refresh
(CHECKPOINT) writes them. A manifest names only the partitions whose files
are in the cloud.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .cloud import Cloud, ObjectMissing, at_url, objects_of
from .cloud import manifest as manifests
from .errors import MonotoneError
from .format.crypto import cipher_of
from .format.rows import MAX_ID, Rows, concat
from .partition.cloud_file import AHEAD_REGIONS, TAIL, CloudFile
from .partition.files import CLOUD, committed_size, file_name, parse
from .partition.reader import Identity, Reader
from .settings import CONFIG, Place, config_path, read_config
from .store import LocalFile, ReadHandle

REGIONS_PER_PART = 64  # a big partition is read as several parts of this many regions
RELOCATE = 3  # times a part is looked for again when its partition moved while it was read
LISTINGS = 3  # listings of a repository until no partition was missed by one


@dataclass(frozen=True)
class Part:
    min: int                   # the partition
    max: int
    path: str                  # a local file, an object's name in place's cloud, or its URL
    size: int                  # bytes of the file (0: ask the file)
    regions: int               # regions in the file (0: all of them, in one part)
    first: int = 0             # the span of regions this part reads
    last: int | None = None
    key: str = ""              # the storage's encryption key (hex), if encrypted
    storage: str = ""          # the storage's uuid (an encrypted file is sealed for it)
    place: Place | None = None  # an object: its storage's place (repository) ...
    storage_options: dict = field(default_factory=dict)  # ... or fsspec options (manifest)
    lo: int | None = None      # the ids its span of regions holds, when known (split)
    hi: int | None = None
    origin: str = ""           # the repository directory it was listed in, if any ...
    given_key: str = ""        # ... and the encryption_key its reader was given for it
    manifest: str = ""         # the manifest it was listed in, if any
    repository: str = ""       # the uuid of the repository it is a partition of, if known
    lsn: int = 0               # its file's: of two copies of a partition, the later one
    refreshes: int = 0         # (more refreshes, then higher lsn) is the one to read

    @property
    def newer(self) -> tuple[int, int]:
        return self.refreshes, self.lsn

    @property
    def ids(self) -> tuple[int, int]:
        """The ids this part's events lie in: its regions' bounds, or its partition's."""
        return (self.min if self.lo is None else self.lo,
                self.max if self.hi is None else self.hi)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Part":
        place = data.get("place")
        return cls(**{**data, "place": Place.from_json(place) if place else None})


def _handle(part: Part) -> ReadHandle:
    """The part's file: a local file, or its object read in as few requests as the
    part needs (the whole object in one GET when the part is the whole partition
    and small; else its tail in one GET, then its span of regions in one more)."""
    if part.place is None and "://" not in part.path and not part.storage_options and \
            not part.manifest:
        return LocalFile(part.path, own=False, size=part.size or None)  # as listed
    if part.place is not None:
        cloud, name = _cloud(part.place, part.path), part.path
    else:
        cloud, name = at_url(part.path, part.storage_options)
    whole = part.first == 0 and part.last is None  # fetch bounds what it reads whole
    return CloudFile.fetch(cloud, name, 0 if whole else TAIL, part.size)


def read_part(part: Part | dict, min_id: int = 0, max_id: int = MAX_ID) -> Rows:
    """The events of a part with ids in [min_id, max_id], in order.

    With a key, the file must be encrypted, sealed for partition part.min of storage
    part.storage; without one it must not be encrypted, and must hold that partition.

    A part listed in a repository (origin) whose file is not where, or what, it was
    when listed (moved to another storage, its local or cloud copy dropped, rewritten
    by a refresh) is looked for again in the repository and read where it is now,
    keeping the ids the part was listed with: its events are read once, whatever
    moved meanwhile. A partition dropped meanwhile reads as no events. A part listed
    by a manifest version reads the object that version named, whatever was
    written since (objects never change, and stay removal_delay after they leave
    the manifest)."""
    part = Part.from_json(part) if isinstance(part, dict) else part
    for attempt in range(RELOCATE + 1):
        lo, hi = part.ids  # a split part's own ids: a neighbour reads the rest
        try:
            return _read(part, max(min_id, lo), min(max_id, hi))
        except MonotoneError as e:
            if part.manifest and isinstance(e, ObjectMissing):
                # listed by a manifest version: its objects stay removal_delay after it
                raise MonotoneError(
                    f"{part.path}: the object is gone: removed once the manifest version "
                    "it was listed in was replaced, and its cloud's removal_delay had "
                    "passed; read the manifest again (or give the cloud a longer "
                    "removal_delay)") from None
            if not part.origin or attempt == RELOCATE:
                raise
            error = e
        try:
            now = _locate(part)
        except MonotoneError:
            raise error from None  # what the read met says more than the search
        if now is None:
            return Rows.empty()  # dropped meanwhile: none of its events is left
        # listed as it was (it may have moved away and back): read again, the last
        # time raising what the read meets
        part = replace(now, lo=max(lo, now.ids[0]), hi=min(hi, now.ids[1]),
                       given_key=part.given_key)
    raise AssertionError("unreachable")


def _locate(part: Part) -> Part | None:
    """Where a partition listed in a repository is now (None: it was dropped)."""
    for _ in range(LISTINGS):
        found = _list_repository(part.origin, part.given_key or None, part.min)
        if part.min in found:
            return found[part.min]
        if part.min not in _mins(part.origin, part.min):
            return None
    raise MonotoneError(f"{part.origin}: partition {part.min} kept moving while it was "
                        "looked for: read again")


def _read(part: Part, min_id: int, max_id: int) -> Rows:
    cipher = cipher_of(part.key)
    if cipher is not None and not part.storage:
        raise MonotoneError(f"{part.path}: an encrypted partition is read only with its "
                            "storage's uuid (Part.storage)")
    with Reader(_handle(part), cipher, Identity(part.storage, part.min)) as reader:
        entries = reader.index.entries
        last = reader.index.regions if part.last is None else min(part.last, reader.index.regions)
        wanted = [i for i in range(part.first, last)
                  if int(entries["max_id"][i]) >= min_id and int(entries["min_id"][i]) <= max_id]
        out = []
        for i in wanted:  # side by side: the read-ahead joins them into few GETs
            reader.prefetch(i, min(AHEAD_REGIONS, wanted[-1] + 1 - i))
            rows = reader.read_region(i)
            if int(rows.ids[0]) < min_id or int(rows.ids[-1]) > max_id:
                keep = np.flatnonzero((rows.ids >= np.uint64(min_id)) &
                                      (rows.ids <= np.uint64(max_id)))
                rows = rows.slice(int(keep[0]), int(keep[-1]) + 1) if len(keep) else None
            if rows is not None and len(rows):
                out.append(rows)
    return concat(out) if out else Rows.empty()


def split(part: Part) -> list[Part]:
    """A partition as parts of about REGIONS_PER_PART regions each, with the ids each
    holds (lo..hi: read_part keeps only those); one part when its region count is
    unknown or small. Events of one id (its keys) may run on across regions: each id
    is in one part only, the one its first region starts (that part reads on into the
    regions holding the rest of it, the next one starts past it). A big partition's
    index is read for this: from its file, or its object's tail in one GET."""
    if part.regions <= REGIONS_PER_PART:
        return [part]
    try:
        entries = _entries(part)
    except MonotoneError:
        if not part.origin:
            raise
        now = _locate(part)  # moved or rewritten since it was listed
        if now is None:
            return []
        if now.regions <= REGIONS_PER_PART:
            return [now]
        part, entries = now, _entries(now)
    lows, highs, n = entries["min_id"].tolist(), entries["max_id"].tolist(), len(entries)
    if not n:
        return [part]
    out: list[Part] = []
    first, lo = 0, lows[0]
    while first < n:
        end = min(first + REGIONS_PER_PART, n)
        hi = highs[end - 1]
        last = end
        while last < n and lows[last] <= hi:  # more events of id hi
            last += 1
        if lo <= hi:
            out.append(replace(part, first=first, last=last, lo=lo, hi=hi))
        first, lo = end, hi + 1
    return out


def _entries(part: Part) -> np.ndarray:
    """The region index of a part's file (each region's offset, size, ids, ...)."""
    cipher = cipher_of(part.key)
    whole = replace(part, last=part.regions)  # a span: the object's tail alone is fetched
    with Reader(_handle(whole), cipher, Identity(part.storage, part.min)) as reader:
        return reader.index.entries.copy()


def from_repository(path: str, encryption_key: str | None = None,
                    only: int | None = None) -> list[Part]:
    """Every partition file of a repository directory (local copies first, cloud
    copies through their stubs), by min; only: the partition of that min alone.

    Storages are listed one after another, so a partition moving between two of them
    meanwhile could be missed (listed where it was not yet, then where it no longer
    was): the names are listed again after, and all of it again when they show a
    partition the listing did not have."""
    for _ in range(LISTINGS):
        parts = _list_repository(path, encryption_key, only)
        if _mins(path, only) <= set(parts):
            return [parts[m] for m in sorted(parts)]
    raise MonotoneError(f"{path}: partitions kept moving between storages while the "
                        "repository was listed: read again")


def _mins(path: str, only: int | None) -> set[int]:
    """The partitions whose files (or stubs) a repository's storages hold now."""
    stored = read_config(config_path(path), own=False)
    return {min_ for storage in stored.storages
            for min_, _, _ in _files(storage.place(path, None).directory, only)}


def _files(directory: str, only: int | None) -> list[tuple[int, str, list[str]]]:
    """(min, name, every name) of the partition files and cloud stubs in directory,
    sorted by name; only: those of that min alone."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    out = []
    for name in sorted(names):
        parsed = parse(name)
        if parsed is not None and parsed[1] in ("", CLOUD) and \
                (only is None or parsed[0] == only):
            out.append((parsed[0], name, names))
    return out


def _list_repository(path: str, encryption_key: str | None,
                     only: int | None) -> dict[int, Part]:
    try:
        stored = read_config(config_path(path), own=False)
    except FileNotFoundError:
        raise MonotoneError(f"{path}: no repository here (no {CONFIG})") from None
    parts: dict[int, Part] = {}
    for storage in stored.storages:
        cloud = stored.cloud(storage.cloud) if storage.cloud else None
        place = storage.place(path, cloud)
        # the storage's settings decide whether its files must be encrypted
        key = (encryption_key or place.key) if storage.encryption else ""
        if storage.encryption and not key:
            raise MonotoneError(f"{path}: storage '{storage.name}' is encrypted: give its "
                                "encryption_key")
        for min_, name, names in _files(place.directory, only):
            local = file_name(min_) in names
            if min_ in parts or name != file_name(min_) and local:
                continue  # listed in an earlier storage; or a stub: the local copy is read
            file = os.path.join(place.directory, name)
            try:
                if local:  # as it was before an append under way (asked before and after)
                    before = committed_size(place.directory, min_)
                    handle = LocalFile(file, own=False)
                    size = before or committed_size(place.directory, min_)
                    if size is not None and size <= handle.size:
                        handle.size = size
                else:
                    handle = CloudFile.from_stub(LocalFile(file, own=False),
                                                 _cloud(place, file), min_)
                with Reader(handle, cipher_of(key), Identity(storage.uuid, min_)) as reader:
                    meta, size = reader.meta, reader.file_size
            except MonotoneError:
                try:
                    os.lstat(file)
                except FileNotFoundError:
                    continue  # moved or dropped since listed: where it went is listed after
                raise
            parts[min_] = Part(min_, int(meta["max"]), file if local else handle.object, size,
                               int(meta["regions"]), key=key, storage=storage.uuid,
                               place=None if local else place, origin=path,
                               given_key=encryption_key or "",
                               repository=str(stored.values.get("uuid", "")),
                               lsn=_count(meta, "lsn"), refreshes=_count(meta, "refreshes"))
    return parts


def _count(meta: dict, name: str) -> int:
    """A count a file's meta gives (0: none, or not a count)."""
    value = meta.get(name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and \
        0 <= value <= MAX_ID else 0


def _cloud(place: Place, what: str) -> Cloud:
    """The cloud an object of a storage is in."""
    cloud = objects_of(place)
    if cloud is None:
        raise MonotoneError(f"{what}: an object of a storage without a cloud")
    return cloud


def from_manifest(url: str, storage_options: dict | None = None,
                  encryption_key: str | None = None) -> list[Part]:
    """The partitions a cloud storage's manifest names, by min."""
    options = dict(storage_options or {})
    cloud, name = at_url(url, options)
    try:  # the pointer, then the version it names (one consistent list)
        manifest = manifests.read(cloud, name, url)
    except ObjectMissing:
        raise MonotoneError(f"{url}: no manifest there") from None
    if manifest.encrypted and not encryption_key:
        raise MonotoneError(f"{url}: storage '{manifest.storage}' is encrypted: "
                            "give its encryption_key")
    if encryption_key and not manifest.uuid:
        raise MonotoneError(f"{url}: the manifest gives no storage uuid, which its "
                            "encrypted files are sealed for")
    # with a key, every file must be encrypted, whatever the manifest says (anyone
    # who can write the bucket can write a manifest, not a sealed file)
    base = url.rsplit("/", 1)[0]  # objects are plain names beside it (decode checks)
    return [Part(e.min, e.max, f"{base}/{e.object}", e.size, e.regions,
                 key=encryption_key or "", storage=manifest.uuid, storage_options=options,
                 manifest=url, repository=manifest.repository, lsn=e.lsn,
                 refreshes=e.refreshes)
            for e in sorted(manifest.partitions, key=lambda e: e.min)]

