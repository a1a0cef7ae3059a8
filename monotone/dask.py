"""Dask over monotone's partition files: monotone.dask.read(location) is a
dask.dataframe.DataFrame with columns id (uint64), key and value (binary).

One task per partition (a big partition is split by regions, offline.split);
each task reads its partition file directly, from local disk or the cloud,
with no coordinator, so it runs on any machine that can reach the files.
location is
  a repository directory: the partition files of every storage (what was
      refreshed; events still only in memory are not read: CHECKPOINT first)
  a cloud storage's manifest URL (SHOW STORAGE name gives it): what that
      storage holds in its cloud, with storage_options to open it (for s3:
      key, secret, endpoint_url, ...); the repository need not exist at all
encryption_key: the storage's key, for an encrypted storage read through its
manifest (a manifest never holds keys; a repository's config file does). With
a key every file read must be encrypted, sealed for its partition of the
storage the manifest names: a plain file, or one moved from another partition,
is refused (an error of the task reading it), never read as data.
"""
from __future__ import annotations

from .errors import MonotoneError
from .format.rows import MAX_ID
from .offline import Part, from_manifest, from_repository, read_part, split


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
    return pd.DataFrame({"id": pd.Series([], dtype="uint64"),
                         "key": pd.Series([], dtype=binary),
                         "value": pd.Series([], dtype=binary)})


def frame(rows):
    """Rows as a pandas DataFrame (id uint64; key, value large_binary), no
    per-event Python."""
    from .event import Batch
    _, pd, pa = _need()
    batch = Batch.of(rows).to_arrow()
    return batch.to_pandas(types_mapper={pa.large_binary(): pd.ArrowDtype(pa.large_binary())}.get)


def _task(part: dict, bounds: tuple[int, int]):
    return frame(read_part(part, *bounds))


def parts(location: str, storage_options: dict | None = None,
          encryption_key: str | None = None) -> list[Part]:
    """The partitions at location (a repository directory or a manifest URL)."""
    import os
    if "://" not in location and os.path.isdir(location):
        return from_repository(location, encryption_key)
    return from_manifest(location, storage_options, encryption_key)


def read(location: str, *, min_id: int | None = None, max_id: int | None = None,
         storage_options: dict | None = None, encryption_key: str | None = None):
    """A dask DataFrame of the events at location with ids in [min_id, max_id]."""
    dd, _, _ = _need()
    lo = 0 if min_id is None else int(min_id)
    hi = MAX_ID if max_id is None else int(max_id)
    if lo < 0 or hi > MAX_ID or lo > hi:
        raise MonotoneError(f"monotone.dask.read: min_id {min_id} and max_id {max_id} are "
                            "not a range of ids")
    tasks = [p.to_json() for part in parts(location, storage_options, encryption_key)
             if part.max >= lo and part.min <= hi for p in split(part)]
    if not tasks:
        return dd.from_pandas(_meta(), npartitions=1)
    return dd.from_map(_task, tasks, bounds=(lo, hi), meta=_meta(), enforce_metadata=False)
