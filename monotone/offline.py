"""Reading partition files with no coordinator: from a repository directory, or
from a cloud storage's manifest, on any machine.

A Part names one partition file and how to reach it (a local path, or an
fsspec URL with the options to open it), and a span of its regions; read_part
turns it into Rows, one region at a time, keeping ids in [min_id, max_id].
Parts are plain data, so they travel to other processes and machines (Dask
workers) as they are.

What a repository directory holds in files is what was refreshed: events
still only in memtables and the WAL are not there until a refresh
(CHECKPOINT) writes them. A manifest names only the partitions whose files
are in the cloud.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from .cloud import CloudFile, Objects
from .errors import MonotoneError
from .format.crypto import Cipher, parse_key
from .format.rows import Rows, concat
from .partition.files import CLOUD, parse
from .partition.reader import Reader
from .store import LocalFile, ReadHandle

MANIFEST = "manifest.json"
REGIONS_PER_PART = 64  # a big partition is read as several parts of this many regions


@dataclass
class Part:
    min: int                   # the partition
    max: int
    path: str                  # a local file, or an object's URL
    size: int                  # bytes of the file (0: ask the file)
    regions: int               # regions in the file (0: all of them, in one part)
    first: int = 0             # the span of regions this part reads
    last: int | None = None
    key: str = ""              # the storage's encryption key (hex), if encrypted
    cloud: dict | None = None  # an object: the cloud spec (repository) ...
    storage_options: dict = field(default_factory=dict)  # ... or fsspec options (manifest)

    def to_json(self) -> dict:
        return asdict(self)


class _Remote(ReadHandle):
    """An object read through fsspec in as few requests as a part needs: the
    whole object in one GET when the part is the whole partition; else its
    tail (footer and index) in one GET, then its span of regions in one more
    (load)."""

    TAIL = 256 * 1024

    def __init__(self, part: Part) -> None:
        self.name = part.path
        if part.cloud is not None:
            objects = Objects(part.cloud, "", "")
            self.fs, self.path = objects.fs, part.path
        else:
            import fsspec
            self.fs, self.path = fsspec.core.url_to_fs(part.path, **part.storage_options)
        self.size = part.size or int(self.fs.size(self.path))
        if part.first == 0 and part.last is None:
            self.start, self.data = 0, self.fs.cat_file(self.path)  # the whole file: one GET
        else:
            self.start = max(0, self.size - self.TAIL)
            self.data = self.fs.cat_file(self.path, start=self.start, end=self.size)
        self.span = (0, b"")

    def load(self, offset: int, size: int) -> None:
        """Fetch bytes [offset, offset + size) at once (a part's regions)."""
        if offset < self.start:
            self.span = (offset, self.fs.cat_file(self.path, start=offset, end=offset + size))

    def read(self, offset: int, size: int) -> bytes:
        if offset >= self.start:
            return self.data[offset - self.start:offset - self.start + size]
        at, span = self.span
        if at <= offset and offset + size <= at + len(span):
            return span[offset - at:offset - at + size]
        return self.fs.cat_file(self.path, start=offset, end=offset + size)

    def close(self) -> None:
        self.data, self.span = b"", (0, b"")


def _open(part: Part) -> Reader:
    cipher = Cipher(parse_key(part.key)) if part.key else None
    handle = LocalFile(part.path, own=False) if part.cloud is None and "://" not in part.path and \
        not part.storage_options else _Remote(part)
    return Reader(handle, cipher)


def read_part(part: Part | dict, min_id: int = 0, max_id: int = 2**64 - 1) -> Rows:
    """The events of a part with ids in [min_id, max_id], in order."""
    part = Part(**part) if isinstance(part, dict) else part
    with _open(part) as reader:
        entries = reader.index.entries
        last = reader.index.regions if part.last is None else min(part.last, reader.index.regions)
        wanted = [i for i in range(part.first, last)
                  if int(entries["max_id"][i]) >= min_id and int(entries["min_id"][i]) <= max_id]
        load = getattr(reader.file, "load", None)
        if wanted and load is not None:  # the regions it reads lie side by side: one GET
            start = int(entries["offset"][wanted[0]])
            load(start, int(entries["offset"][wanted[-1]] + entries["size"][wanted[-1]]) - start)
        out = []
        for i in wanted:
            rows = reader.read_region(i)
            if int(rows.ids[0]) < min_id or int(rows.ids[-1]) > max_id:
                keep = np.flatnonzero((rows.ids >= np.uint64(min_id)) &
                                      (rows.ids <= np.uint64(max_id)))
                rows = rows.slice(int(keep[0]), int(keep[-1]) + 1) if len(keep) else None
            if rows is not None and len(rows):
                out.append(rows)
    return concat(out) if out else Rows.empty()


def split(part: Part) -> list[Part]:
    """A partition as parts of at most REGIONS_PER_PART regions (one part when its
    region count is unknown or small)."""
    if part.regions <= REGIONS_PER_PART:
        return [part]
    return [Part(**{**asdict(part), "first": a, "last": min(a + REGIONS_PER_PART, part.regions)})
            for a in range(0, part.regions, REGIONS_PER_PART)]


def from_repository(path: str, encryption_key: str | None = None) -> list[Part]:
    """Every partition file of a repository directory (local copies first, cloud
    copies through their stubs), by min."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise MonotoneError(f"{path}: no repository here (no config.json)") from None
    clouds = {c["name"]: c for c in config.get("clouds", [])}
    parts: dict[int, Part] = {}
    for storage in config.get("storages", []):
        directory = os.path.join(path, storage["path"], storage["uuid"])
        key = storage.get("encryption_key", "") if storage.get("encryption") else ""
        key = encryption_key or key
        cloud = clouds.get(storage.get("cloud") or "")
        objects = Objects(cloud, storage["uuid"], directory) if cloud else None
        names = os.listdir(directory) if os.path.isdir(directory) else []
        for name in sorted(names):
            parsed = parse(name)
            if parsed is None or parsed[1] not in ("", CLOUD) or parsed[0] in parts:
                continue
            min_ = parsed[0]
            local = f"{min_:020d}" in names
            if parsed[1] == CLOUD and local:
                continue  # the local copy is read
            stub = os.path.join(directory, name)
            with Reader(LocalFile(stub, own=False) if local else _stub_handle(stub, objects, min_),
                        Cipher(parse_key(key)) if key else None) as reader:
                meta, size = reader.meta, reader.file_size
            target = stub if local else objects.path(f"{min_:020d}")
            parts[min_] = Part(int(meta["min"]), int(meta["max"]), target, size,
                               int(meta["regions"]), key=key,
                               cloud=None if local else cloud)
    return [parts[m] for m in sorted(parts)]


def _stub_handle(stub: str, objects: Objects | None, min_: int):
    if objects is None:
        raise MonotoneError(f"{stub}: a cloud stub in a storage without a cloud")
    return CloudFile(LocalFile(stub, own=False), objects, f"{min_:020d}")


def from_manifest(url: str, storage_options: dict | None = None,
                  encryption_key: str | None = None) -> list[Part]:
    """The partitions a cloud storage's manifest names, by min."""
    import fsspec
    options = dict(storage_options or {})
    try:
        with fsspec.open(url, "rb", **options) as f:
            manifest = json.loads(f.read())
    except FileNotFoundError:
        raise MonotoneError(f"{url}: no manifest there") from None
    if manifest.get("format") != "monotone-manifest":
        raise MonotoneError(f"{url}: not a monotone manifest")
    if manifest.get("encrypted") and not encryption_key:
        raise MonotoneError(f"{url}: storage '{manifest.get('storage')}' is encrypted: "
                            "give its encryption_key")
    base = url.rsplit("/", 1)[0]
    return [Part(int(p["min"]), int(p["max"]), f"{base}/{p['object']}", int(p["size"]),
                 int(p["regions"]), key=encryption_key or "", storage_options=options)
            for p in sorted(manifest["partitions"], key=lambda p: int(p["min"]))]
