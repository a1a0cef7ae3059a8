"""The language's own reference, for `help` at the prompt.

One entry per command: its syntax, what it does, and an example (tests parse
every example, so this page cannot drift from the parser).
"""
from __future__ import annotations

import re
from typing import NamedTuple


class Entry(NamedTuple):
    syntax: str
    summary: str
    text: str
    example: str


STORAGE_OPTIONS = """\
Storage options:
  path 'dir'               where its files go (absolute, or relative to the repository)
  cloud 'name'             the cloud its partitions are uploaded to
  cloud_drop_local bool    drop the local copy once uploaded (true)
  sync bool                fsync partition files (true)
  crc bool                 region checksums (true)
  refresh_wm size          memtable bytes that start a background refresh (40MiB)
  region_size size         bytes of events per region (128KiB)
  compression 'lz4|zstd|none', compression_level int
  encryption 'none|aes', encryption_key '64 hex digits' (made when absent)
  uuid 'uuid'
Sizes take units (10G, 150KiB); durations too (1day, 5min)."""

CLOUD_OPTIONS = """\
Cloud options:
  type 's3|mock|<fsspec protocol>'
  url 'host:port'          the endpoint (s3), or the root (other protocols)
  access_key / login, secret_key / password   (shown as "(secret)")
  connect_timeout int      seconds to connect (5)
  read_timeout int         seconds without a byte before a request is given up (15)
  retries int              more attempts after a timeout, a reset or a 5xx (3)
  removal_delay duration   how long an object the manifest no longer names stays (1 hour)
  debug bool"""

STORAGE_OPTION_NAMES = ("path", "cloud", "cloud_drop_local", "sync", "crc", "refresh_wm",
                        "region_size", "compression", "compression_level", "encryption",
                        "encryption_key", "uuid")
CLOUD_OPTION_NAMES = ("type", "url", "access_key", "login", "secret_key", "password",
                      "connect_timeout", "read_timeout", "retries", "removal_delay", "debug")
RETENTION_NAMES = ("partitions", "size", "events", "duration")

