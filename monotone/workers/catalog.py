"""Storages, clouds and the pipeline: their options, checks and persisted form.

Pure data: the coordinator keeps one Catalog, persists it inside config.json
and sends clients what they need to read files (storage directories, keys).
"""
from __future__ import annotations

import copy
import os
import uuid as uuidlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from monotone import cloud as cloud_module
from monotone import redact
from monotone.errors import MonotoneError
from monotone.format.codec import CODECS
from monotone.format.crypto import new_key, parse_key
from monotone.shm import private
from monotone.shm.errors import BadPath

MAIN = "main"
UNSET = -1


@dataclass
class Storage:
    name: str
    id: int = 0
    uuid: str = ""
    path: str = ""
    cloud: str = ""
    cloud_drop_local: bool = True
    sync: bool = True
    crc: bool = True
    refresh_wm: int = 40 * 1024 * 1024
    region_size: int = 128 * 1024
    compression: str = "lz4"
    compression_level: int = 0
    encryption: str = ""
    encryption_key: str = ""

    def directory(self, base: str) -> str:
        """<base>/<uuid>, <base>/<path>/<uuid> or <path>/<uuid>."""
        return os.path.join(base, self.path, self.uuid)

    def show(self, debug: bool = False) -> dict:
        out = {"uuid": "(filtered)" if debug else self.uuid}
        for name in ("name", "path", "cloud", "cloud_drop_local", "sync", "crc", "refresh_wm",
                     "region_size", "compression", "compression_level", "encryption"):
            out[name] = getattr(self, name)
        if out["compression"] == "none":
            out["compression"] = ""  # the original's spelling of no compression
        return out


@dataclass(repr=False)
class Cloud:
    """A place for partition files: type 's3', 'mock', or any fsspec protocol by name.

    options: what a protocol other than s3 and mock takes besides url (passed
    to its filesystem). Secrets (password, and options that look like one)
    never leave in SHOW, logs or reprs."""
    name: str
    type: str = ""
    login: str = ""
    password: str = ""
    url: str = ""
    debug: bool = False
    options: dict = field(default_factory=dict)

    def show(self) -> dict:
        out = {"name": self.name, "type": self.type, "login": self.login,
               "password": "(secret)", "url": redact.url(self.url), "debug": self.debug}
        for name, value in self.options.items():
            out[name] = "(secret)" if cloud_module.secret_option(name) else value
        return out

    def __repr__(self) -> str:
        return f"Cloud({self.name!r}, type={self.type!r}, url={redact.url(self.url)!r})"

    def spec(self) -> dict:
        """What a process needs to reach it (secrets included: for its own processes)."""
        return asdict(self)


@dataclass
class Tier:
    name: str
    partitions: int = UNSET
    size: int = UNSET
    events: int = UNSET
    duration: int = UNSET

    def show(self) -> dict:
        return asdict(self)


LEVELS = {"lz4": (0, 16), "zstd": (0, 22), "none": (0, 0)}  # 0: the codec's default
_STORAGE_TYPES = {f.name: f.type for f in fields(Storage)}
_ALIASES = {"access_key": "login", "secret_key": "password"}


def _unique(what: str, values: list) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise MonotoneError(f"{what} {value!r} appears twice")
        seen.add(value)


def _typed(kind: str, name: str, value: Any, want: str) -> Any:
    """value checked against its type; kind prefixes the message (config.json checks),
    commands pass "" and get the original's messages ("sync 'true|false' expected")."""
    prefix = f"{kind}: " if kind else ""
    if want == "bool":
        if not isinstance(value, bool):
            raise MonotoneError(f"{prefix}{name} 'true|false' expected")
    elif want == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise MonotoneError(f"{prefix}{name} 'integer' expected")
    elif not isinstance(value, str):
        # the original's wording, its missing space included
        raise MonotoneError(f"{prefix}{name} 'string'expected" if not kind else
                            f"{prefix}{name} 'string' expected")
    return value


