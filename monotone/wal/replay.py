"""Replay: every intact WAL record of a repository, in lsn order.

A torn tail (a write cut short) is cut. Damage anywhere else is an error,
unless the caller recovers: then the damaged records are skipped, and once
what the files held is applied, settle() rewrites them without the damage.
Files that are not this repository's stop the replay before anything is read
(files.check_files)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from . import files
from .records import Record

log = logging.getLogger("monotone")


@dataclass
class Replay:
    records: list[Record]  # in lsn order
    files: int
    damaged: list[files.WalFile] = field(default_factory=list)
    sealed: dict[str, tuple[int, str]] = field(default_factory=dict)

    def settle(self) -> None:
        """Rewrite the damaged files without their damage (their records are applied by now,
        so the next open reads them cleanly)."""
        for wf in self.damaged:
            files.rewrite(wf)
            if wf.path in self.sealed:
                files.unseal(self.sealed[wf.path][1])


def read(directory: str, uuid: str, recover: bool) -> Replay:
    """The records of directory's WAL files, torn tails cut; damage raises unless recover."""
    files.check_files(directory, uuid)
    files.remove_stale(directory)
    paths = files.wal_files(directory)
    sealed = files.sealed_sizes(paths)
    found = [files.read_file(path, sealed[path][0] if path in sealed else None)
             for path in paths]
    damaged = [wf for wf in found if wf.damaged]
    if damaged and not recover:
        raise damaged[0].damage_error()
    records = []
    for wf in found:
        if files.cut_tail(wf):
            log.warning("wal file %s: torn record at offset %d, tail cut (%d bytes)",
                        wf.path, wf.torn, wf.size - wf.torn)
        for offset, length in wf.damaged:
            log.error("wal file %s: damaged record at offset %d skipped (%d bytes; "
                      "wal_recover is set)", wf.path, offset, length)
        records.extend(wf.records)
    records.sort(key=lambda r: r.lsn)
    return Replay(records, len(found), damaged, sealed)
