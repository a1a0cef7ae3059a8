"""The storages of a closed repository as config.json lists them, and their directories."""
from __future__ import annotations

import json
import os

KEY_A = "a0" * 32


def storages(repo):
    """name -> storage entry of config.json (read while the repository is closed)."""
    with open(os.path.join(repo, "config.json")) as f:
        return {s["name"]: s for s in json.load(f)["storages"]}


def storage_dir(repo, storage):
    return os.path.join(repo, storage["path"], storage["uuid"])


def files_by_storage(repo):
    """name -> sorted partition files (any suffix) in the storage's directory."""
    out = {}
    for name, s in storages(repo).items():
        d = storage_dir(repo, s)
        out[name] = sorted(os.listdir(d)) if os.path.isdir(d) else []
    return out