def apply_storage_options(storage: Storage, options, usage: str, creating: bool) -> set[str]:
    """Set options on storage (checked); return the names changed."""
    changed = set()
    for name, value in options:
        want = _STORAGE_TYPES.get(name)
        if want is None or name in ("name", "id"):
            raise MonotoneError(f"{usage}: unknown option: '{name}'")
        value = _typed("", name, value, want)
        if name == "uuid":
            if not creating:
                raise MonotoneError("storage uuid cannot be changed this way")
            try:
                value = str(uuidlib.UUID(value))
            except ValueError:
                raise MonotoneError(f"{usage}: uuid '{value}' is not a uuid") from None
        if name == "compression":
            value = value or "none"
            if value not in CODECS:
                raise MonotoneError(f"unknown compression: '{value}'")
        if name == "encryption":
            value = "" if value == "none" else value
            if value not in ("", "aes"):
                raise MonotoneError(f"unknown encryption: '{value}'")
        if name == "encryption_key" and value:
            parse_key(value)
        if name == "path":
            check_path(value, f"storage '{storage.name}'")
        if name == "region_size" and value <= 0:
            # the original refuses only 0 (a negative size would never cut a region)
            raise MonotoneError("invalid region_size value")
        setattr(storage, name, value)
        changed.add(name)
    check_level(storage.compression, storage.compression_level)
    if storage.encryption == "aes" and not storage.encryption_key:
        storage.encryption_key = new_key()
    # without encryption a key given stays (as the original's): encryption 'aes' set
    # later uses it; nothing reads it meanwhile (store_spec gives it only when encrypted)
    return changed


def check_path(path: str, what: str) -> None:
    """A storage path must be a plain local path (directories are made before use)."""
    if "://" in path:
        raise MonotoneError(f"{what}: path '{path}' is a URL; a storage path is a local "
                            "directory: to keep partitions in object storage, CREATE CLOUD "
                            "and attach it to the storage with (cloud 'name')")
    if "\0" in path:
        raise MonotoneError(f"{what}: path contains a NUL character")
    try:
        os.fsencode(path)
    except UnicodeError:
        raise MonotoneError(f"{what}: path {path!r} cannot be a file name here") from None
    try:
        private.check_path(path, f"{what}: path")
    except BadPath as e:
        raise MonotoneError(str(e)) from None


def check_level(compression: str, level: int) -> None:
    """A level must suit its codec; without compression (none) any level is kept and
    unused, as the original (which never checks it) does."""
    if compression not in LEVELS or compression == "none":
        return
    low, high = LEVELS[compression]
    if not low <= level <= high:
        raise MonotoneError(f"compression_level {level} is out of range for {compression} "
                            f"({low}..{high})")


def apply_cloud_options(cloud: Cloud, options, usage: str, creating: bool) -> None:
    """Set options on cloud, checked (a protocol whose package is missing: an error
    naming the package)."""
    for given, value in options:
        name = _ALIASES.get(given, given)
        if name in ("name", "options"):
            raise MonotoneError(f"{usage}: unknown option '{name}'")
        if name not in ("type", "login", "password", "url", "debug"):
            if not creating and cloud.type in ("s3", "mock") or \
                    creating and dict(options).get("type") in ("s3", "mock"):
                raise MonotoneError(f"{usage}: unknown option '{name}'")
            if not isinstance(value, (str, int)):
                raise MonotoneError(f"{usage}: {name} 'string, integer or boolean' expected")
            cloud.options[name] = value
            continue
        value = _typed("", given, value, "bool" if name == "debug" else "str")
        if name == "type" and not creating and value != cloud.type:
            raise MonotoneError("cloud type cannot be changed")
        setattr(cloud, name, value)
    cloud_module.check(cloud.spec())


def make_tier(name: str, options) -> Tier:
    tier = Tier(name)
    for opt, value in options:
        if opt not in ("partitions", "size", "events", "duration"):
            raise MonotoneError(f"ALTER PIPELINE: unknown option '{opt}'")
        setattr(tier, opt, _typed("", opt, value, "int"))
    return tier


def terminal(tier: Tier) -> bool:
    """A tier without a condition: partitions never leave it."""
    return tier.partitions == tier.size == tier.events == tier.duration == UNSET


def check_pipeline(tiers: list[Tier]) -> None:
    """As the original's: a storage once, and every tier but the last has a condition
    (otherwise nothing would ever reach the next one)."""
    for i, tier in enumerate(tiers[:-1]):
        if any(t.name == tier.name for t in tiers[i + 1:]):
            raise MonotoneError(f"pipeline: tier '{tier.name}' is duplicated")
        if terminal(tier):
            raise MonotoneError(f"pipeline: tier '{tier.name}' is terminal and has no "
                                "conditions")


