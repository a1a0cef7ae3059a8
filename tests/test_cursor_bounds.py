"""Bounded, reverse and following cursors: max_id and reverse against a model of what
was written, what a bounded or reverse read opens and reads, following a writer in
another process, and the arguments they refuse."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import numpy as np
import pytest
from conftest import ALL, open_db, run_python
from event_rows import make_rows

import monotone
from monotone import Event
from monotone.format.rows import DELETE
from monotone.partition import merge as merge_module
from monotone.partition.merge import MergeIterator
from monotone.partition.reader import Reader

TOP = 2**64 - 1
KEYS = [b"", b"a", b"ab", b"b", b"\x00", b"zz"]
PROBE_KEYS = [None, b"", b"a", b"a\x00", b"b", b"c", b"zz"]


# against a model ------------------------------------------------------------------


def expected(model: dict, id_, key, max_id, reverse: bool) -> list[tuple]:
    """What a cursor must yield, from the model {(id, key): value}."""
    top = TOP if max_id is None else max_id
    rows = [(i, k, v) for (i, k), v in sorted(model.items()) if i <= top]
    if not reverse:
        return [r for r in rows if (r[0], r[1]) >= (id_ or 0, key or b"")]
    start = top if id_ is None else id_
    return [r for r in reversed(rows)
            if (r[0] <= start if key is None else (r[0], r[1]) <= (start, key))]


def write_round(db, model: dict, rng, ids: int) -> None:
    """One batch of random writes and deletes, applied to the model in order."""
    events = []
    for _ in range(int(rng.integers(50, 300))):
        id_, key = int(rng.integers(0, ids)), KEYS[int(rng.integers(len(KEYS)))]
        if rng.random() < 0.2:
            events.append(Event(id=id_, key=key, delete=True))
            model.pop((id_, key), None)
        else:
            value = rng.bytes(int(rng.integers(0, 60)))
            events.append(Event(id=id_, key=key, value=value))
            model[(id_, key)] = value
    db.write(events)


def probe(rng, ids: int) -> tuple:
    id_ = None if rng.random() < 0.25 else int(rng.integers(0, ids + 10))
    key = PROBE_KEYS[int(rng.integers(len(PROBE_KEYS)))]
    max_id = None
    if rng.random() < 0.6:
        max_id = (id_ or 0) + int(rng.integers(0, 90))
    return id_, key, max_id, bool(rng.random() < 0.5)


def ordered(rows: list[tuple], reverse: bool) -> bool:
    keys = [(r[0], r[1]) for r in rows]
    return all((a > b) if reverse else (a < b) for a, b in zip(keys, keys[1:]))


@pytest.mark.parametrize("seed,chunk", [(1, None), (2, None), (3, 7)])
def test_bounds_against_a_model(repo, monkeypatch, seed, chunk):
    """Random writes, deletes and keys over ten partitions, part refreshed into
    files of many regions and part in memtables on top; every read agrees."""
    if chunk:  # memtable rows merged a few at a time: every cut between chunks is met
        monkeypatch.setattr(merge_module, "CHUNK", chunk)
    rng = np.random.default_rng(seed)
    ids, model = 200, {}
    db = open_db(repo, interval=20)
    try:
        db.execute("ALTER STORAGE main SET (region_size 1KiB)")
        for round_ in range(8):
            write_round(db, model, rng, ids)
            if round_ % 3 == 1:
                lo = int(rng.integers(0, ids))
                db.execute(f"REFRESH PARTITIONS BETWEEN {lo} AND {lo + 80}")
            if round_ == 4:
                db.execute(ALL)
            for _ in range(15):
                id_, key, max_id, rev = probe(rng, ids)
                want = expected(model, id_, key, max_id, rev)
                args = dict(id=id_, key=key, max_id=max_id, reverse=rev)
                with db.cursor(**args) as cur:
                    first = cur.read()
                    assert (first and (first.id, first.key, first.value)) == \
                        (want[0] if want else None), args
                    assert [(e.id, e.key, e.value) for e in cur] == want, args
                with db.cursor(**args) as cur:
                    batches = [[(int(b.ids[i]), b.key(i), b.value(i)) for i in range(len(b))]
                               for b in cur.batches()]
                assert all(b and ordered(b, rev) for b in batches), args
                assert sum(batches, []) == want, args
        parts = json.loads(db.execute("SHOW PARTITIONS"))
        assert len(parts) >= 9 and any(p["regions"] > 2 for p in parts)
    finally:
        db.close()


def test_reverse_many_memtable_rows(db):
    """More rows than one chunk in a memtable, with deletes: descending, whole."""
    ids = np.arange(150_000, dtype=np.uint64)
    db.write_batch(ids=ids, values=(ids % np.uint64(251)).astype(np.uint8).reshape(-1, 1))
    gone = np.arange(7, 150_000, 1000, dtype=np.uint64)
    db.write_batch(ids=gone, deletes=np.ones(len(gone), bool))
    want = np.setdiff1d(ids, gone)[::-1]
    with db.cursor(reverse=True) as cur:
        batches = list(cur.batches())
    got = np.concatenate([b.ids for b in batches])
    assert np.array_equal(got, want)
    assert len(batches) > 1 and all(np.all(np.diff(b.ids.astype(np.int64)) < 0) for b in batches)
    assert batches[0].value(0) == bytes([149_999 % 251])
    with db.cursor(id=100_500, max_id=120_000, reverse=True) as cur:
        assert [next(iter(cur)).id for _ in range(3)] == [100_500, 100_499, 100_498]


def test_memtables_merge_in_chunks(monkeypatch):
    """Two memtables (frozen and active) merged downwards a few rows at a time: an
    (id, key) in both is one event, the active one's, and its deletes hide it."""
    monkeypatch.setattr(merge_module, "CHUNK", 3)

    frozen = [(i, k, b"old", 0) for i in range(10) for k in (b"", b"k")]
    active = [(i, b"k", b"new", DELETE if i % 3 == 0 else 0) for i in range(2, 12)]
    model = {(i, k): v for i, k, v, _ in frozen}
    for i, k, v, f in active:
        if f:
            model.pop((i, k), None)
        else:
            model[(i, k)] = v
    mems = [make_rows(frozen), make_rows(active)]
    out = [(int(b.ids[i]), b.key(i), b.value(i))
           for b in MergeIterator(None, mems, descending=True)
           for i in range(len(b))]
    assert out == [(i, k, v) for (i, k), v in sorted(model.items(), reverse=True)]


