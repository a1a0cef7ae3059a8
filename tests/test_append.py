"""Appending refresh: new events past a partition file's last one are written
after it (new regions, a new index and footer), in place, instead of a new file;
the old bytes are never touched, a torn append is cut at open, and the bytes of
old indexes are dropped by a full rewrite once they pass a share of the file."""
from __future__ import annotations

import json
import os
import struct
import zlib

import pytest
from conftest import open_db
from readback import read_all
from repo_files import storage_dir

from monotone import Event, offline
from monotone.errors import CoordinatorError, MonotoneError
from monotone.format.rows import concat
from monotone.partition import fileformat as partition
from monotone.partition.merger import DEAD_SHARE

STEP = 10_000  # partition interval: one partition


def events(lo: int, hi: int, tag: bytes = b"v") -> list[Event]:
    return [Event(id=i, value=tag + b"%d" % i * 8) for i in range(lo, hi)]


def want(evs) -> list[tuple]:
    return [(e.id, e.key, e.value) for e in evs]


def path_of(repo) -> str:
    return os.path.join(storage_dir(repo), f"{0:020d}")


def footer(path) -> tuple[int, int, int, int]:
    with open(path, "rb") as f:
        f.seek(-partition.FOOTER.size, os.SEEK_END)
        return partition.decode_footer(f.read(), path)


def meta(db) -> dict:
    return json.loads(db.execute("SHOW PARTITION 0 DEBUG"))


def start(repo, **settings):
    """A partition file of 0..1000, region_size 1 KiB."""
    db = open_db(repo, interval=STEP, **settings)
    db.execute("ALTER STORAGE main SET (region_size 1024)")
    db.write(events(0, 1000))
    db.execute("REFRESH PARTITION 0")
    return db


def test_events_past_the_end_are_appended_and_the_old_bytes_stay(repo):
    db = start(repo)
    path = path_of(repo)
    with open(path, "rb") as f:
        before = f.read()
    assert not footer(path)[3] & partition.GAPS
    db.write(events(1000, 1200))
    cursor = db.cursor()  # opened before: the file as it was, and the memtable rows
    first = next(iter(cursor))
    db.execute("REFRESH PARTITION 0")
    with open(path, "rb") as f:
        after = f.read()
    assert after[:len(before)] == before and len(after) > len(before)
    assert footer(path)[3] & partition.GAPS
    assert [(first.id, first.key, first.value)] + [(e.id, e.key, e.value) for e in cursor] \
        == want(events(0, 1000)) + want(events(1000, 1200))
    cursor.close()
    assert read_all(db) == want(events(0, 1200))
    shown = meta(db)
    assert shown["index"]["size_total"] == len(after) and shown["events"] == 1200
    assert not [n for n in os.listdir(storage_dir(repo)) if n.endswith(".append")]
    db.close()
    db = open_db(repo, interval=STEP)  # as read back at open
    assert read_all(db) == want(events(0, 1200))
    db.close()


def test_events_among_the_old_ones_rewrite_the_file(repo):
    db = start(repo)
    db.write(events(1000, 1100))
    db.execute("REFRESH PARTITION 0")
    assert footer(path_of(repo))[3] & partition.GAPS
    db.write(events(500, 510, b"new"))  # not past the end: a new file, no gaps
    db.execute("REFRESH PARTITION 0")
    assert not footer(path_of(repo))[3] & partition.GAPS
    assert read_all(db) == want(events(0, 500) + events(500, 510, b"new") +
                                events(510, 1100))
    db.close()


def test_old_indexes_are_dropped_by_a_rewrite_past_their_share(repo):
    db = start(repo)
    at, rewrites, size = 1000, 0, os.path.getsize(path_of(repo))
    for _ in range(3 * DEAD_SHARE):  # small appends: each leaves an index behind
        db.write(events(at, at + 5))
        at += 5
        db.execute("REFRESH PARTITION 0")
        new = os.path.getsize(path_of(repo))
        gaps = footer(path_of(repo))[3] & partition.GAPS
        if not gaps:
            rewrites += 1
            assert new < size  # the old indexes gone
        size = new
    assert rewrites >= 1
    assert read_all(db) == want(events(0, at))
    db.close()


def test_an_encrypted_partition_is_appended_to(repo):
    db = open_db(repo, interval=STEP)
    db.execute("CREATE STORAGE sealed (encryption 'aes', region_size 1024)")
    db.execute("ALTER PIPELINE SET sealed")
    db.write(events(0, 500))
    db.execute("REFRESH PARTITION 0")
    db.write(events(500, 700))
    db.execute("REFRESH PARTITION 0")
    uuid = json.loads(db.execute("SHOW STORAGE sealed"))["config"]["uuid"]
    path = os.path.join(repo, uuid, f"{0:020d}")
    flags = footer(path)[3]
    assert flags & partition.GAPS and flags & partition.ENCRYPTED
    assert read_all(db) == want(events(0, 700))
    db.close()
    db = open_db(repo, interval=STEP)
    assert read_all(db) == want(events(0, 700))
    db.close()


@pytest.mark.parametrize("point", ["append.marked", "append.written", "append.footer",
                                   "refresh_1", "refresh_3"])
