"""Storages: their options and directories, regions a refresh copies unchanged, and
execute() of arbitrary storage command text."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import ALL, open_db
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from readback import read_all
from storage_catalog import KEY_A, storage_dir, storages

import monotone
from monotone import Event

# execute() of arbitrary text ---------------------------------------------------------


WORDS = ["SET", "SHOW", "CREATE", "ALTER", "DROP", "REFRESH", "MOVE", "UPLOAD", "DOWNLOAD",
         "REBALANCE", "CHECKPOINT", "STORAGE", "STORAGES", "CLOUD", "CLOUDS", "PARTITION",
         "PARTITIONS", "PIPELINE", "RESET", "BETWEEN", "AND", "INTO", "IF", "NOT", "EXISTS",
         "ON", "TO", "RENAME", "DEBUG", "CONFIG", "ALL", "WAL", "MEMORY", "WORKERS", "main",
         "hot", "s3", "interval", "compression", "region_size", "type", "partitions", "size",
         "events", "duration", "encryption", "'aes'", "'s3'", "'zstd'", "true", "0", "1", "10",
         "18446744073709551615", "18446744073709551616", "1G", "5min", "(", ")", ",", "=", "'",
         ";", "-1", "1.5", "''"]
PREFIXES = ["", "SHOW ", "SET interval TO ", "CREATE STORAGE hot (", "ALTER STORAGE hot SET (",
            "CREATE CLOUD s3 (type 's3', ", "ALTER PIPELINE SET ", "MOVE PARTITION 0 INTO ",
            "DROP PARTITIONS BETWEEN ", "CREATE PARTITION ", "SHOW PARTITION ", "REFRESH "]
commands = st.one_of(
    st.text(max_size=40),
    st.builds(lambda p, ws: p + " ".join(ws), st.sampled_from(PREFIXES),
              st.lists(st.sampled_from(WORDS), max_size=8)),
    st.builds(lambda p, t: p + t, st.sampled_from(PREFIXES),
              st.text(alphabet="0123456789abcdefHOTSaes'(),;= -_.", max_size=20)),
)


def test_execute_arbitrary_text_raises_only_monotone_error(repo):
    db = open_db(repo, interval=10)
    try:
        db.write([Event(id=i, value=b"v") for i in range(0, 50, 7)])

        @settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(commands)
        def run(text):
            try:
                result = db.execute(text)
            except monotone.MonotoneError:
                return
            assert result is None or isinstance(result, str)
            if result is not None:
                json.loads(result)

        run()
        # still usable
        db.write([Event(id=1000, value=b"last")])
        assert (1000, b"", b"last") in read_all(db)
    finally:
        db.close()


# option checks ------------------------------------------------------------------------


@pytest.mark.parametrize("uuid", ["..", "", "../escape"])
def test_storage_uuid_must_be_a_uuid(repo, uuid):
    db = open_db(repo, interval=10)
    try:
        try:
            db.execute(f"CREATE STORAGE odd (uuid '{uuid}')")
        except monotone.MonotoneError:
            return  # rejected: fine
        db.write([Event(id=1, value=b"x")])
        db.execute("MOVE PARTITION 0 INTO odd")
        path = os.path.realpath(os.path.join(repo, storages(repo)["odd"]["uuid"]))
        assert os.path.dirname(path) == os.path.realpath(repo), \
            f"storage directory {path} is not a directory of its own in the repository"
    finally:
        db.close()


def test_zstd_level_out_of_range_is_a_clear_error(repo):
    db = open_db(repo, interval=10)
    try:
        db.write([Event(id=1, value=b"x")])
        try:
            db.execute("CREATE STORAGE z (compression 'zstd', compression_level 100)")
        except monotone.MonotoneError as e:
            assert "internal error" not in str(e)
            return  # rejected up front: fine
        try:
            db.execute("MOVE PARTITION 0 INTO z")
        except monotone.MonotoneError as e:
            assert "internal error" not in str(e), str(e)
        assert read_all(db) == [(1, b"", b"x")]
    finally:
        db.close()


def test_storage_directories_follow_the_catalog(repo):
    """A storage's directory is <base>/<path>/<uuid>: created with it, kept by a rename,
    removed with it; main's is <base>/<repository uuid>."""
    db = open_db(repo, interval=10)
    try:
        uuid = json.loads(db.execute("SHOW uuid"))
        assert json.loads(db.execute("SHOW STORAGE main"))["config"]["uuid"] == uuid
        db.execute("CREATE STORAGE a (path 'disk2')")
        cfg = json.loads(db.execute("SHOW STORAGE a"))["config"]
        directory = os.path.join(repo, "disk2", cfg["uuid"])
        assert os.path.isdir(directory)
        db.write([Event(id=1, value=b"x")])
        db.execute("MOVE PARTITION 0 INTO a")
        assert os.listdir(directory) == [f"{0:020d}"]
        assert os.listdir(os.path.join(repo, uuid)) == []
        db.execute("ALTER STORAGE a RENAME TO b")
        assert os.listdir(directory) == [f"{0:020d}"]
        db.execute("MOVE PARTITION 0 INTO main")
        assert os.listdir(os.path.join(repo, uuid)) == [f"{0:020d}"]
        db.execute("DROP STORAGE b")
        assert not os.path.exists(directory)
        assert read_all(db) == [(1, b"", b"x")]
    finally:
        db.close()
    with open(os.path.join(repo, "config.json")) as f:
        assert "storage_uuid" not in json.load(f)


