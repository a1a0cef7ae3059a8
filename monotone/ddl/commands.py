"""Typed command records produced by the parser."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Set:
    name: str
    value: Any


@dataclass(frozen=True)
class Show:
    what: str                  # "var", "config", "all", "list", "partitions", "partition", "wal"
    names: tuple = ()
    id: int | None = None
    debug: bool = False


@dataclass(frozen=True)
class Refresh:
    min: int
    max: int | None = None     # None: one partition
    if_exists: bool = False


@dataclass(frozen=True)
class Checkpoint:
    pass
