"""Storages, clouds and the pipeline: their checks, and the changes commands make.

The coordinator keeps one Catalog of the typed records of monotone.settings
(frozen: a change is a new record), persists it in the config file and sends
clients where each storage's files are (Place).
"""
from __future__ import annotations

import os
import uuid as uuidlib
from dataclasses import dataclass, field, fields, replace
from typing import Any

from monotone import cloud as cloud_module
from monotone.errors import MonotoneError
from monotone.format.codec import CODECS
from monotone.format.crypto import new_key, parse_key
from monotone.partition.fileformat import MAX_REGION_SIZE
from monotone.settings import UNSET, CloudSettings, ConfigFile, Place, Storage, Tier
from monotone.shm import private
from monotone.shm.errors import BadPath

MAIN = "main"
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
    """value checked against its type; kind prefixes the message (config file checks),
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


def apply_storage_options(storage: Storage, options, usage: str,
                          creating: bool) -> tuple[Storage, set[str]]:
    """storage with options set (checked), and the names changed."""
    changes: dict[str, Any] = {}
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
        if name == "region_size" and not 0 < value <= MAX_REGION_SIZE:
            # the original refuses only 0 (a negative size would never cut a region);
            # above the bound a region could pass what a reader takes (fileformat)
            raise MonotoneError("invalid region_size value" if value <= 0 else
                                f"region_size {value} is above {MAX_REGION_SIZE}")
        changes[name] = value
    storage = replace(storage, **changes)
    check_level(storage.compression, storage.compression_level)
    if storage.encryption == "aes" and not storage.encryption_key:
        storage = replace(storage, encryption_key=new_key())
    # without encryption a key given stays (as the original's): encryption 'aes' set
    # later uses it; nothing reads it meanwhile (a Place gives it only when encrypted)
    return storage, set(changes)


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


# a cloud's deadlines and delays (settings.CloudSettings) and the values they take
DEADLINES = {"connect_timeout": (1, 600), "read_timeout": (1, 3600), "retries": (0, 20),
             "removal_delay": (0, 365 * 86400 * 1_000_000)}


def _deadline(name: str, value: int, prefix: str = "") -> int:
    low, high = DEADLINES[name]
    if not low <= value <= high:
        raise MonotoneError(f"{prefix}{name} {value} is out of range ({low}..{high})")
    return value


def apply_cloud_options(cloud: CloudSettings, options, usage: str,
                        creating: bool) -> CloudSettings:
    """cloud with options set, checked (a protocol whose package is missing: an error
    naming the package)."""
    kind = dict(options).get("type", "") if creating else cloud.type
    changes: dict[str, Any] = {}
    extra = dict(cloud.options)
    for given, value in options:
        name = _ALIASES.get(given, given)
        if name in ("name", "options"):
            raise MonotoneError(f"{usage}: unknown option '{name}'")
        if name in DEADLINES:
            changes[name] = _deadline(name, _typed("", given, value, "int"))
            continue
        if name not in ("type", "login", "password", "url", "debug"):
            if not cloud_module.backend(kind).takes_options:
                raise MonotoneError(f"{usage}: unknown option '{name}'")
            if not isinstance(value, (str, int)):
                raise MonotoneError(f"{usage}: {name} 'string, integer or boolean' expected")
            extra[name] = value
            continue
        value = _typed("", given, value, "bool" if name == "debug" else "str")
        if name == "type" and not creating and value != cloud.type:
            raise MonotoneError("cloud type cannot be changed")
        changes[name] = value
    cloud = replace(cloud, **changes, options=extra)
    cloud_module.check(cloud)
    return cloud


def make_tier(name: str, options) -> Tier:
    limits = {}
    for opt, value in options:
        if opt not in ("partitions", "size", "events", "duration"):
            raise MonotoneError(f"ALTER PIPELINE: unknown option '{opt}'")
        limits[opt] = _typed("", opt, value, "int")
    return Tier(name, **limits)


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
    clouds: list[CloudSettings] = field(default_factory=list)
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

    def cloud(self, name: str) -> CloudSettings | None:
        return next((c for c in self.clouds if c.name == name), None)

    def first_tier(self) -> Storage:
        return self.need_storage(self.pipeline[0].name if self.pipeline else MAIN)

    def new_storage(self, name: str) -> Storage:
        next_id = max((s.id for s in self.storages), default=-1) + 1
        return Storage(name, id=next_id, uuid=str(uuidlib.uuid4()))

    # changes: a record in place of the one it replaces
    def put_storage(self, storage: Storage) -> None:
        """storage in place of the storage with its id."""
        self.storages = [storage if s.id == storage.id else s for s in self.storages]

    def put_cloud(self, name: str, cloud: CloudSettings) -> None:
        """cloud in place of the cloud called name."""
        self.clouds = [cloud if c.name == name else c for c in self.clouds]

    # persistence
    def file(self, values: dict) -> ConfigFile:
        """The config file holding this catalog and values (the variables')."""
        return ConfigFile(values, self.storages, self.clouds, self.pipeline)

    @classmethod
    def load(cls, stored: ConfigFile) -> "Catalog":
        """The catalog a config file holds, checked (MonotoneError when it is not sane)."""
        catalog = cls(list(stored.storages), list(stored.clouds), list(stored.pipeline))
        catalog.check()
        return catalog

    def check(self) -> None:
        """Every invariant of a catalog (what the config file may hold, what a command
        may leave)."""
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
        for cloud in self.clouds:
            what = f"cloud '{cloud.name}'"
            for name in DEADLINES:
                _deadline(name, _typed(what, name, getattr(cloud, name), "int"), f"{what}: ")
        _unique("pipeline storage", [t.name for t in self.pipeline])
        for tier in self.pipeline:
            self.need_storage(tier.name)

    def for_clients(self, base: str) -> dict:
        """What clients need, as it travels: storage id -> where its files are."""
        return {str(s.id): self.place(s, base).to_json() for s in self.storages}

    def place(self, storage: Storage, base: str) -> Place:
        """Where a storage's files are: its directory, key, and its cloud's settings."""
        return storage.place(base, self.cloud(storage.cloud) if storage.cloud else None)

    def copy(self) -> "Catalog":
        return Catalog(list(self.storages), list(self.clouds), list(self.pipeline))
