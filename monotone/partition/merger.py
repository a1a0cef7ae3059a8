"""The merger: the heavy part of a refresh, a frozen memtable merged with the
partition file into a new file (steps 2 and 3 of the protocol in refresh.py).

It runs in a worker process, or inline in the coordinator when workers = 0.
A job carries everything it needs by value, so a worker needs nothing else.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial

from .. import faults
from ..format.crypto import cipher_of
from ..format.rows import Rows, concat, drop_deletes
from ..settings import Place
from ..shm.memtable import MemtableCache
from ..store import store_of
from ..wal import files as wal_files
from .fileformat import Identity
from .files import PartitionFiles
from .merge import MergeIterator, sorted_rows
from .reader import Reader
from .writer import Writer


@dataclass
class MergeJob:
    slot: int
    min: int                 # the partition
    frozen: int              # memtable segment number
    frozen_rows: int
    source: Place | None     # where the current partition file is (None: no file)
    old_key: str             # its storage's key ('' when not encrypted)
    target: Place            # where the new file goes
    compression: str
    compression_level: int
    region_size: int
    key: str                 # target storage's key
    crc: bool
    sync: bool
    meta: dict
    switches: list = field(default_factory=list)  # fault points armed by error_* switches
    wal_dir: str = ""        # sync these WAL files before the new file counts (see run)
    append_at: int = 0       # the file's size, when the new events may be appended to it
    #                          (same storage); 0: a new file is written

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "MergeJob":
        source = data["source"] and Place.from_json(data["source"])
        return cls(**{**data, "source": source, "target": Place.from_json(data["target"])})


def run(job: MergeJob, memtables: MemtableCache) -> dict:
    """Write the new file as <min>.complete in the target; return its meta (with
    file_size)."""
    frozen = memtables.get(job.frozen)
    rows = sorted_rows(frozen, job.frozen_rows)
    meta = dict(job.meta, lsn=max(job.meta["lsn"], frozen.lsn_max))
    target = PartitionFiles(store_of(job.target), job.sync)
    old = None
    if job.source is not None:
        old = Reader(PartitionFiles(store_of(job.source)).open(job.min, job.append_at or None),
                     cipher_of(job.old_key), Identity(job.source.uuid, job.min))
        keep = _appendable(job, old, rows) if job.append_at else None
        if keep is not None:
            return _append(job, target, old, drop_deletes(rows), meta, keep)
    # step 2
    writer = Writer(target.create(job.min), job.compression, job.compression_level,
                    job.region_size, cipher_of(job.key), job.crc, job.sync,
                    Identity(job.target.uuid, job.min))
    try:
        _merge_into(writer, old, rows, job.key == job.old_key)
        meta = writer.finish(meta, job.sync)
    except BaseException:
        writer.abort()
        raise
    finally:
        if old is not None:
            old.close()
    if job.wal_dir:
        # the WAL before the data: once the file counts, replay skips records up to
        # its lsn in every partition, so the records of a batch it holds part of
        # must be on disk too, or a power failure could leave the rest of it lost
        wal_files.sync_files(job.wal_dir)
    faults.point("refresh_1", job.switches)
    # step 3
    target.complete(job.min)
    faults.point("refresh_2", job.switches)
    return meta


DEAD_SHARE = 4  # an append is made while old indexes take at most 1/4 of the file


def _appendable(job: MergeJob, old: Reader, rows: Rows) -> int | None:
    """How many of the file's regions an append keeps (a last one not full is written
    again, with the new rows after it, so appends leave no small region each), or
    None when the memtable rows cannot be appended: they must all come after its
    last event, its regions stay valid as they are stored in the file it becomes
    (codec, checksums, key and seal), and the bytes no region kept covers (old
    indexes, a region written again) stay under 1/DEAD_SHARE of the file (past
    that, a full rewrite drops them)."""
    index, n = old.index, len(rows)
    if not n or not len(drop_deletes(rows)) or not index.regions or \
            old.codec.name != job.compression or \
            bool(old.meta.get("crc", True)) != job.crc:
        return None
    if (old.cipher is None) != (not job.key) or old.cipher is not None and \
            (job.key != job.old_key or not old.bound or
             old.identity != Identity(job.target.uuid, job.min)):
        return None
    last = index.regions - 1
    if (int(rows.ids[0]), rows.key(0)) <= (int(index.entries["max_id"][last]),
                                           index.max_key(last)):
        return None
    fill = _to_fill(old, job.region_size, rows)
    keep = index.regions if fill < 0 else fill
    dead = job.append_at - int(index.entries["size"][:keep].sum())
    return keep if dead * DEAD_SHARE <= job.append_at else None


def _append(job: MergeJob, target: PartitionFiles, old: Reader, rows: Rows, meta: dict,
            keep: int) -> dict:
    """Steps 2 and 3 of an append: the memtable rows (after the file's first keep
    regions: a region past them is written again before them) written after the
    file's end as new regions, then an index of all regions and a footer, in place (the marker
    <min>.append, made first, lets recovery cut an append cut short). The footer,
    written last once the rest and the WAL are on disk, makes it count; readers go
    by the size the partition map gives until the switch."""
    try:
        handle = target.begin_append(job.min, job.append_at)
        faults.point("append.marked", job.switches)
        writer = Writer(handle, job.compression, job.compression_level, job.region_size,
                        cipher_of(job.key), job.crc, job.sync, Identity(job.target.uuid, job.min))
        writer.extend(old.index, job.append_at, keep)
        if keep < old.index.regions:
            rows = concat([old.read_region(keep), rows])

        def before_footer() -> None:
            faults.point("append.written", job.switches)
            if job.wal_dir:  # as in run: the WAL before the data counts
                wal_files.sync_files(job.wal_dir)
        try:
            writer.add(drop_deletes(rows))
            meta = writer.finish(meta, job.sync, before_footer)
        except BaseException:
            writer.abort()
            target.end_append(job.min)
            raise
    finally:
        old.close()
    faults.point("refresh_1", job.switches)
    return dict(meta, appended=True)


def _merge_into(writer: Writer, reader: Reader | None, mem: Rows, same_key: bool) -> None:
    """Stream the old file's regions merged with the sorted memtable rows.

    A region no memtable row falls into is copied as it is stored (appends
    after the file's last event, the common case, touch no full region), as
    long as its stored form stays valid in the new file: the same codec, and
    for an encrypted one the same key, the same storage (a refresh, not a
    move), a file sealed bound (an older one is rewritten whole, bound from
    then on: fileformat) and the same region number at the same offset. A
    last region not yet full is filled with the rows after it instead, so
    refreshes of a growing partition do not leave a small region each.
    """
    take_stored = None
    if reader is not None and reader.codec.name == writer.codec.name and \
            (reader.cipher is None) == (writer.cipher is None) and \
            (reader.cipher is None or same_key and reader.bound and
             reader.identity == writer.identity):
        take_stored = partial(_take_stored, reader, writer,
                              _to_fill(reader, writer.region_size, mem))
    for rows in MergeIterator(reader, [mem], take_stored=take_stored, windowed=False):
        writer.add(rows)


def _take_stored(reader: Reader, writer: Writer, fill: int, i: int) -> bool:
    """Copy region i, which no memtable row falls into, as it is stored; not the
    region to fill, nor one sealed for another place than it would land at (region
    number and offset)."""
    entry = reader.index.entries[i]
    if i == fill or (reader.cipher is not None and
                     (int(entry["offset"]) != writer.offset or writer.pending or
                      i != writer.index.regions)):
        return False
    writer.add_stored(reader.read_stored(i), entry, reader.index.min_key(i),
                      reader.index.max_key(i))
    return True


def _to_fill(reader: Reader, region_size: int, mem: Rows) -> int:
    """The file's last region, when it is not full and memtable rows come after
    it (-1 otherwise)."""
    index, last, n = reader.index, reader.index.regions - 1, len(mem) - 1
    if last < 0 or n < 0 or int(index.entries["size_origin"][last]) >= region_size:
        return -1
    after = (int(mem.ids[n]), mem.key(n)) > (int(index.entries["max_id"][last]),
                                             index.max_key(last))
    return last if after else -1
