"""Serial ids never land on an id already written: an explicit id moves the ssn counter
past it, in a batch of its own or mixed with serial ones, in any process, across a clean
restart and across kill -9 of the coordinator; near 2**64-1 serial ids run out cleanly."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import ALL, coordinator_pids, open_db, run_python
from process_kill import kill9
from readback import read_all

import monotone
from monotone import Event

LAST = 2**64 - 2  # the largest id a write can give (2**64-1 marks a serial write)


def ssn(db) -> int:
    return json.loads(db.execute("SHOW ssn"))


def values(n: int, tag: bytes) -> list[bytes]:
    return [tag + b"%d" % i for i in range(n)]


# one process ----------------------------------------------------------------------------


def test_serial_write_after_explicit_ids_replaces_nothing(db):
    """The reported case: ids 0 and 1 given, then one without: it must not be 0."""
    assert db.write([Event(id=0, value=b"zero")]) == [0]
    assert db.write([Event(id=1, value=b"one")]) == [1]
    assert db.write([Event(value=b"serial")]) == [2]
    assert read_all(db) == [(0, b"", b"zero"), (1, b"", b"one"), (2, b"", b"serial")]
    assert ssn(db) == 3


def test_mixed_batch_serial_ids_avoid_its_own_explicit_ids(db):
    """Serial ids of a batch go past the explicit ids of the same batch (not only of
    earlier ones): nothing of the batch replaces anything else of it."""
    got = db.write([Event(id=0, value=b"e0"), Event(value=b"s0"), Event(id=1, value=b"e1"),
                    Event(value=b"s1")])
    assert got == [0, 2, 1, 3]
    assert read_all(db) == [(0, b"", b"e0"), (1, b"", b"e1"), (2, b"", b"s0"),
                            (3, b"", b"s1")]
    # an explicit id below ssn leaves it where it is
    assert db.write([Event(value=b"s2"), Event(id=2, key=b"k", value=b"e2")]) == [4, 2]
    assert ssn(db) == 5


def test_write_batch_ids_then_serial_batch(db):
    ids = np.array([7, 3, 100, 42], np.uint64)  # unsorted: the largest is not the last
    db.write_batch(ids=ids, values=values(4, b"given"))
    got = db.write_batch(values=values(5, b"serial"))
    assert got.tolist() == list(range(101, 106))
    events = read_all(db)
    assert [e[0] for e in events] == [3, 7, 42, 100, 101, 102, 103, 104, 105]
    assert [e[2] for e in events[:4]] == [b"given1", b"given0", b"given3", b"given2"]


def test_explicit_ids_move_ssn_with_serial_off(repo):
    """With serial off nothing is generated, but explicit ids still move ssn: serial
    may be switched on at a later open, and its ids must miss these too."""
    db = open_db(repo, serial="false")
    try:
        db.write_batch(ids=np.arange(10, dtype=np.uint64), values=values(10, b"v"))
        assert ssn(db) == 10
    finally:
        db.close()
    db = open_db(repo, serial="true")
    try:
        assert db.write([Event(value=b"serial")]) == [10]
        assert len(read_all(db)) == 11
    finally:
        db.close()


def test_set_ssn_stays_an_explicit_request(db):
    """SET ssn TO n is obeyed even below ids written; later explicit ids move it again."""
    db.write_batch(ids=np.arange(10, dtype=np.uint64), values=values(10, b"v"))
    assert ssn(db) == 10
    db.execute("SET ssn TO 3")
    assert ssn(db) == 3
    assert db.write([Event(value=b"asked")]) == [3]  # replaces 3: the user asked for it
    db.write([Event(id=20, value=b"twenty")])
    assert db.write([Event(value=b"next")]) == [21]


# serial ids running out ---------------------------------------------------------------


def test_explicit_last_id_exhausts_serial_ids(db):
    """Explicit id 2**64-2 moves ssn to 2**64-1, the serial marker: the next serial
    write fails clearly, never wraps to 0 nor gives 2**64-1."""
    db.write([Event(id=5, value=b"five")])
    db.write([Event(id=LAST, value=b"last")])
    assert ssn(db) == 2**64 - 1
    with pytest.raises(monotone.MonotoneError, match="serial ids are exhausted"):
        db.write([Event(value=b"x")])
    with pytest.raises(monotone.MonotoneError, match="serial ids are exhausted"):
        db.write_batch(values=[b"y"])
    assert read_all(db) == [(5, b"", b"five"), (LAST, b"", b"last")]
    # explicit ids still work
    assert db.write([Event(id=6, value=b"six")]) == [6]


def test_mixed_batch_at_the_last_id_fails_whole(db):
    """A batch with explicit id 2**64-2 and a serial one: no serial id is left for it;
    nothing of the batch is written and ssn does not move."""
    with pytest.raises(monotone.MonotoneError, match="serial ids are exhausted"):
        db.write([Event(id=LAST, value=b"last"), Event(value=b"serial")])
    assert read_all(db) == []
    assert ssn(db) == 0


def test_last_serial_id_then_exhausted(db):
    db.write([Event(id=LAST - 1, value=b"given")])
    assert db.write([Event(value=b"serial")]) == [LAST]
    with pytest.raises(monotone.MonotoneError, match="serial ids are exhausted"):
        db.write([Event(value=b"more")])
    assert read_all(db) == [(LAST - 1, b"", b"given"), (LAST, b"", b"serial")]


def test_exhausted_ssn_survives_reopen(repo):
    """The exhausted counter is persisted as it is (config.json, WAL record, file): the
    repository opens again and serial ids are still refused."""
    db = open_db(repo)
    try:
        db.write([Event(id=LAST, value=b"last")])
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert ssn(db) == 2**64 - 1
        with pytest.raises(monotone.MonotoneError, match="serial ids are exhausted"):
            db.write([Event(value=b"x")])
        assert read_all(db) == [(LAST, b"", b"last")]
    finally:
        db.close()


# several processes ---------------------------------------------------------------------

CHILD = r"""
import sys
import numpy as np
import monotone
from monotone import Event
db = monotone.Monotone()
db.execute("SET workers TO 0")
db.open(sys.argv[1])
if sys.argv[2] == "explicit":
    db.write_batch(ids=np.arange(100, dtype=np.uint64), values=[b"child"] * 100)
    db.write([Event(id=1000, value=b"child")])