def partition_index(repo, storage="main"):
    """The region index of the (only) partition file of a storage."""
    from monotone.format.crypto import Cipher, parse_key
    from monotone.partition.reader import Identity, Reader
    s = storages(repo)[storage]
    d = storage_dir(repo, s)
    (name,) = [f for f in os.listdir(d) if f.isdigit()]
    cipher = Cipher(parse_key(s["encryption_key"])) if s.get("encryption_key") else None
    with Reader(os.path.join(d, name), cipher, Identity(s["uuid"], int(name))) as r:
        return r.index.entries.copy()


@pytest.mark.parametrize("options", ["compression 'lz4'", "compression 'zstd'",
                                     f"encryption 'aes', encryption_key '{KEY_A}'"])
def test_refresh_copies_regions_no_new_event_falls_into(repo, options):
    """Appends after the file's last event leave its regions byte for byte; an event
    written between old ones rewrites the region it falls into, and the rest after it."""
    db = open_db(repo)
    db.execute(f"CREATE STORAGE s ({options}, region_size 4KiB)")
    db.execute("ALTER PIPELINE SET s")
    db.execute("CREATE PARTITION 0 99999")
    rng = np.random.default_rng(3)
    values = rng.integers(0, 256, (3000, 100), np.uint8)
    db.write_batch(np.arange(0, 2000, dtype=np.uint64), values[:2000])
    db.execute(ALL)
    db.close()
    first = partition_index(repo, "s")
    assert len(first) > 10

    db = open_db(repo)
    db.write_batch(np.arange(2000, 3000, dtype=np.uint64), values[2000:])
    db.execute(ALL)
    db.close()
    second = partition_index(repo, "s")
    # the full regions stay (same offsets, sizes, crcs, bounds); a last one not full
    # is written again with the appended events (test_append.py), so every region
    # but the new last is full
    kept = len(first) - (int(first["size_origin"][-1]) + 114 <= 4096)
    assert kept >= len(first) - 1
    assert (second[:kept] == first[:kept]).all()
    assert (second["size_origin"][:-1] + 114 > 4096).all()
    assert int(second["events"].sum()) == 3000

    db = open_db(repo)
    middle = int(first["max_id"][len(first) // 2])
    db.write([Event(id=middle, value=b"replaced"), Event(id=middle, key=b"k", value=b"new")])
    db.execute(ALL)
    got = read_all(db)
    db.close()
    third = partition_index(repo, "s")
    cut = len(first) // 2
    assert (third[:cut] == first[:cut]).all()
    assert int(third["events"].sum()) == 3001
    expected = [(i, b"", values[i].tobytes()) for i in range(3000)]
    expected[middle] = (middle, b"", b"replaced")
    expected.insert(middle + 1, (middle, b"k", b"new"))
    assert got == expected