ENTRIES: dict[str, Entry] = {
    "SET": Entry(
        "SET name TO value",
        "change a configuration variable",
        "Variables marked C are set before open(); the others at any time.\n"
        "`help SET` at the prompt lists them with their values.",
        "SET serial TO false"),
    "SHOW": Entry(
        "SHOW name | CONFIG [name] | ALL | a, b, ...\n"
        "SHOW STORAGES | STORAGE name | CLOUDS | CLOUD name\n"
        "SHOW PARTITIONS [storage] | PARTITION id [debug]\n"
        "SHOW PIPELINE | WAL | MEMORY | CACHE | WORKERS",
        "print variables, storages, clouds, partitions and state as JSON",
        "From Python, db.show('PARTITIONS') returns the same as Python objects.",
        "SHOW PARTITIONS"),
    "CREATE STORAGE": Entry(
        "CREATE STORAGE [IF NOT EXISTS] name [(option value, ...)]",
        "define a storage: a directory for partition files, with its settings",
        STORAGE_OPTIONS,
        "CREATE STORAGE IF NOT EXISTS hot (compression 'zstd', region_size 256KiB)"),
    "ALTER STORAGE": Entry(
        "ALTER STORAGE [IF EXISTS] name RENAME TO new\n"
        "ALTER STORAGE [IF EXISTS] name SET (option value, ...)",
        "rename a storage or change its options",
        "path and encryption change only while the storage is empty; cloud only while\n"
        "none of its partitions is on the cloud.\n" + STORAGE_OPTIONS,
        "ALTER STORAGE hot SET (refresh_wm 64MiB)"),
    "DROP STORAGE": Entry(
        "DROP STORAGE [IF EXISTS] name",
        "remove an empty storage that is not in the pipeline",
        "main cannot be dropped.",
        "DROP STORAGE IF EXISTS hot"),
    "CREATE CLOUD": Entry(
        "CREATE CLOUD [IF NOT EXISTS] name (option value, ...)",
        "define an object store that storages upload to",
        CLOUD_OPTIONS,
        "CREATE CLOUD s3 (type 's3', url 'localhost:9000', access_key 'a', secret_key 'b')"),
    "ALTER CLOUD": Entry(
        "ALTER CLOUD [IF EXISTS] name RENAME TO new\n"
        "ALTER CLOUD [IF EXISTS] name SET (option value, ...)",
        "rename a cloud or change its options",
        CLOUD_OPTIONS,
        "ALTER CLOUD s3 SET (debug true)"),
    "DROP CLOUD": Entry(
        "DROP CLOUD [IF EXISTS] name",
        "remove a cloud no storage uses",
        "",
        "DROP CLOUD IF EXISTS s3"),
    "CREATE PARTITION": Entry(
        "CREATE PARTITION min max",
        "create empty partitions for the ids min..max",
        "Over existing partitions, only the gaps between them are created.",
        "CREATE PARTITION 0 999999"),
    "DROP PARTITION": Entry(
        "DROP PARTITION [IF EXISTS] id [ON STORAGE | ON CLOUD]\n"
        "DROP PARTITIONS BETWEEN min AND max [ON STORAGE | ON CLOUD]",
        "drop partitions with their events, or only their local or cloud copy",
        "Range commands act on the partitions wholly inside [min, max] and are silent\n"
        "when there are none; a single partition must exist unless IF EXISTS.",
        "DROP PARTITIONS BETWEEN 0 AND 2999999"),
    "REFRESH PARTITION": Entry(
        "REFRESH PARTITION [IF EXISTS] id\n"
        "REFRESH PARTITIONS BETWEEN min AND max",
        "write partitions' events in memory into their files",
        "The file is replaced atomically; the memory and the WAL files it needed are freed.\n"
        "From the command line, a range shows its progress.",
        "REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615"),
    "MOVE PARTITION": Entry(
        "MOVE PARTITION [IF EXISTS] id INTO storage\n"
        "MOVE PARTITIONS BETWEEN min AND max INTO storage",
        "refresh partitions into another storage, with its settings",
        "",
        "MOVE PARTITIONS BETWEEN 0 AND 999999 INTO main"),
    "UPLOAD PARTITION": Entry(
        "UPLOAD PARTITION [IF EXISTS] id [IF CLOUD]\n"
        "UPLOAD PARTITIONS BETWEEN min AND max [IF CLOUD]",
        "copy partition files to their storage's cloud",
        "A partition whose storage has no cloud is an error unless IF CLOUD.",
        "UPLOAD PARTITIONS BETWEEN 0 AND 999999 IF CLOUD"),
    "DOWNLOAD PARTITION": Entry(
        "DOWNLOAD PARTITION [IF EXISTS] id [IF CLOUD]\n"
        "DOWNLOAD PARTITIONS BETWEEN min AND max [IF CLOUD]",
        "copy partition files from the cloud back to local disk",
        "A partition whose storage has no cloud is an error unless IF CLOUD.",
        "DOWNLOAD PARTITION IF EXISTS 0 IF CLOUD"),
    "ALTER PIPELINE": Entry(
        "ALTER PIPELINE SET storage [(retention value, ...)] [, ...]\n"
        "ALTER PIPELINE RESET",
        "set the tiers partitions go through, oldest first out",
        "The first tier is where new partitions are made. Retention: partitions, size,\n"
        "events, duration; past it the oldest partition moves to the next tier, or is\n"
        "dropped from the last. Every tier but the last needs one.",
        "ALTER PIPELINE SET main (partitions 10), cold"),
    "REBALANCE": Entry(
        "REBALANCE",
        "apply the pipeline's retention now",
        "Workers apply it in the background too.",
        "REBALANCE"),
    "CHECKPOINT": Entry(
        "CHECKPOINT",
        "refresh, in the background, every partition with events in memory",
        "From the command line it waits for those refreshes, showing their progress.",
        "CHECKPOINT"),
    "SERVICE": Entry(
        "SERVICE",
        "run one step of queued background work now (for workers 0)",
        "",
        "SERVICE"),
}


def topic(words: str) -> str | None:
    """The entry a `help` argument names ('create storage', 'refresh partitions', 'show')."""
    key = " ".join(words.upper().split())
    key = re.sub(r"\bPARTITIONS\b", "PARTITION", key)
    if key in ENTRIES:
        return key
    matches = [name for name in ENTRIES if name.startswith(key + " ") or name.split()[0] == key]
    return matches[0] if len(matches) == 1 else None


def overview() -> str:
    width = max(len(name) for name in ENTRIES)
    lines = ["Commands (case-insensitive; end one with ';' to put another after it):"]
    lines += [f"  {name:<{width}}  {entry.summary}" for name, entry in ENTRIES.items()]
    lines.append("help COMMAND for one command, e.g. `help CREATE STORAGE`. quit or Ctrl-D leaves.")
    return "\n".join(lines)


def describe(name: str) -> str:
    entry = ENTRIES[name]
    parts = [entry.syntax, "", entry.summary[0].upper() + entry.summary[1:] + "."]
    if entry.text:
        parts += ["", entry.text]
    parts += ["", f"Example: {entry.example}"]
    return "\n".join(parts)
