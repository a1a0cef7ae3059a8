"""Typed command records produced by the parser, one class per command."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Options = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Set:
    name: str
    value: Any


@dataclass(frozen=True)
class ShowItem:
    what: str                 # memory cache wal workers clouds cloud storages storage partition
    name: str | None = None   # partitions pipeline config var
    id: int | None = None
    debug: bool = False


@dataclass(frozen=True)
class Show:
    items: tuple[ShowItem, ...]


@dataclass(frozen=True)
class _Create:
    name: str
    options: Options = ()
    if_not_exists: bool = False


@dataclass(frozen=True)
class _Alter:
    name: str
    rename: str | None = None
    options: Options = ()
    if_exists: bool = False


@dataclass(frozen=True)
class _Drop:
    name: str
    if_exists: bool = False


class CreateStorage(_Create):
    pass


class AlterStorage(_Alter):
    pass


class DropStorage(_Drop):
    pass


class CreateCloud(_Create):
    pass


class AlterCloud(_Alter):
    pass


class DropCloud(_Drop):
    pass


@dataclass(frozen=True)
class CreatePartition:
    min: int
    max: int | None = None


@dataclass(frozen=True)
class PartitionCommand:
    """A command on one partition (max is None: the one containing min) or a range."""
    min: int
    max: int | None = None
    if_exists: bool = False

    @property
    def single(self) -> bool:
        return self.max is None


def range_members(bounds, lo: int, hi: int) -> list[int]:
    """Positions in bounds ((min, max) of each partition, in order) of the partitions a
    range command acts on: wholly inside [lo, hi], from the one holding or following lo
    up to the first that is not (the original's range semantics)."""
    out = []
    for i, (min_, max_) in enumerate(bounds):
        if max_ < lo:
            continue
        if min_ < lo or max_ > hi:
            break
        out.append(i)
    return out


@dataclass(frozen=True)
class Refresh(PartitionCommand):
    pass


@dataclass(frozen=True)
class Move(PartitionCommand):
    into: str = ""


@dataclass(frozen=True)
class Drop(PartitionCommand):
    on: str | None = None     # None, "storage" or "cloud"


@dataclass(frozen=True)
class Upload(PartitionCommand):
    if_cloud: bool = False


@dataclass(frozen=True)
class Download(PartitionCommand):
    if_cloud: bool = False


@dataclass(frozen=True)
class Tier:
    storage: str
    options: Options = ()


@dataclass(frozen=True)
class AlterPipeline:
    tiers: tuple[Tier, ...] = ()   # empty: RESET


@dataclass(frozen=True)
class Rebalance:
    pass


@dataclass(frozen=True)
class Checkpoint:
    pass


@dataclass(frozen=True)
class Service:
    """Run the next step of background work now (refresh, rebalance): with
    workers = 0 nothing else runs it."""
