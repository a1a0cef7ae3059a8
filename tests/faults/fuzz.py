"""Fuzzed commands and write arguments: every call succeeds or raises a
MonotoneError (never another exception, never an internal error); what was
accepted is what is read, and the repository reopens with it."""
from __future__ import annotations

import random

import numpy as np
import workload
from damage import same
from procs import ALL, Failed, leaks, open_repo

import monotone

# fuzzed commands ------------------------------------------------------------------------------

NAMES = ["main", "s1", "s2", "hot", "cold", "c1", "x", "'quoted'", "'a b'", "'\0'", "''",
         "'\udcff'", "'é'", "TABLE", "'" + "n" * 300 + "'", "123", "-"]
VALUES = ["0", "1", "-1", "7", "1000", "18446744073709551615", "18446744073709551616",
          "99999999999999999999999", "'x'", "''", "true", "false", "'lz4'", "'zstd'", "'none'",
          "'aes'", "10KiB", "1G", "5min", "1day", "'1kb'", "'/'", "'..'", "'monotone.lock'",
          "'config.json'", "'wal'", "'s3://bucket/x'", "'\0'", "'\udc80x'", "'sub/dir'",
          "'" + "p" * 5000 + "'", "null", "(", ")", ",", "'" + "0" * 64 + "'"]
OPTIONS = ["path", "compression", "compression_level", "crc", "sync", "refresh_wm",
           "region_size", "encryption", "encryption_key", "cloud", "cloud_drop_local", "uuid",
           "type", "url", "access_key", "secret_key", "login", "password", "debug",
           "partitions", "size", "events", "duration", "bogus"]
VARS = ["interval", "compression", "compression_level", "wal_rotate_wm", "ssn", "lsn",
        "serial", "wal", "workers", "uuid", "mm_limit", "error_refresh_1", "error_wal",
        "error_refresh_3", "log", "nope", "wal_crc", "wal_recover", "mm_limit_behaviour"]
TEMPLATES = [
    "SET {var} TO {value}", "SHOW {var}", "SHOW {var}, {var}", "SHOW CONFIG", "SHOW ALL",
    "SHOW STORAGES", "SHOW STORAGE {name}", "SHOW PARTITIONS", "SHOW PARTITIONS {name}",
    "SHOW PARTITION {value}", "SHOW PARTITION {value} DEBUG", "SHOW CLOUDS", "SHOW PIPELINE",
    "SHOW WAL", "SHOW MEMORY", "SHOW WORKERS",
    "CREATE STORAGE {name}", "CREATE STORAGE IF NOT EXISTS {name} ({opts})",
    "CREATE STORAGE {name} ({opts})", "ALTER STORAGE {name} SET ({opts})",
    "ALTER STORAGE IF EXISTS {name} RENAME TO {name}", "ALTER STORAGE {name} RENAME {name}",
    "DROP STORAGE {name}", "DROP STORAGE IF EXISTS {name}",
    "CREATE CLOUD {name} ({opts})", "ALTER CLOUD {name} SET ({opts})",
    "ALTER CLOUD {name} RENAME TO {name}", "DROP CLOUD IF EXISTS {name}",
    "CREATE PARTITION {value} {value}", "CREATE PARTITION {value}",
    "DROP PARTITION {value}", "DROP PARTITION IF EXISTS {value} ON STORAGE",
    "DROP PARTITIONS BETWEEN {value} AND {value}", "DROP PARTITIONS BETWEEN {value} AND {value} ON CLOUD",
    "REFRESH PARTITION {value}", "REFRESH PARTITION IF EXISTS {value}",
    "REFRESH PARTITIONS BETWEEN {value} AND {value}",
    "MOVE PARTITION {value} INTO {name}", "MOVE PARTITIONS BETWEEN {value} AND {value} INTO {name}",
    "UPLOAD PARTITION {value}", "UPLOAD PARTITIONS BETWEEN {value} AND {value} IF CLOUD",
    "DOWNLOAD PARTITION IF EXISTS {value} IF CLOUD",
    "ALTER PIPELINE SET {name}", "ALTER PIPELINE SET {name} ({opts}), {name}",
    "ALTER PIPELINE RESET", "REBALANCE", "CHECKPOINT",
]


