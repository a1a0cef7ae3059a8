"""Encryption keys of aes storages: persisted, never shown, and a file is readable
only with its own key."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import check_no_leaks, open_db
from readback import read_all
from storage_catalog import KEY_A, storage_dir, storages

import monotone
from monotone import Event

KEY_B = "b1" * 32


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


def encrypted_repo(repo, key=None, uuid=None):
    """A closed repository whose partition 0 is in the aes storage `secret`."""
    db = open_db(repo, interval=1000)
    try:
        option = f", encryption_key '{key}'" if key else ""
        option += f", uuid '{uuid}'" if uuid else ""
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
    # if open() does not look into the file, the read must fail
    info = reading_fails(repo, "wrong encryption key")
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
    info = reading_fails(repo2, "wrong encryption key")
    assert dst in str(info.value)
    # into a storage without encryption
    os.unlink(dst)
    shutil.copyfile(src, os.path.join(storage_dir(repo2, storages(repo2)["main"]), f"{1000:020d}"))
    reading_fails(repo2, "encrypted")


def reading_fails(repo: str, match: str):
    """Opening repo and reading it all fails with match; the error's info."""
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(monotone.MonotoneError, match=match) as info:
        env.open(repo)
        try:
            read_all(env)
        finally:
            env.close()
    return info


def test_same_key_refuses_a_file_of_another_storage(repo, repo2):
    """A file is sealed for its storage: another storage with the same key refuses it."""
    encrypted_repo(repo, KEY_B)
    encrypted_repo(repo2, KEY_B)
    src = os.path.join(storage_dir(repo, storages(repo)["secret"]), f"{0:020d}")
    dst = os.path.join(storage_dir(repo2, storages(repo2)["secret"]), f"{0:020d}")
    shutil.copyfile(src, dst)
    info = reading_fails(repo2, "not partition 0 of storage")
    assert dst in str(info.value)


def test_same_storage_reads_a_copied_file(repo, repo2):
    """The same storage (uuid) with the same key, elsewhere (a backup restored), reads it."""
    want = encrypted_repo(repo, KEY_B)
    uuid = storages(repo)["secret"]["uuid"]
    encrypted_repo(repo2, KEY_B, uuid)
    src = os.path.join(storage_dir(repo, storages(repo)["secret"]), f"{0:020d}")
    dst = os.path.join(storage_dir(repo2, storages(repo2)["secret"]), f"{0:020d}")
    shutil.copyfile(src, dst)
    db = open_db(repo2)
    try:
        assert read_all(db) == want
    finally:
        db.close()
