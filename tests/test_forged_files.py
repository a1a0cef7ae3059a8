"""Forged partition files in an encrypted storage: whoever can write the storage's
directory but has no key cannot get events read as the storage's.

A plaintext file written by monotone's own writer in place of an encrypted one, a
file moved to another partition's name or into another storage with the same key,
a footer whose flags or index offset were changed: every reader refuses them (a
cursor, recovery at open, monotone.offline and monotone.dask). Files written before
encrypted files were bound to their partition (fileformat.BOUND) are still read,
and a refresh rewrites them bound. (Objects of a cloud: tests/cloud/test_forged_objects.py.)
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
from conftest import open_db
from event_rows import make_rows
from readback import read_all
from storage_catalog import storage_dir, storages

import monotone
from monotone import Event, offline
from monotone.errors import MonotoneError
from monotone.format.crypto import Cipher, new_key, parse_key
from monotone.format.rows import concat
from monotone.partition import fileformat as partition
from monotone.partition.fileformat import Identity
from monotone.partition.reader import Reader
from monotone.partition.writer import Writer

STEP = 1000  # partition interval
UUID = "0b6f3c1e-6a59-4c1b-9d3e-6f1f0c5a7e21"
OTHER = "5d0e8a51-2f43-4b8e-8c6a-0e9d7b3c1a44"


def name(min_: int) -> str:
    return f"{min_:020d}"


def secret_events(lo: int, n: int = 60) -> list[Event]:
    return [Event(id=i, key=b"k", value=b"secret value %d" % i) for i in range(lo, lo + n)]


def two_partitions(repo, options: str = "encryption 'aes'"):
    """A closed repository whose partitions 0 and STEP are in storage `secret`; what
    a cursor reads of it."""
    db = open_db(repo, interval=STEP)
    try:
        db.execute(f"CREATE STORAGE secret ({options}, region_size 1024)")
        db.write(secret_events(0) + secret_events(STEP))
        db.execute("MOVE PARTITION 0 INTO secret")
        db.execute(f"MOVE PARTITION {STEP} INTO secret")
        want = read_all(db)
    finally:
        db.close()
    return want


def secret(repo):
    """(directory, uuid, cipher) of storage `secret`."""
    s = storages(repo)["secret"]
    cipher = Cipher(parse_key(s["encryption_key"])) if s.get("encryption") else None
    return storage_dir(repo, s), s["uuid"], cipher


def forge_plain(path: str, min_: int, meta: dict | None = None) -> bytes:
    """A well-formed plaintext partition file of partition min_, written by the engine's
    own writer, with forged events (meta: the real file's, so recovery takes it as
    current); its bytes."""
    tmp = path + ".forged"
    w = Writer(tmp, "none", 0, 4096)
    w.add(make_rows([(min_ + i, b"k", b"forged %d" % i, 0) for i in range(5)]))
    w.finish(dict(meta or {}, min=min_, max=min_ + STEP - 1), sync=False)
    with open(tmp, "rb") as f:
        data = f.read()
    os.replace(tmp, path)
    return data


def meta_of(path: str, cipher, identity) -> dict:
    with Reader(path, cipher, identity) as r:
        return dict(r.meta)


def refused(repo, match: str) -> str:
    """Opening the repository and reading it fails (match: the message); the message."""
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(MonotoneError, match=match) as info:
        env.open(repo)
        try:
            read_all(env)
        finally:
            env.close()
    return str(info.value)


def rewrite_footer(path: str, offset_delta: int = 0, flags=None, insert: bytes = b"") -> None:
    """The file's footer changed (its own crc made right again): flags, or the index
    offset moved by offset_delta with `insert` put before the index."""
    with open(path, "rb") as f:
        data = f.read()
    head, footer = data[:-partition.FOOTER.size], data[-partition.FOOTER.size:]
    magic, offset, size, crc, old_flags, _ = partition.FOOTER.unpack(footer)
    flags = old_flags if flags is None else flags
    body = head[:offset] + insert + head[offset:]
    new = struct.pack("<8sQQII", magic, offset + offset_delta, size, crc, flags)
    with open(path, "wb") as f:
        f.write(body + new + struct.pack("<I", zlib.crc32(new)))


def to_old_format(path: str, cipher: Cipher, identity: Identity) -> None:
    """The encrypted file as monotone wrote it before BOUND: regions and index sealed
    with b"region <offset>" and b"index", footer flag ENCRYPTED alone."""
    with Reader(path, cipher, identity) as r:
        assert r.bound
        entries, meta, keys = r.index.entries.copy(), r.index.meta, r.index.keys
        regions = []
        for i in range(r.index.regions):
            offset = int(entries["offset"][i])
            plain = cipher.open(r.read_stored(i),
                                partition.region_ad(identity, r.flags, i, offset), "test")
            sealed = cipher.seal(plain, b"region %d" % offset)
            assert len(sealed) == int(entries["size"][i])
            entries["crc"][i] = partition.region_checksum(sealed)
            regions.append(sealed)
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    index = cipher.seal(struct.pack("<I", len(meta_bytes)) + meta_bytes + entries.tobytes()
                        + keys, b"index")
    offset = sum(map(len, regions))
    with open(path, "wb") as f:
        f.write(b"".join(regions) + index +
                partition.encode_footer(offset, index, partition.ENCRYPTED))


def footer_flags(path: str) -> int:
    with open(path, "rb") as f:
        f.seek(-partition.FOOTER.size, os.SEEK_END)
        return partition.FOOTER.unpack(f.read())[4]


def bound_file(tmp_path, uuid=UUID, crc=True, rows=200):
    """An encrypted file of partition 0 written by the writer, with its cipher, identity
    and rows."""
    path = str(tmp_path / f"file-{uuid}")
    cipher = Cipher(parse_key("c3" * 32))
    identity = Identity(uuid, 0)
    events = make_rows([(i, b"key", b"value %04d" % i, 0) for i in range(rows)])
    w = Writer(path, "none", 0, 512, cipher, crc, False, identity)
    w.add(events)
    w.finish({"min": 0, "max": STEP - 1}, sync=False)
    return path, cipher, identity, events


def read_rows(path, cipher, identity):
    with Reader(path, cipher, identity) as r:
        return concat([r.read_region(i) for i in range(r.index.regions)])


def same_rows(a, b) -> bool:
    return np.array_equal(a.ids, b.ids) and bytes(a.value_data) == bytes(b.value_data)


# (a) a plaintext file in place of an encrypted one -----------------------------------


def test_plaintext_file_in_an_encrypted_storage_is_refused(repo):
    two_partitions(repo)
    d, uuid, cipher = secret(repo)
    path = os.path.join(d, name(0))
    forge_plain(path, 0, meta_of(path, cipher, Identity(uuid, 0)))
    message = refused(repo, "not encrypted but its storage is")
    assert path in message
    # the readers with no coordinator: the storage's settings (its key) decide
    with pytest.raises(MonotoneError, match="not encrypted but its storage is"):
        offline.from_repository(repo)
    key = storages(repo)["secret"]["encryption_key"]
    part = offline.Part(0, STEP - 1, path, 0, 0, key=key, storage=uuid)
    with pytest.raises(MonotoneError, match="not encrypted but its storage is"):
        offline.read_part(part.to_json())
    with pytest.raises(MonotoneError, match="storage's uuid"):
        offline.read_part(offline.Part(0, STEP - 1, path, 0, 0, key=key))
    dask = pytest.importorskip("monotone.dask")
    pytest.importorskip("dask.dataframe")
    with pytest.raises(MonotoneError, match="not encrypted but its storage is"):
        dask.read(repo).compute(scheduler="sync")


def test_cursor_refuses_a_plaintext_file_put_in_while_open(repo):
    want = two_partitions(repo)
    d, uuid, cipher = secret(repo)
    db = open_db(repo)
    try:
        assert read_all(db) == want
        path = os.path.join(d, name(STEP))
        forge_plain(path, STEP, meta_of(path, cipher, Identity(uuid, STEP)))
        # refused as plaintext, or sooner: its size is not the one the partition map
        # gives (readers go by that size, so an append under way is not seen)
        refused = "not encrypted but its storage is|fewer than the [0-9]+ it was written with"
        with pytest.raises(MonotoneError, match=refused) as info:
            read_all(db)
        assert path in str(info.value)
        with pytest.raises(MonotoneError, match=refused):
            db.execute(f"SHOW PARTITION {STEP} DEBUG")
    finally:
        db.close()


def test_unencrypted_storage_reads_plain_and_refuses_encrypted(tmp_path):
    """Without a key the file must not be encrypted (the error from before stays)."""
    path, cipher, identity, events = bound_file(tmp_path)
    with pytest.raises(MonotoneError, match="is encrypted and its storage has no "
                                            "encryption key"):
        Reader(path, None, identity)
    with pytest.raises(MonotoneError, match="no identity given"):
        Reader(path, cipher)
    plain = str(tmp_path / "plain")
    forge_plain(plain, 0)
    assert len(read_rows(plain, None, Identity(UUID, 0))) == 5
    with pytest.raises(MonotoneError, match="no identity given"):
        Writer(str(tmp_path / "x"), "none", 0, 512, cipher)


# (b) files moved: to another partition's name, or into another storage --------------


def swap(a: str, b: str) -> None:
    """Each file at the other's name."""
    os.rename(a, a + ".tmp")
    os.rename(b, a)
    os.rename(a + ".tmp", b)


