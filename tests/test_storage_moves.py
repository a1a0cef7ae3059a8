"""Moves of partitions between storages, and a crash in the middle of a move."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import coordinator_pids, open_db
from process_kill import kill9
from readback import read_all, read_batches
from storage_catalog import KEY_A, files_by_storage

import monotone
from monotone import Event

# moves between storages ---------------------------------------------------------------


STORAGES = {
    "s_lz4": "compression 'lz4'",
    "s_zstd": "compression 'zstd', compression_level 3, region_size 2KiB",
    "s_none": "compression 'none', crc false",
    "s_aes": "encryption 'aes'",
    "s_aes_zstd": f"encryption 'aes', encryption_key '{KEY_A}', compression 'zstd', region_size 1KiB",
}


def test_move_between_storages_keeps_every_event(repo):
    rng = np.random.default_rng(7)
    model: dict[tuple[int, bytes], bytes] = {}
    db = open_db(repo, interval=1000)
    try:
        for name, options in STORAGES.items():
            db.execute(f"CREATE STORAGE {name} ({options})")
        names = ["main", *STORAGES]

        def write(n, round_):
            ids = rng.integers(0, 5000, n).astype(np.uint64)
            keys = [b"k%d" % (i % 3) for i in range(n)]
            values = [b"r%d-%d-" % (round_, i) + b"x" * int(rng.integers(0, 200)) for i in range(n)]
            deletes = rng.random(n) < 0.1
            db.write_batch(ids=ids, keys=keys, values=values, deletes=deletes)
            for i, k, v, d in zip(ids.tolist(), keys, values, deletes.tolist()):
                if d:
                    model.pop((i, k), None)
                else:
                    model[(i, k)] = v

        def expected():
            return [(i, k, v) for (i, k), v in sorted(model.items())]

        for round_ in range(8):
            write(1500, round_)
            for part in range(5):
                target = names[(part + round_) % len(names)]
                if (part + round_) % 3:
                    db.execute(f"MOVE PARTITION {part * 1000 + round_} INTO {target}")
                else:
                    db.execute(f"MOVE PARTITIONS BETWEEN {part * 1000} AND {part * 1000 + 999} "
                               f"INTO {target}")
                assert json.loads(db.execute(f"SHOW PARTITION {part * 1000}"))["storage"] == target
            assert read_all(db) == expected()
            assert read_batches(db) == expected()
        placed = {p["min"]: p["storage"] for p in json.loads(db.execute("SHOW PARTITIONS"))}
        stats = {name: json.loads(db.execute(f"SHOW STORAGE {name}"))["stats"] for name in names}
        assert sum(s["events"] for s in stats.values()) == len(model)
    finally:
        db.close()
    # every partition file is in exactly the storage that holds the partition
    files = files_by_storage(repo)
    assert {name: fs for name, fs in files.items() if fs} == \
        {name: sorted(f"{m:020d}" for m, s in placed.items() if s == name)
         for name in set(placed.values())}
    db = open_db(repo)
    try:
        assert read_all(db) == expected()
        assert {p["min"]: p["storage"] for p in json.loads(db.execute("SHOW PARTITIONS"))} == placed
        write(500, 99)  # and it goes on after the restart
        db.execute("MOVE PARTITIONS BETWEEN 0 AND 4999 INTO s_aes_zstd")
        assert read_all(db) == expected()
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert read_all(db) == expected()
        assert set(files_by_storage(repo)["s_aes_zstd"]) == {f"{m:020d}" for m in placed}
    finally:
        db.close()


# a crash in the middle of a move ------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "kill"])
@pytest.mark.parametrize("point", [1, 2, 3])
def test_crash_during_move_keeps_every_event_once(repo, point, how):
    db = open_db(repo, interval=1000)
    want = {}
    try:
        db.execute("CREATE STORAGE target (encryption 'aes', compression 'zstd')")
        db.write_batch(ids=np.arange(0, 900, dtype=np.uint64),
                       values=[b"file%d" % i for i in range(900)])
        want.update({i: b"file%d" % i for i in range(900)})
        db.execute("REFRESH PARTITION 0")  # an old file in main
        db.write_batch(ids=np.arange(500, 1000, dtype=np.uint64),
                       values=[b"mem%d" % i for i in range(500, 1000)])
        want.update({i: b"mem%d" % i for i in range(500, 1000)})
        db.write_batch(ids=np.arange(0, 100, dtype=np.uint64), deletes=np.ones(100, bool))
        for i in range(100):
            del want[i]
        expect = [(i, b"", v) for i, v in sorted(want.items())]
        assert read_all(db) == expect
        db.execute(f"SET error_refresh_{point} TO true")
        with pytest.raises(monotone.MonotoneError, match=f"error injection: error_refresh_{point}"):
            db.execute("MOVE PARTITION 0 INTO target")
        assert read_all(db) == expect  # the open instance still reads everything once
        if how == "kill":
            kill9(coordinator_pids(repo)[0])
    finally:
        db.close()
    assert not coordinator_pids(repo)
    # the half-done move left what its crash point says, for recovery to sort out
    name = f"{0:020d}"
    left = {1: [name + ".incomplete"], 2: [name + ".complete"], 3: [name]}[point]
    assert files_by_storage(repo) == {"main": [name], "target": left}
    db = open_db(repo)
    try:
        assert read_all(db) == expect
        where = json.loads(db.execute("SHOW PARTITION 0"))["storage"]
        assert where in ("main", "target")
        files = files_by_storage(repo)
        assert files == {"main": [f"{0:020d}"] if where == "main" else [],
                         "target": [f"{0:020d}"] if where == "target" else []}
        db.write([Event(id=5, value=b"after")])  # usable, and the move works now
        db.execute("MOVE PARTITION 0 INTO target")
        db.execute("MOVE PARTITION 0 INTO main")
        db.execute("MOVE PARTITION 0 INTO target")
    finally:
        db.close()
    expect = sorted(expect + [(5, b"", b"after")])
    db = open_db(repo)
    try:
        assert read_all(db) == expect
        assert files_by_storage(repo) == {"main": [], "target": [f"{0:020d}"]}
    finally:
        db.close()