def random_statement(rng: random.Random) -> str:
    text = rng.choice(TEMPLATES)
    while "{" in text:
        text = (text.replace("{var}", rng.choice(VARS), 1)
                .replace("{value}", rng.choice(VALUES), 1)
                .replace("{name}", rng.choice(NAMES), 1)
                .replace("{opts}", ", ".join(f"{rng.choice(OPTIONS)} {rng.choice(VALUES)}"
                                             for _ in range(rng.randint(0, 3))), 1))
    if rng.random() < 0.25:  # mutate: drop, repeat or swap words, or insert a character
        words = text.split(" ")
        i = rng.randrange(len(words))
        op = rng.randrange(4)
        if op == 0 and len(words) > 1:
            del words[i]
        elif op == 1:
            words.insert(i, words[i])
        elif op == 2:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        else:
            w = words[i]
            k = rng.randint(0, len(w))
            words[i] = w[:k] + rng.choice("();,'\"`\0\n*-=.") + w[k:]
        text = " ".join(words)
    return text


def run_ddl_fuzz(repo: str, seed: int, statements: int) -> dict:
    """Random and mutated commands against an open repository with data: each one
    succeeds or raises a MonotoneError (never another exception, never an internal
    error); the repository stays usable and reopens with what it showed."""
    rng = random.Random(seed)
    db = open_repo(repo, workers=0, interval=workload.INTERVAL)
    gen = workload.plan(seed, 0, 120, deletes=True)
    counts = {"ok": 0, "error": 0, "reopened": 0, "batches": 0}
    try:
        for i in range(statements):
            if rng.random() < 0.15:
                try:
                    workload.write(db, next(gen))
                    counts["batches"] += 1
                except monotone.MonotoneError as e:
                    _no_internal(e, "a write")
            text = random_statement(rng)
            try:
                db.execute(text)
                counts["ok"] += 1
            except monotone.MonotoneError as e:
                _no_internal(e, text)
                counts["error"] += 1
            except Exception as e:
                raise Failed(f"{text!r} raised {type(e).__name__}: {e}") from None
            if i % 40 == 39 or i == statements - 1:
                seen = workload.read_everything(db)
                db.close()
                db = open_repo(repo)
                if not same(workload.read_everything(db), seen):
                    raise Failed(f"after {text!r}: what was read changed across close and "
                                 "open")
                counts["reopened"] += 1
    finally:
        db.close()
    left = leaks(repo)
    if left:
        raise Failed(f"left behind: {left}")
    return counts


def _no_internal(e: Exception, what: str) -> None:
    if "internal error" in str(e):
        raise Failed(f"{what!r}: {e}") from None


# fuzzed write arguments -----------------------------------------------------------------------


BAD = -1  # the count of a column that must be refused


def odd_column(rng: random.Random, n: int, key: bool):
    """(a values or keys argument, how many events it holds or BAD); fine ones mostly."""
    pick = rng.randrange(20)
    if pick < 5:
        return None, None
    if pick < 11:
        return [bytes(rng.randrange(256) for _ in range(rng.randrange(8))) for _ in range(n)], n
    if pick == 11:
        return [b"x"] * (n + 1), n + 1
    if pick == 12:
        return np.zeros((n, rng.randrange(0, 5)), np.uint8), n
    if pick == 13:
        lens = [rng.randrange(4) for _ in range(n)]
        off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        return (off, np.arange(int(off[-1]), dtype=np.uint8)), n
    if pick == 14:
        return [b"k" * 300] * n, (BAD if key and n else n)
    if pick == 15:
        return [bytearray(b"ab"), memoryview(b"cd"), b""][:n], min(n, 3)
    return rng.choice([np.zeros((n, 3), np.int16), ([0, 5, 2], np.zeros(10, np.uint8)),
                       ([-3, 0], np.zeros(4, np.uint8)), ([[0, 1], [2]], np.zeros(4, np.uint8)),
                       ["text"] * max(n, 1), (np.arange(n + 1, dtype=np.float64),
                                              np.zeros(n, np.uint8)), 42]), BAD


def odd_ids(rng: random.Random, n: int):
    """(an ids argument, how many ids or BAD; None: serial ids)."""
    base = rng.randrange(0, 5000)
    pick = rng.randrange(20)
    if pick < 3:
        return None, None
    if pick < 10:
        return np.arange(base, base + n, dtype=np.uint64), n
    if pick < 12:
        return list(range(base, base + n)), n
    if pick == 12:
        return np.full(n, base, np.uint32), n
    if pick == 13:
        return [2**64 - 1] * n, n  # the serial marker: serial ids
    return rng.choice([np.array([1.5] * max(n, 1), dtype=object), np.arange(max(n, 1), dtype=np.float64),
                       [[1, 2], [3]], np.array([-1] * max(n, 1), np.int64), [2**64] * max(n, 1),
                       np.array([True] * max(n, 1)), "0,1,2"]), BAD


