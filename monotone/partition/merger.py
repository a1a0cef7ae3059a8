"""The merger: the heavy part of a refresh, a frozen memtable merged with the
partition file into a new file (steps 2 and 3 of the protocol in refresh.py).

It runs in a worker process, or inline in the coordinator when workers = 0.
A job carries everything it needs by value, so a worker needs nothing else.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from monotone.format.rows import Ordered, Rows, drop_deletes, merge

from .. import faults
from ..format.crypto import Cipher, parse_key
from ..shm.memtable import MemtableCache
from ..snapshot import sorted_rows
from ..store import store_of
from ..wal import files as wal_files
from .files import PartitionFiles
from .reader import Reader
from .writer import Writer


@dataclass
class MergeJob:
    slot: int
    min: int                 # the partition
    frozen: int              # memtable segment number
    frozen_rows: int
    source: dict | None      # the store of the current partition file (None: no file)
    old_key: str             # its storage's key ('' when not encrypted)
    target: dict             # the store the new file goes to
    compression: str
    compression_level: int
    region_size: int
    key: str                 # target storage's key
    crc: bool
    sync: bool
    meta: dict
    switches: list = field(default_factory=list)  # fault points armed by error_* switches
    wal_dir: str = ""        # sync these WAL files before the new file counts (see run)

    def to_json(self) -> dict:
        return asdict(self)


def _cipher(key: str) -> Cipher | None:
    return Cipher(parse_key(key)) if key else None


def run(job: MergeJob, memtables: MemtableCache) -> dict:
    """Write the new file as <min>.complete in the target; return its meta (with
    file_size)."""
    frozen = memtables.get(job.frozen)
    rows = sorted_rows(frozen, job.frozen_rows)
    meta = dict(job.meta, lsn=max(job.meta["lsn"], frozen.lsn_max))
    target = PartitionFiles(store_of(job.target), job.sync)
    old = None
    if job.source is not None:
        old = Reader(PartitionFiles(store_of(job.source)).open(job.min), _cipher(job.old_key))
    # step 2
    writer = Writer(target.create(job.min), job.compression, job.compression_level,
                    job.region_size, _cipher(job.key), job.crc, job.sync)
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


def _merge_into(writer: Writer, reader: Reader | None, mem: Rows, same_key: bool) -> None:
    """Stream the old file's regions merged with the sorted memtable rows.

    A region no memtable row falls into is copied as it is stored (appends
    after the file's last event, the common case, touch no full region), as
    long as its stored form stays valid in the new file: the same codec, and
    for an encrypted one the same key at the same offset. A last region not
    yet full is filled with the rows after it instead, so refreshes of a
    growing partition do not leave a small region each.
    """
    ordered, pos = Ordered(mem), 0
    if reader is not None:
        index = reader.index
        entries = index.entries
        copy = reader.codec.name == writer.codec.name and \
            (reader.cipher is None) == (writer.cipher is None) and \
            (reader.cipher is None or same_key)
        for i in range(index.regions):
            upper = ordered.bound(int(entries["max_id"][i]), index.max_key(i), "right")
            filling = i == index.regions - 1 and upper < len(mem) and \
                int(entries["size_origin"][i]) < writer.region_size
            if copy and upper == pos and not filling and (reader.cipher is None or
                                          int(entries["offset"][i]) == writer.offset
                                          and not writer.pending):
                writer.add_stored(reader.read_stored(i), entries[i], index.min_key(i),
                                  index.max_key(i))
                continue
            region = reader.read_region(i)
            writer.add(drop_deletes(merge([region, mem.slice(pos, upper)])))
            pos = upper
    writer.add(drop_deletes(mem.slice(pos, len(mem))))
