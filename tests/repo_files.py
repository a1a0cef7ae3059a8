"""The files of a closed repository: its WAL files and its main storage's partition files;
and damaging one byte of a file."""
from __future__ import annotations

import json
import os


def wal_files(repo):
    d = os.path.join(repo, "wal")
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".wal"))


def storage_dir(repo):
    """The main storage's directory, <base>/<repository uuid> (SHOW uuid; persisted in
    config.json, read from there as the repository is closed when it is needed)."""
    with open(os.path.join(repo, "config.json")) as f:
        return os.path.join(repo, json.load(f)["uuid"])


def partition_files(repo):
    return sorted(os.listdir(storage_dir(repo)))


def flip(path, offset, mask=0x20):
    """XOR one byte of a file with mask, in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))
