"""The corruption campaign: one damaged file (partition file, WAL, config.json) at a
time, in a copy of a repository. The open reads exactly what was written, or
fails with a MonotoneError (and restoring the file gives everything back), or,
for a WAL, loses only whole batches recorded at or after the damage."""
from __future__ import annotations

import os
import random
import shutil

import numpy as np
import workload
from procs import Failed, leaks, open_repo

import monotone

# damaged files ---------------------------------------------------------------------------


def read_state(repo: str):
    """(ids, keys, values) of everything, with a fresh open (workers off)."""
    db = open_repo(repo, workers=0)
    try:
        return workload.read_everything(db)
    finally:
        db.close()


def build_damage_base(repo: str, seed: int) -> dict:
    """A closed repository with partition files (some encrypted or zstd), several WAL
    files and config.json, holding batches of one writer without deletes. Checksums
    are on (the default): without them damage inside an event's value cannot be
    told from the value."""
    rng = random.Random(seed)
    db = open_repo(repo, workers=0, interval=workload.INTERVAL * 10,
                   wal_rotate_wm=rng.choice([32 * 1024, 128 * 1024]))
    db.execute(f"ALTER STORAGE main SET (compression '{rng.choice(['lz4', 'zstd', 'none'])}')")
    if rng.random() < 0.4:
        db.execute("CREATE STORAGE vault (encryption 'aes', compression 'zstd')")
        db.execute("ALTER PIPELINE SET vault")  # main after it would never be reached
    gen = workload.plan(seed, 0, 200, deletes=False)
    batches = [next(gen) for _ in range(rng.randint(40, 80))]
    for i, batch in enumerate(batches):
        workload.write(db, batch)
        if i == len(batches) // 2:
            db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {workload.SPAN // 2}")
    db.close()
    return {"batches": batches}


def targets(repo: str) -> list[str]:
    out = [os.path.join(repo, "config.json")]
    for dirpath, _, files in os.walk(repo):
        for name in files:
            path = os.path.join(dirpath, name)
            if name.endswith(".wal") or name.isdigit():
                out.append(path)
    return sorted(out)


def damage(path: str, rng: random.Random) -> tuple[str, int]:
    """Damage a file at random; return (what was done, offset of the first byte hit)."""
    data = bytearray(open(path, "rb").read())
    n = len(data)
    kind = rng.choice(["flip", "flip", "flip", "flips", "truncate", "zero", "zero-tail",
                       "garbage"] if n else ["garbage"])
    if kind == "flip":
        at = rng.randrange(n)
        data[at] ^= 1 << rng.randrange(8)
    elif kind == "flips":
        spots = sorted(rng.randrange(n) for _ in range(rng.randint(2, 6)))
        for spot in spots:
            data[spot] ^= rng.randrange(1, 256)
        at = spots[0]
    elif kind == "truncate":
        at = rng.randrange(n)
        del data[at:]
    elif kind == "zero":
        at = rng.randrange(n)
        length = rng.randint(1, 64)
        data[at:at + length] = bytes(len(data[at:at + length]))
    elif kind == "zero-tail":
        at = rng.randrange(n)
        data[at:] = bytes(n - at)
    else:
        at = n
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    with open(path, "wb") as f:
        f.write(data)
    return kind, at


def run_damage(base: str, work: str, seed: int, expected) -> str:
    """One damaged file in a copy of base: the open either reads exactly what was
    written, or fails with a MonotoneError (and restoring the file gives everything
    back), or, for a WAL file, loses only whole batches recorded at or after the
    damage (a torn tail). Anything else is a broken promise."""
    rng = random.Random(seed)
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work, symlinks=True)
    victim = rng.choice(targets(work))
    original = open(victim, "rb").read()
    kind, at = damage(victim, rng)
    where = f"{os.path.relpath(victim, work)} {kind}@{at}"
    may_lose = wal_records_after(original, at) if victim.endswith(".wal") else set()
    try:
        got = read_state(work)
    except monotone.MonotoneError as e:
        if str(e).startswith("internal error") or "internal error" in str(e):
            raise Failed(f"{where}: {e}") from None
        with open(victim, "wb") as f:
            f.write(original)
        if not same(read_state(work), expected):
            raise Failed(f"{where}: after a failed open and the file restored, the data "
                         "is not what was written") from None
        leftover = leaks(work)
        if leftover:
            raise Failed(f"{where}: left behind {leftover}")
        return f"{where}: error ({type(e).__name__})"
    if same(got, expected):
        outcome = "read whole"
    else:
        lost = lost_batches(got, expected)
        if lost is None:
            raise Failed(f"{where}: wrong data returned (not just whole batches missing)")
        if not lost <= may_lose:
            raise Failed(f"{where}: lost batches not at the damaged tail: "
                         f"{sorted(lost - may_lose)[:3]}")
        outcome = f"tail cut ({len(lost)} batches)"
    leftover = leaks(work)
    if leftover:
        raise Failed(f"{where}: left behind {leftover}")
    return f"{where}: {outcome}"


def wal_records_after(original: bytes, offset: int) -> set[bytes]:
    """Keys of the batches whose records, in the undamaged WAL file, end after offset."""
    from monotone.wal import records as walfmt
    buf, pos, keys = memoryview(original), 0, set()
    while pos < len(buf):
        rec = walfmt.decode_at(buf, pos, "wal")
        if rec is None:
            break
        if pos + rec.size > offset and rec.rows is not None and len(rec.rows):
            keys.add(rec.rows.key(0))
        pos += rec.size
    return keys


def same(a, b) -> bool:
    return np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]


def lost_batches(got, expected) -> set[bytes] | None:
    """Keys of the batches missing from got, when got is expected minus whole batches."""
    want = {(i, k): v for i, k, v in zip(expected[0].tolist(), expected[1], expected[2])}
    have = {(i, k): v for i, k, v in zip(got[0].tolist(), got[1], got[2])}
    if any(want.get(key) != value for key, value in have.items()):
        return None
    missing = set(want) - set(have)
    keys = {k for _, k in missing}
    if any((i, k) in have for i, k in want if k in keys):
        return None  # a batch in part
    return keys


def run_corruption(root: str, seed: int, trials: int) -> list[str]:
    base, work = os.path.join(root, "base"), os.path.join(root, "work")
    build_damage_base(base, seed)
    expected = read_state(base)
    if leaks(base):
        raise Failed("building the repository left something behind")
    out = []
    for i in range(trials):
        out.append(run_damage(base, work, seed * 1000 + i, expected))
    return out
