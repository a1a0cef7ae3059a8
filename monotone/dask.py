"""Dask over monotone's partition files: monotone.dask.read(location) is a
dask.dataframe.DataFrame indexed by id (uint64, sorted, divisions known) with
columns key and value (Arrow-backed binary): ddf.reset_index() has the columns
and dtypes of Cursor.to_pandas(), the one frame schema (frames.table_to_pandas).

One task per partition (a big partition is split by regions, offline.split);
each task reads its partition file directly, from local disk or the cloud,
with no coordinator, so it runs on any machine that can reach the files.
The divisions are the partitions' (or their regions') id bounds, so loc[a:b]
reads only the partitions holding ids a..b and joins on id need no shuffle.

location is one of these, or a list of them read as one frame (shards):
  a repository directory: the partition files of every storage (what was
      refreshed; events still only in memory are not read: CHECKPOINT first)
  a cloud storage's manifest URL (SHOW STORAGE name gives it): what that
      storage holds in its cloud, with storage_options to open it (for s3:
      key, secret, endpoint_url, ...); the repository need not exist at all
Parts of different locations whose ids overlap (shards that share an id range)
are read by one task, their events merged in id order: every event of every
location is in the frame once, and the divisions stay known. Shards with ids of
their own (a range each) keep a task per partition.

A partition reached twice is read once: the same storage's (a location given
twice, a repository and its own storage's manifest), or two copies of one
partition of a repository in two storages' manifests (a move under way: the
later copy is read). Each manifest is one consistent version; several are each
read twice, so that a partition moving once between two storages while they
are read is neither missed nor read twice (a move lists it where it goes before
it leaves where it was; one moving back and forth faster than the manifests are
read could still be missed). The `repository` a manifest gives is what tells
copies of one partition apart from partitions of other repositories: give
only locations whose writers are trusted alike.
storage_options and encryption_key apply to every location, or are given as a
list with an entry per location (None where a location needs none).
encryption_key: the storage's key, for an encrypted storage read through its
manifest (a manifest never holds keys; a repository's config file does). With
a key every file read must be encrypted, sealed for its partition of the
storage the manifest names: a plain file, or one moved from another partition,
is refused (an error of the task reading it), never read as data.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import MonotoneError
from .format.rows import MAX_ID, concat
from .offline import Part, from_manifest, from_repository, read_part, split
from .settings import CONFIG

SPLITTERS = 8  # big partitions whose index is read at once (a GET each, for an object)


def _need():
    try:
        import dask.dataframe as dd
        import pandas as pd
        import pyarrow as pa
    except ImportError as e:
        raise MonotoneError(f"monotone.dask needs dask, pandas and pyarrow "
                            f"({e.name} is missing): pip install 'monotone-py[dask]'") from None
    return dd, pd, pa


def _meta():
    _, pd, pa = _need()
    binary = pd.ArrowDtype(pa.large_binary())
    return pd.DataFrame({"key": pd.Series([], dtype=binary),
                         "value": pd.Series([], dtype=binary)},
                        index=pd.Index([], dtype="uint64", name="id"))


def frame(rows):
    """Rows as a pandas DataFrame of the frame schema (id uint64; key, value Arrow-backed
    binary), id a column; no per-event Python."""
    _need()
    from .event import Batch
    from .frames import table_to_pandas
    return table_to_pandas(Batch.of(rows).to_arrow())


def _task(group: list[dict], bounds: tuple[int, int]):
    """The events of parts (one, or several whose ids overlap) in id order, indexed by id."""
    rows = [read_part(part, *bounds) for part in group]  # each part keeps its own ids
    merged = concat(rows)
    if len(rows) > 1 and len(merged) > 1:
        merged = merged.take(np.argsort(merged.ids, kind="stable"))
    return frame(merged).set_index("id")


def parts(location: str, storage_options: dict | None = None,
          encryption_key: str | None = None) -> list[Part]:
    """The partitions at location (a repository directory or a manifest URL)."""
    if not isinstance(location, (str, os.PathLike)):
        raise MonotoneError(f"monotone.dask.read: a location is a repository directory or a "
                            f"manifest URL, got {type(location).__name__}")
    location = os.fspath(location)
    if "://" not in location:
        if os.path.isdir(location):
            if not os.path.lexists(os.path.join(location, CONFIG)):
                raise MonotoneError(_no_repository(location))
            return from_repository(location, encryption_key)
        try:
            os.lstat(location)
        except (FileNotFoundError, NotADirectoryError):
            raise MonotoneError(_nothing_at(location)) from None
        except OSError as e:
            raise MonotoneError(f"{location}: {e.strerror}") from None
    return from_manifest(location, storage_options, encryption_key)


def _no_repository(path: str) -> str:
    """What to say of a directory that is no repository: the repositories in it, if
    it holds some (the folder above the one meant)."""
    try:
        inside = sorted(os.path.join(path, name) for name in os.listdir(path)
                        if os.path.lexists(os.path.join(path, name, CONFIG)))
    except OSError:
        inside = []
    text = f"{path}: no repository here (no {CONFIG})"
    if inside:
        text += "; it holds " + ", ".join(inside[:3]) + (" ..." if len(inside) > 3 else "")
    return text


def _nothing_at(path: str) -> str:
    """What to say of a local path that names nothing: the first part of it that is
    missing, and the names beside it that are close (a typo)."""
    import difflib
    missing = os.path.abspath(path)
    while not os.path.lexists(os.path.dirname(missing)):
        missing = os.path.dirname(missing)
    where, name = os.path.split(missing)
    text = f"{path}: no such file or directory ({missing} does not exist)" if missing != \
        os.path.abspath(path) else f"{path}: no such file or directory"
    try:
        close = difflib.get_close_matches(name, os.listdir(where), n=3, cutoff=0.6)
    except OSError:
        close = []
    if close:
        text += "; beside it: " + ", ".join(os.path.join(where, c) for c in close)
    return text + (". A location is a repository's directory, or the manifest URL that "
                   "SHOW STORAGE gives (s3://bucket/manifest.json)")


def _each(value, locations: list[str], what: str) -> list:
    """A setting for every location: one for all, or a list with one each."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(locations):
            raise MonotoneError(f"monotone.dask.read: {what} has {len(value)} entries for "
                                f"{len(locations)} locations")
        return list(value)
    return [value] * len(locations)


