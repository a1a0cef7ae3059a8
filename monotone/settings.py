"""Settings: the typed records of storages, clouds and the pipeline, and the
repository's config file that holds them, read and written here only.

Every record is frozen: a change is a new record (dataclasses.replace). The
coordinator keeps them in its catalog (workers/catalog.py checks them); what
other processes need of a storage travels as a Place: to clients inside a
ClientConfig, to worker processes inside jobs, to offline readers inside
parts. They travel as JSON (to_json, from_json); the file's form is
asdict() of each record, as it always was, so any repository opens.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from . import redact
from .errors import MonotoneError
from .shm import private

CONFIG = "config.json"
UNSET = -1
CATALOG_KEYS = ("storages", "clouds", "pipeline")


@dataclass(frozen=True)
class CloudSettings:
    """A place for partition files: its type (cloud/registry.py knows them), where
    it is and how to log in.

    Every request has a deadline (cloud/base.py): connect_timeout seconds to
    connect, read_timeout seconds without a byte before a request is given up
    (and the whole request at most both plus the time its bytes take at the
    slowest rate taken as alive), retried `retries` times more on a timeout, a
    reset connection, a 5xx or throttling, with exponential backoff and jitter.
    With the defaults a request to a silent endpoint fails within about a minute.

    removal_delay: microseconds an object that left the storage's manifest (a
    partition dropped or moved on cloud, or uploaded anew) stays in the cloud
    before it is removed, for readers of a manifest version that named it
    (cloud/manifest.py); 0 removes it at once.

    options: what a filesystem takes besides url (passed to it as they are).
    Secrets (password, and options that look like one) never leave in SHOW,
    logs or reprs."""
    name: str
    type: str = ""
    login: str = ""
    password: str = ""
    url: str = ""
    debug: bool = False
    connect_timeout: int = 5
    read_timeout: int = 15
    retries: int = 3
    removal_delay: int = 3600 * 1_000_000
    options: dict = field(default_factory=dict)

    def show(self) -> dict:
        out = {"name": self.name, "type": self.type, "login": self.login,
               "password": redact.SECRET, "url": redact.url(self.url), "debug": self.debug,
               "connect_timeout": self.connect_timeout, "read_timeout": self.read_timeout,
               "retries": self.retries, "removal_delay": self.removal_delay}
        for name, value in self.options.items():
            out[name] = redact.SECRET if redact.secret_name(name) else value
        return out

    def __repr__(self) -> str:
        return f"CloudSettings({self.name!r}, type={self.type!r}, url={redact.url(self.url)!r})"


@dataclass(frozen=True)
class Place:
    """Where a storage's files are, for a process that reads or writes them: its
    directory and uuid, its key ('' when not encrypted), when its memtables are
    refreshed and whether it syncs, and its cloud (secrets included: for the
    repository's own processes)."""
    directory: str
    uuid: str
    key: str
    refresh_wm: int
    sync: bool
    cloud: CloudSettings | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Place":
        cloud = data.get("cloud")
        return cls(**{**data, "cloud": CloudSettings(**cloud) if cloud else None})


@dataclass(frozen=True)
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

    def place(self, base: str, cloud: CloudSettings | None) -> Place:
        """Where its files are (cloud: its cloud's settings, None without one)."""
        key = self.encryption_key if self.encryption else ""
        return Place(self.directory(base), self.uuid, key, self.refresh_wm, self.sync, cloud)

    def show(self, debug: bool = False) -> dict:
        out = {"uuid": "(filtered)" if debug else self.uuid}
        for name in ("name", "path", "cloud", "cloud_drop_local", "sync", "crc", "refresh_wm",
                     "region_size", "compression", "compression_level", "encryption"):
            out[name] = getattr(self, name)
        if out["compression"] == "none":
            out["compression"] = ""  # the original's spelling of no compression
        return out


@dataclass(frozen=True)
class Tier:
    name: str
    partitions: int = UNSET
    size: int = UNSET
    events: int = UNSET
    duration: int = UNSET

    def show(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClientConfig:
    """The config as the coordinator gives it to its clients: the variables'
    values, and by storage id where each storage's files are."""
    values: dict
    storages: dict[int, Place]

    @classmethod
    def from_json(cls, data: dict) -> "ClientConfig":
        values = {k: v for k, v in data.items() if k != "storages"}
        return cls(values, {int(k): Place.from_json(v) for k, v in data["storages"].items()})


@dataclass(frozen=True)
class ConfigFile:
    """What the config file holds: the persisted variables' values and the catalog."""
    values: dict
    storages: list[Storage]
    clouds: list[CloudSettings]
    pipeline: list[Tier]

    def to_json(self) -> dict:
        return {**self.values, "storages": [asdict(s) for s in self.storages],
                "clouds": [asdict(c) for c in self.clouds],
                "pipeline": [asdict(t) for t in self.pipeline]}

    @classmethod
    def from_json(cls, data: dict) -> "ConfigFile":
        """The records of a parsed file (MonotoneError naming the fields that do not fit)."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        values = {k: v for k, v in data.items() if k not in CATALOG_KEYS}
        try:
            return cls(values, [Storage(**s) for s in data.get("storages", [])],
                       [CloudSettings(**c) for c in data.get("clouds", [])],
                       [Tier(**t) for t in data.get("pipeline", [])])
        except TypeError as e:
            raise MonotoneError(f"unknown or missing fields ({e})") from None

    def cloud(self, name: str) -> CloudSettings | None:
        return next((c for c in self.clouds if c.name == name), None)


def config_path(base: str) -> str:
    """The config file of the repository in directory base."""
    return os.path.join(base, CONFIG)


def read_config(file: str, own: bool = True) -> ConfigFile:
    """A config file, parsed. own: it must be a file of ours, reached without a link
    (the coordinator's); a reader of a repository copied or shared for it
    (monotone.offline) takes what it is given."""
    fd = private.open_own(file) if own else os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        return ConfigFile.from_json(json.load(f))


def write_config(file: str, config: ConfigFile, sync: bool = True) -> None:
    """Replace the config file atomically: a new temp file beside it, fsync, rename.
    Readable by its owner only (it holds encryption keys and cloud secrets); a
    temp file of ours left by a crash goes first, anything else at that name is
    refused rather than written through."""
    tmp = file + ".incomplete"
    fd = private.create(tmp, os.O_WRONLY, replace=True)
    with open(fd, "w") as f:
        json.dump(config.to_json(), f, indent=2, sort_keys=True)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    os.replace(tmp, file)
    if sync:
        fd = os.open(os.path.dirname(file), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
