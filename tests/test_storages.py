"""Storages: encryption keys, moves between storages, crashes during a move, dropped
partitions across restarts, and execute() of arbitrary text."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import ALL, check_no_leaks, coordinator_pids, open_db
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_recovery import kill9

import monotone
from monotone import Event

KEY_A = "a0" * 32
KEY_B = "b1" * 32


def read_all(db, id=None):
    with db.cursor(id=id) as cur:
        return [(e.id, e.key, e.value) for e in cur]


def read_batches(db):
    out = []
    with db.cursor() as cur:
        for b in cur.batches():
            out += [(int(b.ids[i]), b.key(i), b.value(i)) for i in range(len(b))]
    return out


def storages(repo):
    """name -> storage entry of config.json (read while the repository is closed)."""
    with open(os.path.join(repo, "config.json")) as f:
        return {s["name"]: s for s in json.load(f)["storages"]}


def storage_dir(repo, storage):
    return os.path.join(repo, storage["path"], storage["uuid"])


def files_by_storage(repo):
    """name -> sorted partition files (any suffix) in the storage's directory."""
    out = {}
    for name, s in storages(repo).items():
        d = storage_dir(repo, s)
        out[name] = sorted(os.listdir(d)) if os.path.isdir(d) else []
    return out


def set_key(repo, name, key):
    path = os.path.join(repo, "config.json")
    with open(path) as f:
        data = json.load(f)
    for s in data["storages"]:
        if s["name"] == name:
            s["encryption_key"] = key
    with open(path, "w") as f:
        json.dump(data, f)


@pytest.fixture
def repo2(tmp_path):
    """A second repository path, with the same leak checks as conftest's repo."""
    base = str(tmp_path / "repo2")
    yield base
    check_no_leaks(base)


# encryption keys ----------------------------------------------------------------------


def encrypted_repo(repo, key=None):
    """A closed repository whose partition 0 is in the aes storage `secret`."""
    db = open_db(repo, interval=1000)
    try:
        option = f", encryption_key '{key}'" if key else ""
        db.execute(f"CREATE STORAGE secret (encryption 'aes'{option})")
        db.write([Event(id=i, key=b"k", value=b"secret value %d" % i) for i in range(100)])
        db.execute("MOVE PARTITION 0 INTO secret")
        assert json.loads(db.execute("SHOW PARTITION 0 DEBUG"))["index"]["encryption"] == "aes"
        want = read_all(db)
    finally:
        db.close()
    return want


def test_key_is_persisted_and_never_shown(repo):
    want = encrypted_repo(repo)
    key = storages(repo)["secret"]["encryption_key"]
    assert len(key) == 64 and int(key, 16) >= 0
    path = os.path.join(storage_dir(repo, storages(repo)["secret"]), f"{0:020d}")
    with open(path, "rb") as f:
        assert b"secret value" not in f.read()
    db = open_db(repo)
    try:
        assert read_all(db) == want
        for text in ("SHOW STORAGES", "SHOW STORAGE secret", "SHOW STORAGES DEBUG", "SHOW ALL",
                     "SHOW PARTITIONS DEBUG", "SHOW PIPELINE"):
            assert key not in db.execute(text), text
        with pytest.raises(monotone.MonotoneError, match="not empty"):
            db.execute(f"ALTER STORAGE secret SET (encryption_key '{KEY_A}')")
    finally:
        db.close()
    assert storages(repo)["secret"]["encryption_key"] == key


def test_wrong_key_in_config_is_a_clear_error(repo):
    want = encrypted_repo(repo)
    key = storages(repo)["secret"]["encryption_key"]
    set_key(repo, "secret", KEY_A)
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(monotone.MonotoneError, match="wrong encryption key") as info:
        env.open(repo)
        try:
            read_all(env)  # if open() does not look into the file, the read must fail
        finally:
            env.close()
    assert f"{0:020d}" in str(info.value)  # the file is named
    set_key(repo, "secret", key)
    db = open_db(repo)
    try:
        assert read_all(db) == want
    finally:
        db.close()


