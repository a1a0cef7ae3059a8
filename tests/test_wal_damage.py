"""A damaged WAL: a torn tail is cut; any other damage stops the open with an error
naming file and offset, until wal_recover skips it."""
from __future__ import annotations

import os

import pytest
from conftest import open_db
from repo_files import flip

import monotone
from monotone import Event
from monotone.wal import records as walfmt


def read_all(db):
    with db.cursor() as cur:
        return [(e.id, e.key, e.value) for e in cur]


def wal_files(repo):
    d = os.path.join(repo, "wal")
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".wal"))


def wal_records(path):
    """[(offset, size, lsn)] of the intact batch records of a WAL file (not the record
    that starts it), by the format decoder."""
    data = memoryview(open(path, "rb").read())
    out, pos = [], 0
    while pos < len(data):
        rec = walfmt.decode_at(data, pos, path)
        if rec is None:
            break
        if rec.start is None:
            out.append((pos, rec.size, rec.lsn))
        pos += rec.size
    return out


def five_batches_closed(repo, **settings):
    db = open_db(repo, **settings)
    for i in range(5):
        db.write([Event(id=10 * i + j, value=b"batch%d" % i) for j in range(3)])
    db.close()
    files = wal_files(repo)
    assert len(files) == 1
    records = wal_records(files[0])
    assert len(records) == 5
    return files[0], records


def batch_ids(k):
    return [10 * i + j for i in range(k) for j in range(3)]


@pytest.mark.parametrize("garbage", [b"\x00" * 100, b"\xde\xad\xbe\xef" * 7, b"M",
                                     bytes(range(256))])
def test_wal_garbage_tail(repo, garbage):
    path, records = five_batches_closed(repo)
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(garbage)
    db = open_db(repo)
    try:
        assert [e[0] for e in read_all(db)] == batch_ids(5)
        assert os.path.getsize(path) == size  # the garbage was cut
    finally:
        db.close()


@pytest.mark.parametrize("cut", [1, 8, walfmt.HEADER.size, "header-only", "half-header"])
def test_wal_torn_last_record(repo, cut):
    path, records = five_batches_closed(repo)
    start, rsize, _ = records[-1]
    keep = {"header-only": start + walfmt.HEADER.size,
            "half-header": start + walfmt.HEADER.size // 2}.get(cut)
    if keep is None:
        keep = start + rsize - cut
    with open(path, "r+b") as f:
        f.truncate(keep)
    db = open_db(repo)
    try:
        assert [e[0] for e in read_all(db)] == batch_ids(4)
        assert os.path.getsize(path) == start
        db.write([Event(id=100, value=b"new")])
        assert read_all(db)[-1] == (100, b"", b"new")
    finally:
        db.close()
    db = open_db(repo)  # the new write is replayed, the torn one is still gone
    try:
        assert [e[0] for e in read_all(db)] == batch_ids(4) + [100]
    finally:
        db.close()


def test_wal_zeroed_last_record(repo):
    """A last record whose bytes never reached the disk (zeros from its start): torn, cut."""
    path, records = five_batches_closed(repo)
    start, rsize, _ = records[-1]
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(b"\0" * rsize)
    db = open_db(repo)
    try:
        assert [e[0] for e in read_all(db)] == batch_ids(4)
        assert os.path.getsize(path) == start
    finally:
        db.close()


@pytest.mark.parametrize("which", [0, 2, 4], ids=["first", "middle", "last"])
@pytest.mark.parametrize("where", ["payload", "header"])
def test_wal_damaged_record_refuses_open_until_wal_recover(repo, which, where):
    """A complete record damaged after it was written is never cut silently: open
    fails naming file and offset, the file is left as it is, and wal_recover opens
    with the damaged batch skipped and every other one replayed."""
    path, records = five_batches_closed(repo)
    start, rsize, _ = records[which]
    flip(path, start + rsize - 2 if where == "payload" else start + 12)
    before = open(path, "rb").read()
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(monotone.CorruptionError) as info:
        env.open(repo)
    message = str(info.value)
    assert path in message and f"offset {start}" in message and "wal_recover" in message
    assert open(path, "rb").read() == before, "a failed open changed the WAL"
    survivors = [b for b in range(5) if b != which]
    want = [10 * i + j for i in survivors for j in range(3)]
    db = open_db(repo, wal_recover="true")
    try:
        got = read_all(db)
        assert [e[0] for e in got] == want
        assert all(e[2] == b"batch%d" % (e[0] // 10) for e in got)
    finally:
        db.close()
    db = open_db(repo)  # the file was rewritten without the damage
    try:
        assert [e[0] for e in read_all(db)] == want
    finally:
        db.close()


@pytest.mark.parametrize("where", ["value-length", "id"])
def test_wal_crc_off_damage_that_breaks_framing_is_reported(repo, where):
    """Without a payload checksum, damage is still found when it breaks the record's
    own structure (lengths that do not add up, ids out of order), and never returned
    as data."""
    path, records = five_batches_closed(repo, wal_crc="false")
    start, rsize, _ = records[2]
    region = start + walfmt.HEADER.size  # the batch: a 32-byte header, ids, value lengths
    if where == "value-length":
        flip(path, region + 32 + 3 * 8 + 1, 0xFF)
    else:
        flip(path, region + 32 + 8 + 7, 0x80)  # the middle id's top byte
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(monotone.CorruptionError):
        env.open(repo)
        env.close()


@pytest.mark.parametrize("cut", ["last-record", "mid-record"])
def test_wal_rotated_file_cut_short_is_damage_not_a_torn_tail(repo, cut):
    """A file its writer rotated out of was complete: only a writer's last file may end
    torn. Shortened afterwards, it is damage, whichever boundary it ends at."""
    db = open_db(repo, wal_rotate_wm=300)
    for i in range(6):
        db.write([Event(id=10 * i + j, value=b"batch%d" % i) for j in range(3)])
    db.close()
    files = wal_files(repo)
    assert len(files) >= 3
    first = files[0]
    start, rsize, _ = wal_records(first)[-1]
    with open(first, "r+b") as f:
        f.truncate(start if cut == "last-record" else start + rsize // 2)
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(monotone.CorruptionError, match="wal_recover") as info:
        env.open(repo)
    assert first in str(info.value)
    db = open_db(repo, wal_recover="true")
    try:
        got = {e[0] // 10 for e in read_all(db)}
        assert len(got) == 5 and got < set(range(6))
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert len({e[0] // 10 for e in read_all(db)}) == 5
    finally:
        db.close()
