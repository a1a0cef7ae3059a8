"""monotone.dask.read as users shard: a frame indexed by id with known divisions,
of one schema with Cursor.to_pandas(), over several repositories at once."""
from __future__ import annotations

import os
from contextlib import closing

import numpy as np
import pytest
from conftest import ALL, open_db

from monotone import offline
from monotone.errors import MonotoneError

pytest.importorskip("dask.dataframe")
import monotone.dask as mdask  # noqa: E402

STEP = 1000  # the partition interval of these repositories


def _fill(path, starts, n=300, tag=0):
    """A repository with n events at each start (ids ascending), refreshed."""
    db = open_db(path, interval=STEP)
    try:
        for start in starts:
            ids = np.arange(start, start + n, dtype=np.uint64)
            values = np.zeros((n, 9), np.uint8)
            values[:, 0] = tag
            values[:, 1:] = ids.astype(">u8").view(np.uint8).reshape(n, 8)
            db.write_batch(ids, values)
        db.execute(ALL)
        return db.cursor().to_pandas()
    finally:
        db.close()


def _pairs(df) -> list[tuple[int, bytes]]:
    flat = df.reset_index()
    return list(zip(flat["id"].tolist(), flat["value"].tolist()))


def test_one_schema_and_known_divisions(tmp_path):
    local = _fill(tmp_path / "a", [0, 1000, 2000, 5000])
    frame = mdask.read(str(tmp_path / "a"))
    assert frame.known_divisions
    assert frame.divisions == (0, 1000, 2000, 5000, 5999)
    got = frame.compute(scheduler="sync")
    assert got.index.name == "id"
    flat = got.reset_index()
    assert list(flat.columns) == list(local.columns)
    assert flat.dtypes.to_dict() == local.dtypes.to_dict()
    assert _pairs(got) == _pairs(local.set_index("id"))


def test_loc_reads_only_the_partitions_of_its_range(tmp_path):
    repo = tmp_path / "a"
    _fill(repo, [0, 1000, 2000, 3000])
    frame = mdask.read(str(repo))
    part = frame.loc[1100:2150]
    assert part.npartitions == 2
    # the other partitions' files go: reading one of them would fail the compute
    for part_ in offline.from_repository(str(repo)):
        if part_.min not in (1000, 2000):
            os.unlink(part_.path)
    got = part.compute(scheduler="sync")
    assert got.index.tolist() == list(range(1100, 1300)) + list(range(2000, 2151))


def test_big_partitions_split_by_regions_keep_divisions(tmp_path, monkeypatch):
    db = open_db(tmp_path / "a", interval=STEP)
    try:
        db.execute("ALTER STORAGE main SET (region_size 1024)")  # a region per ~40 events
        db.write_batch(np.arange(1000, dtype=np.uint64), np.zeros((1000, 9), np.uint8))
        db.execute(ALL)
    finally:
        db.close()
    monkeypatch.setattr(offline, "REGIONS_PER_PART", 4)
    frame = mdask.read(str(tmp_path / "a"))
    assert frame.npartitions > 1 and frame.known_divisions
    got = frame.compute(scheduler="sync")
    assert got.index.tolist() == list(range(1000))
    for i, division in enumerate(frame.divisions[:-1]):  # each task's first id
        assert frame.get_partition(i).compute(scheduler="sync").index[0] >= division


def test_two_repositories_with_ranges_of_their_own_are_one_frame(tmp_path):
    a = _fill(tmp_path / "a", [0, 1000], tag=1)
    b = _fill(tmp_path / "b", [7000, 9000], tag=2)
    frame = mdask.read([str(tmp_path / "a"), str(tmp_path / "b")])
    assert frame.npartitions == 4 and frame.known_divisions
    got = frame.compute()
    assert _pairs(got) == _pairs(a.set_index("id")) + _pairs(b.set_index("id"))