@dataclass
class Catalog:
    storages: list[Storage] = field(default_factory=list)
    clouds: list[Cloud] = field(default_factory=list)
    pipeline: list[Tier] = field(default_factory=list)

    # lookup
    def storage(self, name: str) -> Storage | None:
        return next((s for s in self.storages if s.name == name), None)

    def storage_by_id(self, id_: int) -> Storage:
        return next(s for s in self.storages if s.id == id_)

    def need_storage(self, name: str) -> Storage:
        storage = self.storage(name)
        if storage is None:
            raise MonotoneError(f"storage '{name}': not exists")
        return storage

    def cloud(self, name: str) -> Cloud | None:
        return next((c for c in self.clouds if c.name == name), None)

    def first_tier(self) -> Storage:
        return self.need_storage(self.pipeline[0].name if self.pipeline else MAIN)

    def new_storage(self, name: str) -> Storage:
        next_id = max((s.id for s in self.storages), default=-1) + 1
        return Storage(name, id=next_id, uuid=str(uuidlib.uuid4()))

    # persistence
    def to_json(self) -> dict:
        return {"storages": [asdict(s) for s in self.storages],
                "clouds": [asdict(c) for c in self.clouds],
                "pipeline": [asdict(t) for t in self.pipeline]}

    @classmethod
    def from_json(cls, data: dict) -> "Catalog":
        """The catalog persisted in config.json, checked (MonotoneError when it is not sane)."""
        try:
            catalog = cls([Storage(**s) for s in data.get("storages", [])],
                          [Cloud(**c) for c in data.get("clouds", [])],
                          [Tier(**t) for t in data.get("pipeline", [])])
        except TypeError as e:
            raise MonotoneError(f"unknown or missing fields ({e})") from None
        catalog.check()
        return catalog

    def check(self) -> None:
        """Every invariant of a catalog (what config.json may hold, what a command may leave)."""
        _unique("storage name", [s.name for s in self.storages])
        _unique("storage id", [s.id for s in self.storages])
        _unique("storage uuid", [s.uuid for s in self.storages])
        main = self.storage(MAIN)
        if main is None or main.id != 0:
            raise MonotoneError(f"storage '{MAIN}' is missing (or is not storage 0)")
        for storage in self.storages:
            what = f"storage '{storage.name}'"
            for f in fields(Storage):
                _typed(what, f.name, getattr(storage, f.name), f.type)
            try:
                if str(uuidlib.UUID(storage.uuid)) != storage.uuid.lower():
                    raise ValueError
            except ValueError:
                raise MonotoneError(f"{what}: uuid '{storage.uuid}' is not a uuid") from None
            check_path(storage.path, what)
            if storage.compression not in CODECS or storage.encryption not in ("", "aes"):
                raise MonotoneError(f"{what}: unknown compression or encryption")
            check_level(storage.compression, storage.compression_level)
            if storage.encryption or storage.encryption_key:
                parse_key(storage.encryption_key)
            if storage.cloud and self.cloud(storage.cloud) is None:
                raise MonotoneError(f"{what}: cloud '{storage.cloud}' not exists")
        _unique("cloud name", [c.name for c in self.clouds])
        _unique("pipeline storage", [t.name for t in self.pipeline])
        for tier in self.pipeline:
            self.need_storage(tier.name)

    def for_clients(self, base: str) -> dict:
        """What readers need: storage id -> directory, key."""
        return {str(s.id): self.store_spec(s, base) for s in self.storages}

    def store_spec(self, storage: Storage, base: str) -> dict:
        """Where a storage's files are: its directory, and its cloud's spec (or None)."""
        cloud = self.cloud(storage.cloud) if storage.cloud else None
        key = storage.encryption_key if storage.encryption else ""
        return {"directory": storage.directory(base), "uuid": storage.uuid,
                "key": key, "refresh_wm": storage.refresh_wm,
                "sync": storage.sync, "cloud": cloud.spec() if cloud else None}

    def copy(self) -> "Catalog":
        return copy.deepcopy(self)