def _spans(found: list[Part]) -> list[Part]:
    """The parts split by regions, the indexes of big ones read side by side."""
    with ThreadPoolExecutor(SPLITTERS) as pool:
        return [span for spans in pool.map(split, found) for span in spans]


def _groups(spans: list[Part], lo: int, hi: int) -> list[tuple[int, int, list[Part]]]:
    """(first id, last id, parts) of each task: parts in id order, those whose ids
    (clipped to lo..hi) overlap in one task."""
    out: list[tuple[int, int, list[Part]]] = []
    for span in sorted(spans, key=lambda p: p.ids):
        a, b = max(span.ids[0], lo), min(span.ids[1], hi)
        if a > b:
            continue
        if out and a <= out[-1][1]:
            first, last, group = out[-1]
            out[-1] = (first, max(last, b), group + [span])
        else:
            out.append((a, b, [span]))
    return out


def _collect(where: list[tuple], lo: int, hi: int) -> list[Part]:
    """The parts of every (location, options, key) holding ids lo..hi, each partition
    once (of two copies, the later). Several manifests are each read twice: a move
    lists a partition in the storage it moves to before it leaves the other, so one
    moving once between two of them while they are read is in one of the readings."""
    again = [(loc, options, key) for loc, options, key in where if _is_manifest(loc)] \
        if len(where) > 1 else []
    found: list[Part] = []
    at: dict[tuple[str, int], int] = {}
    for loc, options, key in where + again:
        for part in parts(loc, options, key):
            if part.max < lo or part.min > hi:
                continue
            same = (part.repository or part.storage, part.min)
            if not same[0]:
                found.append(part)
            elif same not in at:
                at[same] = len(found)
                found.append(part)
            elif part.newer > found[at[same]].newer:
                found[at[same]] = part
    return found


def _is_manifest(location) -> bool:
    location = os.fspath(location)
    return "://" in location or not os.path.isdir(location)


def read(location, *, min_id: int | None = None, max_id: int | None = None,
         storage_options=None, encryption_key=None):
    """A dask DataFrame of the events at location (or locations) with ids in
    [min_id, max_id], indexed by id with known divisions."""
    dd, _, _ = _need()
    lo = 0 if min_id is None else int(min_id)
    hi = MAX_ID if max_id is None else int(max_id)
    if lo < 0 or hi > MAX_ID or lo > hi:
        raise MonotoneError(f"monotone.dask.read: min_id {min_id} and max_id {max_id} are "
                            "not a range of ids")
    locations = list(location) if isinstance(location, (list, tuple)) else [location]
    if not locations:
        raise MonotoneError("monotone.dask.read: no location given")
    where = list(zip(locations, _each(storage_options, locations, "storage_options"),
                     _each(encryption_key, locations, "encryption_key")))
    found = _collect(where, lo, hi)
    groups = _groups(_spans(found), lo, hi)
    if not groups:
        return dd.from_pandas(_meta(), npartitions=1)
    divisions = tuple(first for first, _, _ in groups) + (groups[-1][1],)
    tasks = [[part.to_json() for part in group] for _, _, group in groups]
    return dd.from_map(_task, tasks, bounds=(lo, hi), meta=_meta(), divisions=divisions,
                       enforce_metadata=False)