def test_shards_sharing_ids_are_merged_in_id_order(tmp_path):
    a = _fill(tmp_path / "a", [0, 2000], tag=1)
    b = _fill(tmp_path / "b", [100, 2000, 4000], tag=2)
    frame = mdask.read([str(tmp_path / "a"), str(tmp_path / "b")])
    assert frame.known_divisions
    # partitions of both that share ids are one task; the last ends at its partition's end
    assert frame.divisions == (0, 2000, 4000, 4999)
    got = frame.compute(scheduler="sync")
    assert len(got) == len(a) + len(b)  # every event of both: the same id twice, once each
    assert got.index.is_monotonic_increasing
    assert sorted(_pairs(got)) == sorted(_pairs(a.set_index("id")) + _pairs(b.set_index("id")))
    assert len(frame.loc[2000:2000].compute(scheduler="sync")) == 2


def test_bounds_and_bad_locations(tmp_path):
    _fill(tmp_path / "a", [0, 1000])
    got = mdask.read([str(tmp_path / "a")], min_id=250, max_id=1010).compute(scheduler="sync")
    assert got.index.tolist() == list(range(250, 300)) + list(range(1000, 1011))
    empty = mdask.read(str(tmp_path / "a"), min_id=5000).compute(scheduler="sync")
    assert len(empty) == 0 and empty.index.name == "id"
    with pytest.raises(MonotoneError, match="storage_options has 1 entries for 2 locations"):
        mdask.read([str(tmp_path / "a"), str(tmp_path / "a")], storage_options=[None])
    with pytest.raises(MonotoneError, match="no location given"):
        mdask.read([])
    with pytest.raises(MonotoneError, match="a location is a repository directory"):
        mdask.read([3])


def test_events_of_one_id_across_regions_stay_in_one_task(tmp_path, monkeypatch):
    db = open_db(tmp_path / "a", interval=STEP)
    try:
        db.execute("ALTER STORAGE main SET (region_size 1024)")  # ~40 events a region
        ids = np.repeat(np.arange(0, 100, 10, dtype=np.uint64), 60)  # 60 keys an id
        keys = np.tile(np.arange(60, dtype=np.uint8), 10).reshape(-1, 1)
        db.write_batch(ids, np.zeros((600, 9), np.uint8), keys=keys)
        db.execute(ALL)
    finally:
        db.close()
    monkeypatch.setattr(offline, "REGIONS_PER_PART", 1)
    frame = mdask.read(str(tmp_path / "a"))
    assert frame.npartitions > 1 and frame.known_divisions
    for i in range(frame.npartitions):  # every id whole in its task, below the next division
        got = frame.get_partition(i).compute(scheduler="sync")
        assert got.index[0] >= frame.divisions[i]
        assert got.index[-1] < frame.divisions[i + 1] or i == frame.npartitions - 1
        assert (got.index.value_counts() == 60).all()
    assert len(frame.loc[30:30].compute(scheduler="sync")) == 60
    assert len(frame.compute(scheduler="sync")) == 600


# partitions that move, are rewritten or go between listing and reading --------------


def _two_storages(path, n=300):
    """A repository with partitions 0, 1000 and 2000 in main and a storage 'other'."""
    _fill(path, [0, 1000, 2000], n=n)
    db = open_db(path, interval=STEP)
    db.execute("CREATE STORAGE other (region_size 2048)")
    return db


def test_a_partition_moved_after_listing_is_read_where_it_is_now(tmp_path, monkeypatch):
    repo = str(tmp_path / "a")
    with closing(_two_storages(repo)) as db:
        monkeypatch.setattr(offline, "REGIONS_PER_PART", 1)  # split parts move too
        db.execute("ALTER STORAGE main SET (region_size 1024)")
        db.write_batch(np.arange(1300, 1310, dtype=np.uint64), np.zeros((10, 9), np.uint8))
        db.execute(ALL)
        want = _pairs(db.cursor().to_pandas().set_index("id"))
        frame = mdask.read(repo)
        assert frame.npartitions > 3
        db.execute("MOVE PARTITION 1000 INTO other")  # re-encoded, other regions
        assert _pairs(frame.compute(scheduler="sync")) == want