# what a bounded or reverse read touches ---------------------------------------------


@pytest.fixture
def reads(monkeypatch):
    """Partition files opened (their first id), regions read ((first id, region)) and
    the events of each region of the files opened ({first id: [events]})."""
    seen = {"files": [], "regions": [], "events": {}}
    init, read_region = Reader.__init__, Reader.read_region

    def counting_init(self, *args, **kw):
        init(self, *args, **kw)
        first = int(os.path.basename(self.path))
        seen["files"].append(first)
        seen["events"][first] = self.index.entries["events"].tolist()

    def counting_read(self, i):
        seen["regions"].append((int(os.path.basename(self.path)), i))
        return read_region(self, i)

    monkeypatch.setattr(Reader, "__init__", counting_init)
    monkeypatch.setattr(Reader, "read_region", counting_read)
    return seen


def test_last_events_read_only_the_tail(repo, reads):
    db = open_db(repo, interval=10_000)
    try:
        ids = np.arange(50_000, dtype=np.uint64)
        db.write_batch(ids=ids, values=np.tile(ids.astype(">u8").view(np.uint8).reshape(-1, 8),
                                               (1, 12)))
        db.execute(ALL)
        db.write([Event(id=i, value=b"again") for i in range(49_980, 50_000)])  # over the file
        parts = json.loads(db.execute("SHOW PARTITIONS"))
        assert len(parts) == 5 and all(p["regions"] > 5 for p in parts)
        last = parts[-1]["regions"] - 1
        reads["files"].clear()
        with db.cursor(reverse=True) as cur:
            it = iter(cur)
            got = [next(it) for _ in range(100)]
        assert [e.id for e in got] == list(range(49_999, 49_899, -1))
        assert [e.value for e in got[:21]] == [b"again"] * 20 + [got[20].value]
        assert got[20].value == (49_979).to_bytes(8, "big") * 12
        assert reads["files"] == [40_000]
        # the last regions, down to the one that holds the 100th event from the end
        events = reads["events"][40_000]
        need = next(n for n in range(1, len(events) + 1) if sum(events[-n:]) >= 100)
        assert need < len(events) // 2
        assert reads["regions"] == [(40_000, last - n) for n in range(need)]
        # from a bound: the partition and region holding it, nothing above
        reads["files"].clear()
        reads["regions"].clear()
        with db.cursor(reverse=True, max_id=25_000) as cur:
            assert next(cur.batches()).ids[:2].tolist() == [25_000, 24_999]
        assert reads["files"] == [20_000]
        assert len(reads["regions"]) == 2 and all(p == 20_000 for p, _ in reads["regions"])
        # forward to a bound: no partition nor region past it
        reads["files"].clear()
        reads["regions"].clear()
        assert [e.id for e in db.cursor(id=9_000, max_id=10_100)] == list(range(9_000, 10_101))
        assert sorted(set(reads["files"])) == [0, 10_000]
        assert [r for p, r in reads["regions"] if p == 10_000] == [0]
    finally:
        db.close()