def test_swapped_partition_files_are_refused(repo):
    want = two_partitions(repo)
    d, uuid, cipher = secret(repo)
    a, b = os.path.join(d, name(0)), os.path.join(d, name(STEP))
    swap(a, b)
    assert d in refused(repo, r"not partition (0|1000) of storage")
    with pytest.raises(MonotoneError, match="not partition"):
        offline.from_repository(repo)
    with pytest.raises(MonotoneError, match="not partition"):
        read_rows(a, cipher, Identity(uuid, 0))
    assert len(read_rows(a, cipher, Identity(uuid, STEP))) == len(want) // 2  # its own place


def test_swapped_files_of_an_unencrypted_storage_are_refused(repo):
    """The index's min is checked for every file, encrypted or not."""
    two_partitions(repo, "compression 'lz4'")
    d, _, _ = secret(repo)
    a, b = os.path.join(d, name(0)), os.path.join(d, name(STEP))
    swap(a, b)
    assert d in refused(repo, r"holds partition (1000, not 0|0, not 1000)")
    with pytest.raises(MonotoneError, match="holds partition"):
        offline.from_repository(repo)


def test_a_region_of_the_same_partition_in_another_storage_is_refused(tmp_path):
    """Regions are bound too: the same region of the same partition, sealed with the same
    key for another storage, does not decrypt in this one (no crc to catch it first)."""
    path, cipher, identity, _ = bound_file(tmp_path, UUID, crc=False)
    other, _, _, _ = bound_file(tmp_path, OTHER, crc=False)
    with Reader(other, cipher, Identity(OTHER, 0)) as r:
        e = r.index.entries[1]
        foreign = r.read_stored(1)
    with open(path, "r+b") as f:
        f.seek(int(e["offset"]))
        f.write(foreign)
    with Reader(path, cipher, identity) as r:
        r.read_region(0)
        with pytest.raises(MonotoneError, match="region 1: cannot decrypt"):
            r.read_region(1)


