"""Damaged partition files: a flipped region, index or footer byte, or a truncated
file, is an error naming the file, never data."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import ALL, open_db
from readback import read_all
from repo_files import flip, partition_files, storage_dir

import monotone
from monotone import Event
from monotone.partition import fileformat as partition

# damaged files ---------------------------------------------------------------------------


def refreshed_closed(repo, n=10_000):
    db = open_db(repo)
    vals = np.empty((n, 100), np.uint8)
    vals[:] = (np.arange(n) % 251).astype(np.uint8)[:, None]
    db.write_batch(ids=np.arange(n, dtype=np.uint64), values=vals)
    db.execute(ALL)
    p = json.loads(db.execute("SHOW PARTITION 0"))
    assert p["regions"] > 2
    uuid = json.loads(db.execute("SHOW uuid"))
    db.close()
    assert storage_dir(repo) == os.path.join(repo, uuid)
    files = partition_files(repo)
    assert len(files) == 1
    return os.path.join(storage_dir(repo), files[0]), p


def test_corrupted_region_raises_with_path(repo):
    path, p = refreshed_closed(repo)
    flip(path, 100, 0xFF)
    db = open_db(repo)
    try:
        with pytest.raises(monotone.CorruptionError) as info:
            read_all(db)
        assert path in str(info.value)
        with pytest.raises(monotone.CorruptionError):
            with db.cursor() as cur:
                list(cur.batches())
        # other regions are still readable, and the instance still works
        tail = read_all(db, id=9_990)
        assert [e[0] for e in tail] == list(range(9_990, 10_000))
        assert tail[0][2] == bytes([9_990 % 251]) * 100
        db.write([Event(id=20_000, value=b"x")])
        assert read_all(db, id=20_000) == [(20_000, b"", b"x")]
    finally:
        db.close()


@pytest.mark.parametrize("where", ["footer", "index", "truncated"])
def test_corrupted_index_is_reported_with_path(repo, where):
    path, p = refreshed_closed(repo)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        if where == "footer":
            f.seek(size - 10)
            f.write(b"\xAA\x55")
        elif where == "index":
            f.seek(size - partition.FOOTER.size)
            offset, length, _, _ = partition.decode_footer(f.read(), path)
            f.seek(offset + length // 2)  # the middle of the region index
            f.write(b"\xAA\x55")
        else:
            f.truncate(size - 7)
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(monotone.MonotoneError) as info:
        env.open(repo)
        try:
            read_all(env)
        finally:
            env.close()
    assert path in str(info.value)


def test_crc_off_plain_region_damage_to_ids_is_detected(repo):
    """Without region checksums, damage that breaks what a region's structure says
    (ids in order, first and last as its index entry) is still an error."""
    db = open_db(repo)
    db.execute("ALTER STORAGE main SET (crc false, compression 'none')")
    rng = np.random.default_rng(5)
    db.write_batch(ids=np.arange(0, 3000, 3, dtype=np.uint64),
                   values=rng.integers(0, 256, (1000, 64), dtype=np.uint8))
    db.execute(ALL)
    db.close()
    path = os.path.join(storage_dir(repo), partition_files(repo)[0])
    ids_start = 32  # a region: 32-byte header, then the ids
    for at in (ids_start + 8 * 500 + 6, ids_start + 2):  # a middle id, the first id
        flip(path, at, 0x40)
        db = open_db(repo)
        try:
            with pytest.raises(monotone.CorruptionError, match="region 0"):
                read_all(db)
        finally:
            db.close()
        flip(path, at, 0x40)  # put it back