# following -----------------------------------------------------------------------


WRITER = """
import sys
import monotone
batches, size = int(sys.argv[2]), int(sys.argv[3])
db = monotone.Monotone()
db.open(sys.argv[1])
for b in range(batches):
    sys.stdin.readline()  # the follower has read everything so far
    db.write([monotone.Event(value=b"%d" % (b * size + i)) for i in range(size)])
    if b == batches // 2:
        db.execute("REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615")
db.write([monotone.Event(value=b"end")])
db.close()
"""


def go(writer) -> None:
    writer.stdin.write(b"go\n")
    writer.stdin.flush()


def test_follow_a_writer_in_another_process(repo):
    """The follower reads every event in order as another process writes it, waiting
    between batches (the writer goes on only once it has read them all)."""
    db = open_db(repo, interval=500)
    batches, size = 12, 97
    writer = run_python(WRITER, repo, str(batches), str(size), stdin=subprocess.PIPE)
    try:
        got = []
        go(writer)
        with db.cursor(follow=True, timeout=60) as cur:
            for ev in cur:
                got.append(ev)
                if ev.value == b"end":
                    break
                if len(got) % size == 0 and len(got) < batches * size:
                    go(writer)
        assert writer.wait(60) == 0
        assert [e.id for e in got] == list(range(batches * size + 1))
        assert [e.value for e in got[:-1]] == [b"%d" % i for i in range(batches * size)]
        assert len(json.loads(db.execute("SHOW PARTITIONS"))) == 3
        # it ends by its timeout once nothing comes, from where it was
        with db.cursor(id=batches * size - 5, follow=True, timeout=0.3) as cur:
            started = time.monotonic()
            ids = np.concatenate([b.ids for b in cur.batches()])
            assert time.monotonic() - started >= 0.3
        assert ids.tolist() == list(range(batches * size - 5, batches * size + 1))
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        db.close()


def test_follow_goes_on_after_the_last_key(db):
    """Written while it reads: the next keys of the last id are seen, lower ones not
    (it goes on from just after the last event it read)."""
    db.write([Event(id=5, key=b"a", value=b"1")])
    seen = []
    with db.cursor(follow=True, timeout=0) as cur:
        for ev in cur:
            seen.append((ev.id, ev.key))
            if len(seen) == 1:
                db.write([Event(id=5, key=b"a\x00", value=b"2"), Event(id=4, value=b"lower")])
            elif len(seen) == 2:
                db.write([Event(id=5, key=b"", value=b"lower"), Event(id=6, value=b"3")])
    assert seen == [(5, b"a"), (5, b"a\x00"), (6, b"")]


def test_close_stops_a_follower_waiting_in_another_thread(db):
    db.write([Event(id=i) for i in range(3)])
    cur = db.cursor(follow=True)
    read_all, seen = threading.Event(), []

    def follow():
        for ev in cur:
            seen.append(ev.id)
            if ev.id == 2:
                read_all.set()

    thread = threading.Thread(target=follow)
    thread.start()
    assert read_all.wait(30)
    cur.close()
    thread.join(30)
    assert not thread.is_alive()
    assert seen == [0, 1, 2] and cur.read() is None


# arguments -----------------------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (dict(id=10, max_id=9), "max_id 9 is below its id 10"),
    (dict(max_id=-1), "max_id must be None or an int"),
    (dict(max_id=2**64), "max_id must be None or an int"),
    (dict(max_id=1.5), "max_id must be None or an int"),
    (dict(id=-1, reverse=True), "id must be None or an int"),
    (dict(reverse=True, follow=True), "cannot follow in reverse"),
    (dict(timeout=1), "timeout is for follow=True"),
    (dict(follow=True, timeout=-1), "seconds >= 0"),
    (dict(follow=True, timeout=float("nan")), "seconds >= 0"),
    (dict(follow=True, timeout="1"), "seconds >= 0"),
])
def test_bad_arguments(filled, args, message):
    with pytest.raises(monotone.MonotoneError, match=message):
        filled.cursor(**args)


def test_timeout_zero_and_bound_equal_to_id(filled):
    with filled.cursor(id=2, max_id=2) as cur:
        assert [(e.id, e.key) for e in cur] == [(2, b"k")]
    with filled.cursor(follow=True, timeout=0) as cur:
        assert [e.id for e in cur] == [1, 2, 10]