def test_regions_swapped_in_a_file_are_refused(tmp_path):
    path, cipher, identity, _ = bound_file(tmp_path, crc=False)
    with Reader(path, cipher, identity) as r:
        e = r.index.entries
        assert int(e["size"][1]) == int(e["size"][2])
        one, two = r.read_stored(1), r.read_stored(2)
    with open(path, "r+b") as f:
        f.seek(int(e["offset"][1]))
        f.write(two + one)
    with Reader(path, cipher, identity) as r:
        with pytest.raises(MonotoneError, match="region 1: cannot decrypt"):
            r.read_region(1)


# (c) the footer is authenticated ------------------------------------------------------


@pytest.mark.parametrize("flags, match", [
    (0, "not encrypted but its storage is"),
    (partition.ENCRYPTED, "cannot decrypt"),  # read as the old format: another seal
    (partition.BOUND, "footer flags"),
    (partition.ENCRYPTED | partition.BOUND | 8, "footer flags"),
])
def test_footer_flags_changed_are_refused(tmp_path, flags, match):
    path, cipher, identity, events = bound_file(tmp_path)
    assert footer_flags(path) == partition.ENCRYPTED | partition.BOUND
    assert same_rows(read_rows(path, cipher, identity), events)
    rewrite_footer(path, flags=flags)
    with pytest.raises(MonotoneError, match=match):
        read_rows(path, cipher, identity)