else:
    print(db.write([Event(value=b"child serial")])[0], flush=True)
db.close()
"""


def child(repo, mode) -> str:
    proc = run_python(CHILD, repo, mode, stdout=-1, stdin=-1)
    out, _ = proc.communicate()
    assert proc.returncode == 0, f"the child process failed ({proc.returncode})"
    return out.decode().strip()


def test_explicit_ids_of_another_process_move_ssn(repo):
    """ssn lives in shared memory: ids one process gives are passed by the serial ids
    another hands out, in either direction."""
    db = open_db(repo)  # stays open: the coordinator and its shared memory live on
    try:
        assert db.write([Event(value=b"first")]) == [0]  # its id is then replaced by the
        child(repo, "explicit")                          # child's explicit 0: as asked
        assert db.write([Event(value=b"parent serial")]) == [1001]
        db.write([Event(id=5000, value=b"parent")])
        assert child(repo, "serial") == "5001"
        events = read_all(db)
        assert [e[0] for e in events] == list(range(100)) + [1000, 1001, 5000, 5001]
        assert {e[2] for e in events[:101]} == {b"child"}
    finally:
        db.close()


# restarts ------------------------------------------------------------------------------


@pytest.mark.parametrize("refresh", [False, True], ids=["wal", "refreshed"])
def test_ssn_survives_close_and_reopen(repo, refresh):
    db = open_db(repo)
    try:
        db.write_batch(ids=np.array([3, 9, 700], np.uint64), values=values(3, b"v"))
        if refresh:
            db.execute(ALL)
    finally:
        db.close()
    db = open_db(repo)
    try:
        assert db.write([Event(value=b"serial")]) == [701]
        assert [e[0] for e in read_all(db)] == [3, 9, 700, 701]
    finally:
        db.close()


def config_ssn(repo) -> int:
    with open(os.path.join(repo, "config.json")) as f:
        return json.load(f)["ssn"]


@pytest.mark.parametrize("then", ["reopen", "reattach"])
@pytest.mark.parametrize("wal", ["true", "false"], ids=["wal-record", "file-meta"])
def test_ssn_survives_coordinator_killed(repo, wal, then):
    """kill -9 of the coordinator: config.json still holds the ssn of the open, so the
    moved ssn must come back from the WAL record of the explicit write (wal on) or from
    the partition file's metadata (wal off, the write refreshed); both with the
    repository opened again and with this client going on (a new coordinator)."""
    db = open_db(repo, wal=wal)
    try:
        db.write_batch(ids=np.array([10, 2000], np.uint64), values=[b"a", b"b"])
        if wal == "false":
            db.execute(ALL)
        assert config_ssn(repo) == 0  # what recovery gets must come from elsewhere
        kill9(coordinator_pids(repo)[0])
        if then == "reopen":
            db.close()
            db = open_db(repo, wal=wal)
        else:
            # a write now could still land in the dead coordinator's memory (the client
            # may not have noticed yet): a request makes it notice, and the call after
            # it starts a new coordinator, which recovers
            try:
                db.execute("SHOW ssn")
            except monotone.CoordinatorError:
                pass  # it found the coordinator dead during the request
        assert ssn(db) == 2001
        assert db.write([Event(value=b"serial")]) == [2001]
        assert read_all(db) == [(10, b"", b"a"), (2000, b"", b"b"), (2001, b"", b"serial")]
    finally:
        db.close()
