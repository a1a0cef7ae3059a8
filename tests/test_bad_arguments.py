"""Bad arguments to write(), write_batch(), cursor() and execute(): wrong types, sizes
and ranges, mismatched lengths. Every failure is a MonotoneError and nothing of a
failed batch is written."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import BEFORE, open_db
from readback import read_all

import monotone
from monotone import Event


def rejected(db, call, match=None):
    """call() raises MonotoneError and the database is unchanged."""
    with pytest.raises(monotone.MonotoneError, match=match):
        call()
    assert read_all(db) == BEFORE


# wrong types -------------------------------------------------------------------------


@pytest.mark.parametrize("events", [
    [Event(id=5, value=b"ok"), Event(id=6, value="str value")],
    [Event(id=5, value=b"ok"), Event(id=6, value=None)],
    [Event(id=5, value=b"ok"), Event(id=6, value=123)],
    [Event(id=5, value=b"ok"), Event(id=6.0, value=b"float id")],
    [Event(id=5, value=b"ok"), Event(id=True, value=b"bool id")],
    [Event(id=5, value=b"ok"), Event(id="6", value=b"str id")],
    [Event(id=5, value=b"ok"), Event(id=6, key="str key")],
    [Event(id=5, value=b"ok"), Event(id=6, key=6)],
    [Event(id=5, value=b"ok"), (6, b"", b"a tuple")],
    [Event(id=5, value=b"ok"), b"bytes"],
], ids=["str-value", "none-value", "int-value", "float-id", "bool-id", "str-id", "str-key",
        "int-key", "tuple", "bytes"])
def test_write_wrong_types(filled, events):
    rejected(filled, lambda: filled.write(events))


def test_write_not_iterable(filled):
    with pytest.raises(monotone.MonotoneError):
        filled.write(None)


@pytest.mark.parametrize("kw", [
    dict(ids=[5, 6], values=[b"ok", "str"]),
    dict(ids=[5, 6], values=["a", "b"]),
    dict(ids=[5.0, 6.0], values=[b"a", b"b"]),
    dict(ids=np.array([5.5, 6.5]), values=[b"a", b"b"]),
    dict(ids=[5, "6"], values=[b"a", b"b"]),
    dict(ids=[True, False], values=[b"a", b"b"]),
    dict(ids=np.array([[5, 6]], np.uint64), values=[b"a", b"b"]),
    dict(ids=[5, 6], values=np.zeros((2, 3), np.int64)),
    dict(ids=[5, 6], values=np.zeros(6, np.uint8)),
    dict(ids=[5, 6], values=np.array(["a", "b"])),
    dict(ids=[5, 6], values=123),
    dict(ids=[5, 6], values=[b"a", b"b"], keys=["k", "l"]),
    dict(ids=[5, 6], values=[b"a", b"b"], keys=np.zeros((2, 2), np.int8)),
    dict(ids=[5, 6], values=(np.array([0, 1, 2]), np.zeros(2, np.int64))),
    dict(ids=[5, 6], values=(np.array([0.0, 1, 2]), np.zeros(2, np.uint8))),
    dict(ids=[5, 6], values=(np.array([0, 2, 1]), np.zeros(2, np.uint8))),
    dict(ids=[5, 6], values=(np.array([0, 1, 9]), np.zeros(2, np.uint8))),
    dict(ids=[5, 6], values=(np.array([0, -1, 2]), np.zeros(2, np.uint8))),
    dict(ids=None, values=None),
], ids=lambda kw: "-".join(f"{k}" for k in kw))
def test_write_batch_wrong_types(filled, kw):
    rejected(filled, lambda: filled.write_batch(**kw))


@pytest.mark.parametrize("kw", [
    dict(id=1.5), dict(id=-1), dict(id=2**64), dict(id="1"), dict(key="k"), dict(key=5),
])
def test_cursor_wrong_types(filled, kw):
    with pytest.raises(monotone.MonotoneError):
        filled.cursor(**kw)


def test_execute_wrong_type(filled):
    with pytest.raises(monotone.MonotoneError):
        filled.execute(b"SHOW interval")
    with pytest.raises(monotone.MonotoneError):
        monotone.Monotone().execute(None)


# sizes and ranges ------------------------------------------------------------------------


def test_key_too_long_write(filled):
    rejected(filled, lambda: filled.write([Event(id=5, key=b"k" * 255),
                                           Event(id=6, key=b"k" * 256)]), match="255")


@pytest.mark.parametrize("form", ["list", "2d", "offsets"])
def test_key_too_long_write_batch(filled, form):
    keys = [b"k" * 10, b"k" * 256]
    if form == "2d":
        keys = np.full((2, 256), ord("k"), np.uint8)
    elif form == "offsets":
        keys = (np.array([0, 10, 266]), np.full(266, ord("k"), np.uint8))
    rejected(filled, lambda: filled.write_batch(ids=[5, 6], values=[b"a", b"b"], keys=keys))


def test_key_of_255_bytes_is_fine(db):
    db.write([Event(id=1, key=b"\xff" * 255, value=b"a")])
    db.write_batch(ids=[2], values=[b"b"], keys=np.full((1, 255), 7, np.uint8))
    assert read_all(db) == [(1, b"\xff" * 255, b"a"), (2, bytes([7]) * 255, b"b")]


def test_max_id_with_serial_off(repo):
    db = open_db(repo, serial="false")  # serial is set before open only
    try:
        db.write([Event(id=i, key=k, value=v) for i, k, v in BEFORE])
        rejected(db, lambda: db.write([Event(id=5), Event(id=2**64 - 1)]))
        rejected(db, lambda: db.write_batch(ids=np.array([5, 2**64 - 1], np.uint64),
                                            values=[b"a", b"b"]))
        rejected(db, lambda: db.write([Event(id=5), Event(id=None)]))
        db.write([Event(id=11, value=b"after")])
        assert (11, b"", b"after") in read_all(db)
    finally:
        db.close()


@pytest.mark.parametrize("call", [
    lambda db: db.write([Event(id=5), Event(id=2**64)]),
    lambda db: db.write([Event(id=5), Event(id=-1)]),
    lambda db: db.write_batch(ids=[5, -1], values=[b"a", b"b"]),
    lambda db: db.write_batch(ids=np.array([5, -1], np.int64), values=[b"a", b"b"]),
    lambda db: db.write_batch(ids=np.array([5, -(2**63)], np.int64), values=[b"a", b"b"]),
    lambda db: db.write_batch(ids=[5, 2**64], values=[b"a", b"b"]),
], ids=["write-2**64", "write-neg", "batch-neg-list", "batch-neg-i64", "batch-min-i64",
        "batch-2**64"])
def test_ids_out_of_range(filled, call):
    rejected(filled, lambda: call(filled))


# mismatched lengths ---------------------------------------------------------------------


@pytest.mark.parametrize("kw", [
    dict(ids=[5, 6, 7], values=[b"a", b"b"]),
    dict(ids=[5], values=[b"a", b"b"]),
    dict(ids=[5, 6], values=np.zeros((3, 4), np.uint8)),
    dict(ids=[5, 6], values=(np.array([0, 1, 2, 3]), np.zeros(3, np.uint8))),
    dict(ids=[5, 6], values=[b"a", b"b"], keys=[b"k"]),
    dict(ids=[5, 6], values=[b"a", b"b"], keys=[b"k", b"l", b"m"]),
    dict(ids=[5, 6], values=[b"a", b"b"], keys=np.zeros((1, 2), np.uint8)),
    dict(values=[b"a", b"b"], keys=[b"k"]),
    dict(ids=[5, 6], values=[b"a", b"b"], deletes=[True]),
    dict(ids=[5, 6], values=[b"a", b"b"], deletes=[True, False, True]),
    dict(ids=[5, 6], values=[b"a", b"b"], deletes=np.zeros((2, 1), bool)),
    dict(values=[b"a", b"b"], deletes=np.zeros(3, bool)),
], ids=["ids>values", "ids<values", "2d-rows", "offsets", "keys<ids", "keys>ids", "2d-keys",
        "serial-keys", "deletes<", "deletes>", "deletes-2d", "serial-deletes"])
def test_mismatched_lengths(filled, kw):
    ssn = json.loads(filled.execute("SHOW ssn"))
    rejected(filled, lambda: filled.write_batch(**kw))
    assert json.loads(filled.execute("SHOW ssn")) == ssn  # no serial id was used up