def test_index_offset_changed_is_refused(tmp_path):
    path, cipher, identity, events = bound_file(tmp_path)
    with Reader(path, cipher, identity) as r:
        last = r.index.regions - 1
        size = int(r.index.entries["size"][last])
    shutil.copyfile(path, path + ".2")
    # bytes put before the index, the offset moved past them
    rewrite_footer(path, offset_delta=16, insert=bytes(16))
    with pytest.raises(MonotoneError, match="cannot decrypt"):
        Reader(path, cipher, identity)
    # the offset moved back into the last region: the index claims its bytes
    with open(path + ".2", "rb") as f:
        data = f.read()
    magic, offset, length, _, flags, _ = partition.FOOTER.unpack(data[-partition.FOOTER.size:])
    body = data[offset - size:offset + length]
    head = struct.pack("<8sQQII", magic, offset - size, length + size, zlib.crc32(body), flags)
    with open(path, "wb") as f:
        f.write(data[:-partition.FOOTER.size] + head + struct.pack("<I", zlib.crc32(head)))
    with pytest.raises(MonotoneError, match="cannot decrypt"):
        Reader(path, cipher, identity)


# (d) files of the previous format -----------------------------------------------------


def test_old_format_file_is_read(tmp_path):
    path, cipher, identity, events = bound_file(tmp_path)
    to_old_format(path, cipher, identity)
    assert footer_flags(path) == partition.ENCRYPTED
    with Reader(path, cipher, identity) as r:
        assert not r.bound
    assert same_rows(read_rows(path, cipher, identity), events)
    with pytest.raises(MonotoneError, match="holds partition 0, not 1000"):
        Reader(path, cipher, Identity(UUID, STEP))  # moved: its min still tells
    with pytest.raises(MonotoneError, match="cannot decrypt"):
        Reader(path, Cipher(parse_key(new_key())), identity)


def test_old_format_repository_opens_and_refresh_binds_it(repo):
    want = two_partitions(repo)
    d, uuid, cipher = secret(repo)
    path = os.path.join(d, name(0))
    to_old_format(path, cipher, Identity(uuid, 0))
    assert footer_flags(path) == partition.ENCRYPTED
    assert [len(offline.read_part(p)) for p in offline.from_repository(repo)] == [60, 60]
    db = open_db(repo)
    try:
        assert read_all(db) == want
        db.write([Event(id=STEP - 1, key=b"k", value=b"new")])
        db.execute("REFRESH PARTITION 0")
        assert footer_flags(path) == partition.ENCRYPTED | partition.BOUND
        assert read_all(db) == want[:60] + [(STEP - 1, b"k", b"new")] + want[60:]
    finally:
        db.close()
    with Reader(path, cipher, Identity(uuid, 0)) as r:
        assert r.bound and r.meta["events"] == 61