def test_a_partition_rewritten_after_listing_is_read_once(tmp_path):
    repo = str(tmp_path / "a")
    with closing(_two_storages(repo)) as db:
        frame = mdask.read(repo)
        ids = np.arange(1000, 1300, 7, dtype=np.uint64)  # replaced: the file is rewritten
        db.write_batch(ids, np.full((len(ids), 9), 99, np.uint8))
        db.execute(ALL)
        want = _pairs(db.cursor().to_pandas().set_index("id"))
        got = frame.compute(scheduler="sync")
        assert _pairs(got) == want and len(got) == 900


def test_a_partition_dropped_after_listing_reads_as_nothing(tmp_path):
    repo = str(tmp_path / "a")
    with closing(_two_storages(repo)) as db:
        frame = mdask.read(repo)
        db.execute("DROP PARTITION 1000")
        got = frame.compute(scheduler="sync")
        assert got.index.tolist() == list(range(0, 300)) + list(range(2000, 2300))


MOVER = r"""
import os, sys
import monotone
db = monotone.Monotone()
db.execute("SET workers TO 0")
db.open(sys.argv[1])
moves = 0
while not os.path.exists(sys.argv[2]):
    for min_ in (0, 1000, 2000):
        db.execute(f"MOVE PARTITION {min_} INTO {'other' if moves % 2 == 0 else 'main'}")
    moves += 1
    if moves == 1:
        print("moving", flush=True)
db.close()
print(moves)
"""


def test_a_reader_looping_while_partitions_move_reads_every_event_once(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT
    repo = str(tmp_path / "a")
    db = _two_storages(repo, n=2000)
    want = _pairs(db.cursor().to_pandas().set_index("id"))
    db.close()
    stop = str(tmp_path / "stop")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    mover = subprocess.Popen([sys.executable, "-c", MOVER, repo, stop], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert mover.stdout.readline() == "moving\n"  # (or it died: its stderr below)
        for _ in range(8):
            assert _pairs(mdask.read(repo).compute(scheduler="sync")) == want
    finally:
        open(stop, "w").close()
        out, err = mover.communicate(timeout=120)
    assert mover.returncode == 0, err
    assert int(out) > 1  # partitions moved while it read


def test_split_parts_read_directly_keep_their_own_ids(tmp_path, monkeypatch):
    """offline.split then read_part, as a scheduler of one's own would: each event once."""
    db = open_db(tmp_path / "a", interval=STEP)
    try:
        db.execute("ALTER STORAGE main SET (region_size 1024)")
        ids = np.repeat(np.arange(0, 100, 10, dtype=np.uint64), 60)
        keys = np.tile(np.arange(60, dtype=np.uint8), 10).reshape(-1, 1)
        db.write_batch(ids, np.zeros((600, 9), np.uint8), keys=keys)
        db.execute(ALL)
    finally:
        db.close()
    monkeypatch.setattr(offline, "REGIONS_PER_PART", 1)
    (part,) = offline.from_repository(str(tmp_path / "a"))
    spans = offline.split(part)
    assert len(spans) > 1
    read = [offline.read_part(span) for span in spans]
    assert sum(len(rows) for rows in read) == 600


def test_a_location_given_twice_is_read_once(tmp_path):
    a = _fill(tmp_path / "a", [0, 1000])
    got = mdask.read([str(tmp_path / "a"), str(tmp_path / "a")]).compute(scheduler="sync")
    assert _pairs(got) == _pairs(a.set_index("id"))


def test_a_partition_moved_before_its_split_is_split_where_it_is(tmp_path, monkeypatch):
    repo = str(tmp_path / "a")
    with closing(_two_storages(repo, n=300)) as db:
        db.execute("ALTER STORAGE main SET (region_size 1024)")
        db.write_batch(np.arange(1300, 1400, dtype=np.uint64), np.zeros((100, 9), np.uint8))
        db.execute(ALL)
        want = _pairs(db.cursor().to_pandas().set_index("id"))
        monkeypatch.setattr(offline, "REGIONS_PER_PART", 1)
        parts = offline.from_repository(repo)
        db.execute("MOVE PARTITION 1000 INTO other")  # before the frame splits it
        moved = next(p for p in parts if p.min == 1000)
        spans = offline.split(moved)
        assert spans and all(span.path != moved.path for span in spans)
        assert _pairs(mdask.read(repo).compute(scheduler="sync")) == want