def odd_deletes(rng: random.Random, n: int):
    pick = rng.randrange(10)
    if pick < 5:
        return None, None
    if pick < 8:
        return rng.choice([np.zeros(n, bool), np.ones(n, bool), np.array([1, 0] * n)[:n]]), n
    return rng.choice([[[True], [False, True]], np.full(max(n, 1), 2), ["yes"] * max(n, 1),
                       np.array([0.5] * max(n, 1))]), BAD


def expect_ok(ids_n, values_n, keys_n, deletes_n) -> bool:
    """Whether write_batch must accept these columns (by what each holds)."""
    counts = [ids_n, values_n, keys_n, deletes_n]
    if BAD in counts:
        return False
    if ids_n is None and values_n is None:
        return False  # nothing says how many events
    given = {c for c in counts if c is not None}
    return len(given) <= 1


def run_args_fuzz(repo: str, seed: int, calls: int) -> dict:
    """Random arguments to write_batch (and bad ones to write and cursor): what must be
    refused raises a MonotoneError, what is fine is written, and everything written
    reads back exactly as a dict model of the successful calls says."""
    rng = random.Random(seed)
    model: dict[tuple[int, bytes], bytes] = {}
    counts = {"ok": 0, "refused": 0}
    db = open_repo(repo, workers=0, interval=workload.INTERVAL)
    try:
        for _ in range(calls):
            n = rng.randrange(0, 6)
            (ids, ni), (values, nv) = odd_ids(rng, n), odd_column(rng, n, False)
            (keys, nk), (deletes, nd) = odd_column(rng, n, True), odd_deletes(rng, n)
            kwargs = {"ids": ids, "values": values, "keys": keys, "deletes": deletes}
            ok = expect_ok(ni, nv, nk, nd)
            try:
                written = db.write_batch(**kwargs)
            except monotone.MonotoneError as e:
                _no_internal(e, kwargs)
                if ok:
                    raise Failed(f"write_batch({kwargs!r}) refused fine input: {e}") from None
                counts["refused"] += 1
                continue
            except Exception as e:
                raise Failed(f"write_batch({kwargs!r}) raised {type(e).__name__}: {e}") from None
            if not ok:
                raise Failed(f"write_batch({kwargs!r}) accepted bad input")
            counts["ok"] += 1
            apply_model(model, written, kwargs)
            if rng.random() < 0.1:
                db.execute(ALL)
        for bad in (lambda: db.cursor(id=-1), lambda: db.cursor(id=1.5),
                    lambda: db.cursor(key="s"), lambda: db.write([1]),
                    lambda: db.write(monotone.Event(id=1)), lambda: db.execute(b"SHOW ALL")):
            try:
                bad()
            except monotone.MonotoneError:
                continue
            raise Failed("a bad call was accepted")
        got = workload.read_everything(db)
    finally:
        db.close()
    want = sorted(model.items())
    have = list(zip(zip(got[0].tolist(), got[1]), got[2]))
    if have != want:
        raise Failed(f"read {len(have)} events, the model has {len(want)}; first difference "
                     f"{next(((h, w) for h, w in zip(have, want) if h != w), None)}")
    left = leaks(repo)
    if left:
        raise Failed(f"left behind: {left}")
    counts["events"] = len(want)
    return counts


def _column(col, n: int) -> list[bytes]:
    if col is None:
        return [b""] * n
    if isinstance(col, np.ndarray):
        return [bytes(r) for r in col]
    if isinstance(col, tuple):
        off, data = np.asarray(col[0]).astype(np.int64), np.asarray(col[1])
        return [bytes(data[off[i]:off[i + 1]]) for i in range(n)]
    return [bytes(x) for x in col]


def apply_model(model: dict, ids, kwargs) -> None:
    ids = [int(i) for i in ids]
    n = len(ids)
    values, keys = _column(kwargs["values"], n), _column(kwargs["keys"], n)
    deletes = kwargs["deletes"]
    deletes = [False] * n if deletes is None else [bool(d) for d in np.asarray(deletes)]
    batch = {}
    for id_, key, value, delete in zip(ids, keys, values, deletes):
        batch[(id_, key)] = None if delete else value  # the last of equal keys wins
    for pk, value in batch.items():
        if value is None:
            model.pop(pk, None)
        else:
            model[pk] = value
