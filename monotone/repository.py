"""Where things live in a repository directory."""
from __future__ import annotations

import json
import os

from .protocol import repo_id
from .shm.segment import segment_name


class Layout:
    def __init__(self, base: str) -> None:
        self.base = os.path.realpath(base)
        self.id = repo_id(self.base)
        self.config = os.path.join(self.base, "config.json")
        self.lock = os.path.join(self.base, "monotone.lock")
        self.wal = os.path.join(self.base, "wal")
        self.log = os.path.join(self.base, "log")
        self.catalog = segment_name(self.id, "catalog")

    def storage(self, uuid: str) -> str:
        return os.path.join(self.base, uuid)

    def memtable(self, segno: int) -> str:
        return segment_name(self.id, f"mt{segno}")


def write_json(path: str, data: dict, sync: bool = True) -> None:
    """Replace a JSON file atomically: temp file beside it, fsync, rename. Readable
    by its owner only (config.json holds encryption keys and cloud secrets)."""
    tmp = path + ".incomplete"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)  # an older temp file may have had another mode
    with open(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
