"""Opening and closing: errors leave the instance usable, context managers, reopening,
one open at a time, and another process on the same repository."""
from __future__ import annotations

import os

import pytest
from conftest import ALL
from readback import read_all

import monotone
from monotone import Event

# errors keep the instance usable; context managers ------------------------------


def test_usable_after_errors(db):
    db.write([Event(id=1, value=b"one")])
    for bad in (lambda: db.write([Event(id=-1)]),
                lambda: db.execute("SET nope TO 1"),
                lambda: db.execute("garbage"),
                lambda: db.execute("REFRESH PARTITION 7000077"),  # no partition holds it
                lambda: db.write_batch(ids=[1, 2], values=[b"x"]),
                lambda: db.open("/tmp"),
                lambda: db.cursor(id=-5)):
        with pytest.raises(monotone.MonotoneError):
            bad()
        db.write([Event(id=2, value=b"two")])
        assert read_all(db)[:2] == [(1, b"", b"one"), (2, b"", b"two")]
    db.execute(ALL)
    assert read_all(db) == [(1, b"", b"one"), (2, b"", b"two")]


def test_context_managers_and_reopen(repo):
    with monotone.Monotone() as db:
        db.execute("SET workers TO 0")
        db.open(repo)
        db.write([Event(id=1, value=b"x")])
        with db.cursor() as cur:
            assert cur.read().value == b"x"
        assert cur.read() is None  # closed cursor
    with pytest.raises(monotone.MonotoneError):
        db.write([Event(id=2)])  # closed
    with pytest.raises(monotone.MonotoneError):
        db.cursor()
    db.close()  # closing twice is fine
    db.open(repo)  # the same environment opens again
    try:
        assert read_all(db) == [(1, b"", b"x")]
    finally:
        db.close()


def test_open_twice_is_an_error(db, tmp_path):
    with pytest.raises(monotone.MonotoneError):
        db.open(str(tmp_path / "other"))
    assert not os.path.exists(tmp_path / "other")


READER = """
import sys, monotone
db = monotone.Monotone()
db.open(sys.argv[1])
print(repr([(e.id, e.key, e.value) for e in db.cursor()]), flush=True)
db.write([monotone.Event(id=99, value=b"from child")])
db.close()
"""


def test_writes_visible_to_another_process(db, repo):
    import ast
    import subprocess

    from conftest import run_python
    db.write([Event(id=1, key=b"k", value=b"parent")])
    proc = run_python(READER, repo, stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert ast.literal_eval(out.decode().strip()) == [(1, b"k", b"parent")]
    assert read_all(db) == [(1, b"k", b"parent"), (99, b"", b"from child")]