def test_kill_at_every_step_of_an_append(repo, monkeypatch, point):
    """kill -9 of the coordinator (the merge runs in it with workers 0) at each step:
    every acknowledged event is there at the next open, the file is whole (with
    the append, or cut back to before it), no marker is left, and refreshes go on."""
    db = start(repo)
    db.close()
    size = os.path.getsize(path_of(repo))
    monkeypatch.setenv("MONOTONE_FAULTS", f"{point}:kill@1")
    db = open_db(repo, interval=STEP)
    monkeypatch.delenv("MONOTONE_FAULTS")
    db.write(events(1000, 1300))
    with pytest.raises(CoordinatorError):
        db.execute("REFRESH PARTITION 0")
    db.close()
    if point in ("append.marked", "append.written"):  # the marker, and the file's size
        names = os.listdir(storage_dir(repo))
        assert f"{0:020d}.append" in names
    db = open_db(repo, interval=STEP)
    assert read_all(db) == want(events(0, 1300))
    assert not [n for n in os.listdir(storage_dir(repo)) if n.endswith(".append")]
    grown = os.path.getsize(path_of(repo))
    if point in ("append.marked", "append.written"):
        assert grown == size  # cut back: the events are in the WAL
    else:
        assert grown > size and footer(path_of(repo))[3] & partition.GAPS
    db.write(events(1300, 1400))
    db.execute("REFRESH PARTITION 0")
    assert read_all(db) == want(events(0, 1400))
    db.close()


def torn(path: str) -> int:
    """An append under way, or cut short: bytes past the file's end, and its marker
    (the size before); that size."""
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"\x5a" * 5000)
    head = struct.pack("<Q", size)
    with open(path + ".append", "wb") as f:
        f.write(head + struct.pack("<I", zlib.crc32(head)))
    os.chmod(path + ".append", 0o600)
    return size


def test_a_reader_with_no_coordinator_reads_the_file_as_before_an_append(repo):
    db = start(repo)
    db.close()
    torn(path_of(repo))
    rows = concat([offline.read_part(p) for p in offline.from_repository(repo)])
    assert rows.ids.tolist() == list(range(1000))


def test_a_torn_append_is_cut_at_open(repo):
    """What a power cut can leave: bytes past the file's end and the marker, with no
    whole footer at the end: cut back to the size the marker gives."""
    db = start(repo)
    db.close()
    path = path_of(repo)
    size = torn(path)
    db = open_db(repo, interval=STEP)
    assert os.path.getsize(path) == size
    assert read_all(db) == want(events(0, 1000))
    assert not os.path.exists(path + ".append")
    db.close()


def test_a_worker_killed_during_an_append_loses_nothing(repo, monkeypatch):
    """The merge in a worker process, killed between the appended index and the
    footer: the command fails, what the worker wrote is cut at once, and the
    partition reads as before it (the rows still in memory)."""
    db = start(repo)
    db.close()
    size = os.path.getsize(path_of(repo))
    monkeypatch.setenv("MONOTONE_FAULTS", "append.written:kill@1")
    db = open_db(repo, interval=STEP, workers=1)
    monkeypatch.delenv("MONOTONE_FAULTS")
    db.write(events(1000, 1300))
    with pytest.raises(MonotoneError, match="worker running the job died"):
        db.execute("REFRESH PARTITION 0")
    assert os.path.getsize(path_of(repo)) == size  # what the worker wrote went
    assert not os.path.exists(path_of(repo) + ".append")
    assert read_all(db) == want(events(0, 1300))
    db.close()
    db = open_db(repo, interval=STEP, workers=1)
    assert os.path.getsize(path_of(repo)) == size
    assert not os.path.exists(path_of(repo) + ".append")
    db.execute("REFRESH PARTITION 0")
    assert read_all(db) == want(events(0, 1300))
    assert footer(path_of(repo))[3] & partition.GAPS
    db.close()


def test_an_error_before_the_switch_undoes_the_append(repo):
    """An append whole on disk, and the switch to it fails (error_refresh_3): the
    file is cut back, its marker gone, the rows still in memory, and the next
    refresh appends them."""
    db = start(repo)
    size = os.path.getsize(path_of(repo))
    db.write(events(1000, 1100))
    db.execute("SET error_refresh_3 TO true")
    with pytest.raises(MonotoneError, match="error_refresh_3"):
        db.execute("REFRESH PARTITION 0")
    assert os.path.getsize(path_of(repo)) == size
    assert not os.path.exists(path_of(repo) + ".append")
    assert read_all(db) == want(events(0, 1100))
    db.execute("SET error_refresh_3 TO false")
    db.execute("REFRESH PARTITION 0")
    assert os.path.getsize(path_of(repo)) > size
    assert read_all(db) == want(events(0, 1100))
    db.close()


def test_a_file_of_one_region_not_full_is_rewritten_whole(repo):
    """Its only region would be written again with the new events, leaving all of
    the old file dead: past the share, so the file is written anew, with no gaps."""
    db = open_db(repo, interval=STEP)
    db.write(events(0, 3))
    db.execute("REFRESH PARTITION 0")
    db.write(events(3, 6))
    db.execute("REFRESH PARTITION 0")
    assert not footer(path_of(repo))[3] & partition.GAPS
    assert meta(db)["index"]["regions"] == 1
    assert read_all(db) == want(events(0, 6))
    db.close()
    db = open_db(repo, interval=STEP)
    assert read_all(db) == want(events(0, 6))
    db.close()
