"""The merge iterator (partition/merge.py) against a dict: a file of many regions and
memtables over it, with deletes and keys, read between random bounds both ways, and
with regions taken as stored."""
from __future__ import annotations

import numpy as np
import pytest
from event_rows import as_list, make_rows

from monotone.format.rows import DELETE, concat, sort_dedup
from monotone.partition import merge as merge_module
from monotone.partition.merge import HIGHEST, LOWEST, MergeIterator
from monotone.partition.reader import Reader
from monotone.partition.writer import Writer

KEYS = [b"", b"a", b"ab", b"b", b"\x00"]


def events(rng, n, ids, deletes):
    return [(int(rng.integers(ids)), KEYS[int(rng.integers(len(KEYS)))], rng.bytes(3),
             DELETE if deletes and rng.random() < 0.25 else 0) for _ in range(n)]


def partition(tmp_path, rng, ids=120):
    """A file (or None) and memtables' rows, and the model {(id, key): value} of them."""
    model, path = {}, None
    if rng.random() < 0.85:
        rows = sort_dedup(make_rows(events(rng, int(rng.integers(1, 400)), ids, False)))
        path = str(tmp_path / "file")
        writer = Writer(path, "lz4", 0, 300, None, True, False)
        writer.add(rows)
        writer.finish({"lsn": 0}, False)
        model.update(((i, k), v) for i, k, v, _ in as_list(rows))
    mems = []
    for _ in range(int(rng.integers(0, 3))):
        mem = sort_dedup(make_rows(events(rng, int(rng.integers(0, 200)), ids + 20, True)))
        for i, k, v, f in as_list(mem):
            if f:
                model.pop((i, k), None)
            else:
                model[(i, k)] = v
        mems.append(mem)
    return path, mems, model


def within(model, low, high):
    top = (high[0], b"\xff" * 256) if high[1] is None else high
    return [(i, k, v) for (i, k), v in sorted(model.items()) if low <= (i, k) <= top]


def bound(rng, ids, upper):
    if rng.random() < 0.2:
        return HIGHEST if upper else LOWEST
    key = KEYS[int(rng.integers(len(KEYS)))]
    return int(rng.integers(ids)), None if upper and rng.random() < 0.5 else key


@pytest.mark.parametrize("seed", range(40))
def test_windows_match_a_model(tmp_path, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    if seed % 2:  # small windows: every cut between them is met
        monkeypatch.setattr(merge_module, "CHUNK", 5)
        monkeypatch.setattr(merge_module, "FIRST_CHUNK", 2)
    path, mems, model = partition(tmp_path, rng)
    for _ in range(10):
        low, high = bound(rng, 140, False), bound(rng, 140, True)
        descending = bool(rng.random() < 0.5)
        reader = None if path is None else Reader(path)
        windows = [as_list(w) for w in MergeIterator(reader, mems, low, high,
                                                     descending=descending, ahead=2)]
        if reader is not None:
            reader.close()
        want = within(model, low, high)
        assert all(windows), "no window is empty"
        got = [(i, k, v) for w in windows for i, k, v, _ in w]
        assert got == (want[::-1] if descending else want), (low, high, descending)


@pytest.mark.parametrize("seed", range(20))
def test_regions_taken_as_stored_are_left_out(tmp_path, seed):
    """Regions offered to take_stored have no memtable row in them and lie inside
    the bounds; taken, they are skipped, and with them the rest is all there is."""
    rng = np.random.default_rng(seed)
    path, mems, model = partition(tmp_path, rng)
    if path is None:
        return
    for low, high in [(LOWEST, HIGHEST)] + [(bound(rng, 140, False), bound(rng, 140, True))
                                           for _ in range(5)]:
        taken: list[int] = []
        with Reader(path) as reader:
            rows = list(MergeIterator(reader, mems, low, high,
                                      take_stored=lambda i: taken.append(i) or True))
            rows += [reader.read_region(i) for i in taken]
        got = [(i, k, v) for i, k, v, _ in as_list(sort_dedup(concat(rows)))]
        assert got == within(model, low, high), (low, high)