def test_encrypted_file_copied_into_another_repository(repo, repo2):
    """A file is readable only with its own key: another repository's key (or none) is
    an error naming the file, never garbage; the same key reads it."""
    encrypted_repo(repo)
    encrypted_repo(repo2)  # a key of its own
    src = os.path.join(storage_dir(repo, storages(repo)["secret"]), f"{0:020d}")
    dst = os.path.join(storage_dir(repo2, storages(repo2)["secret"]), f"{0:020d}")
    shutil.copyfile(src, dst)
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(monotone.MonotoneError, match="wrong encryption key") as info:
        env.open(repo2)
        try:
            read_all(env)
        finally:
            env.close()
    assert dst in str(info.value)
    # into a storage without encryption
    os.unlink(dst)
    shutil.copyfile(src, os.path.join(storage_dir(repo2, storages(repo2)["main"]), f"{1000:020d}"))
    with pytest.raises(monotone.MonotoneError, match="encrypted"):
        env.open(repo2)
        try:
            read_all(env)
        finally:
            env.close()


def test_same_key_reads_a_copied_file(repo, repo2):
    want = encrypted_repo(repo, KEY_B)
    encrypted_repo(repo2, KEY_B)
    src = os.path.join(storage_dir(repo, storages(repo)["secret"]), f"{0:020d}")
    dst = os.path.join(storage_dir(repo2, storages(repo2)["secret"]), f"{0:020d}")
    shutil.copyfile(src, dst)
    db = open_db(repo2)
    try:
        assert read_all(db) == want
    finally:
        db.close()

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
        with pytest.raises(monotone.MonotoneError, match=f"crash point {point}"):
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

# dropped partitions -------------------------------------------------------------------


def wal_names(repo):
    d = os.path.join(repo, "wal")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_dropped_partition_stays_dropped(repo):
    """The drop is in the WAL: replay does not bring the partition back, and deleting WAL
    files that are no longer needed never deletes the drop before the data it cancels."""
    db = open_db(repo, interval=10)
    try:
        db.write([Event(id=1, value=b"a"), Event(id=11, value=b"dropped")])   # one batch
        db.execute("REFRESH PARTITION 11")
        db.write([Event(id=12, value=b"dropped too")])
        db.execute("DROP PARTITION 11")  # in a file and in memory
        db.write([Event(id=21, value=b"c")])
        db.execute("REFRESH PARTITION 0")  # the batch of id 11 is needed no more by 0...
        assert read_all(db) == [(1, b"", b"a"), (21, b"", b"c")]
    finally:
        db.close()
    for round_ in range(3):
        db = open_db(repo)
        try:
            assert read_all(db) == [(1, b"", b"a"), (21, b"", b"c")], round_
            assert [p["min"] for p in json.loads(db.execute("SHOW PARTITIONS"))] == [0, 20]
            with pytest.raises(monotone.MonotoneError):
                db.execute("SHOW PARTITION 11")
            if round_ == 1:  # ...and 20 still needs the WAL: collect what can go
                db.execute("REFRESH PARTITIONS BETWEEN 0 AND 9")
            if round_ == 2:  # everything refreshed: no WAL left at all
                db.execute("CHECKPOINT")
                assert wal_names(repo) == []
        finally:
            db.close()
    db = open_db(repo)
    try:
        assert read_all(db) == [(1, b"", b"a"), (21, b"", b"c")]
        db.write([Event(id=13, value=b"new")])  # the range can be written again
        assert read_all(db, id=10) == [(13, b"", b"new"), (21, b"", b"c")]
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert read_all(db) == [(1, b"", b"a"), (13, b"", b"new"), (21, b"", b"c")]
    finally:
        db.close()


def test_dropped_range_after_crash(repo):
    db = open_db(repo, interval=10)
    try:
        db.write([Event(id=i, value=b"v%d" % i) for i in range(0, 60, 5)])
        db.execute("REFRESH PARTITIONS BETWEEN 20 AND 29")
        db.execute("DROP PARTITIONS BETWEEN 10 AND 39")
        db.write([Event(id=2, value=b"after")])  # the client fetches the config again
        kill9(coordinator_pids(repo)[0])
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert read_all(db) == [(0, b"", b"v0"), (2, b"", b"after"), (5, b"", b"v5"),
                                (40, b"", b"v40"), (45, b"", b"v45"), (50, b"", b"v50"),
                                (55, b"", b"v55")]
        assert files_by_storage(repo)["main"] == []
    finally:
        db.close()

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
    from monotone.region_reader import Reader
    s = storages(repo)[storage]
    d = storage_dir(repo, s)
    (name,) = [f for f in os.listdir(d) if f.isdigit()]
    cipher = Cipher(parse_key(s["encryption_key"])) if s.get("encryption_key") else None
    with Reader(os.path.join(d, name), cipher) as r:
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
    assert (second[:len(first)] == first).all()  # same offsets, sizes, crcs, bounds
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
