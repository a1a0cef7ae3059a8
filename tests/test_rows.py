"""Rows operations: sort_dedup, take/gather, slice/concat, merge and Ordered.bound,
against plain-Python references."""
from __future__ import annotations

import random

import numpy as np
import pytest
from event_rows import as_list, check_offsets, make_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from monotone.format.rows import (
    DELETE,
    Ordered,
    Rows,
    concat,
    drop_deletes,
    gather,
    merge,
    pack_bytes,
    sort_dedup,
)

# rows: sort_dedup, gather/take, merge -----------------------------------------


def reference_sort_dedup(events):
    last = {}
    for e in events:
        last[(e[0], e[1])] = e  # later row wins
    return [last[k] for k in sorted(last)]  # bytes compare == memcmp, shorter first


def test_sort_dedup_key_order_memcmp_shorter_first():
    keys = [b"b", b"a", b"ab", b"", b"a\x00", b"\x00", b"\xff", b"a\x00\x00", b"aa", b"\x00\x00"]
    events = [(7, k, b"v" + k, 0) for k in keys] + [(3, b"z", b"", 0)]
    out = as_list(sort_dedup(make_rows(events)))
    assert [(e[0], e[1]) for e in out] == [(3, b"z")] + [
        (7, k) for k in [b"", b"\x00", b"\x00\x00", b"a", b"a\x00", b"a\x00\x00", b"aa", b"ab",
                         b"b", b"\xff"]]


def test_sort_dedup_later_row_wins():
    events = [(1, b"", b"first", 0), (2, b"k", b"a", 0), (1, b"", b"second", 0),
              (2, b"k", b"b", DELETE), (1, b"", b"third", 0), (0, b"", b"zero", 0)]
    out = as_list(sort_dedup(make_rows(events)))
    assert out == [(0, b"", b"zero", 0), (1, b"", b"third", 0), (2, b"k", b"b", DELETE)]


def test_sort_dedup_large_ids_order():
    ids = [2**64 - 2, 2**63, 2**63 - 1, 0, 2**32, 255, 256]
    out = sort_dedup(make_rows([(i, b"", b"", 0) for i in ids]))
    assert out.ids.tolist() == sorted(ids)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.binary(max_size=4), st.binary(max_size=6),
                          st.sampled_from([0, DELETE])), max_size=60))
def test_sort_dedup_matches_reference(events):
    out = sort_dedup(make_rows(events))
    assert as_list(out) == reference_sort_dedup(events)
    check_offsets(out)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**64 - 2), st.just(b""), st.binary(max_size=3),
                          st.just(0)), max_size=60))
def test_sort_dedup_no_keys_matches_reference(events):
    assert as_list(sort_dedup(make_rows(events))) == reference_sort_dedup(events)


def reference_take(rows_list, idx):
    return [rows_list[i] for i in idx]


@pytest.mark.parametrize("shape", ["fixed", "variable", "empty-values", "mixed-empty"])
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 500, 5000])
def test_take_random_permutation_matches_reference(shape, n):
    rnd = random.Random(n * 31 + len(shape))
    if shape == "fixed":
        values = [bytes([rnd.randrange(256)]) * 8 for _ in range(n)]
    elif shape == "variable":
        values = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(20))) for _ in range(n)]
    elif shape == "empty-values":
        values = [b""] * n
    else:
        values = [b"" if rnd.random() < 0.5 else b"xyz" * rnd.randrange(1, 3) for _ in range(n)]
    events = [(i, b"k%d" % (i % 3) if i % 2 else b"", values[i], i % 2) for i in range(n)]
    rows = make_rows(events)
    for idx in (np.random.default_rng(n).permutation(n),
                np.sort(np.random.default_rng(n + 1).choice(n, size=max(1, n // 2), replace=False)),
                np.arange(n)[::-1],
                np.concatenate([np.arange(n // 2, n), np.arange(0, n // 2)])):
        out = rows.take(idx)
        assert as_list(out) == reference_take(events, idx.tolist())
        check_offsets(out)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=10), min_size=1, max_size=200), st.data())
def test_gather_hypothesis(items, data):
    offsets, blob = pack_bytes(items)
    idx = np.array(data.draw(st.lists(st.integers(0, len(items) - 1), max_size=300)), np.int64)
    out_off, out = gather(offsets, blob, idx)
    expect = [items[i] for i in idx.tolist()]
    assert len(out_off) == len(idx) + 1
    assert [out[int(out_off[i]):int(out_off[i + 1])].tobytes() for i in range(len(idx))] == expect
    assert out.tobytes() == b"".join(expect)


def test_take_identity_and_slice_concat():
    events = [(i, b"", b"v%d" % i, 0) for i in range(10)]
    rows = make_rows(events)
    assert as_list(rows.take(np.arange(10))) == events
    s = rows.slice(3, 7)
    check_offsets(s)
    assert as_list(s) == events[3:7]
    both = concat([rows.slice(0, 2), Rows.empty(), rows.slice(8, 10)])
    check_offsets(both)
    assert as_list(both) == events[:2] + events[8:]


def test_merge_later_source_wins_and_keeps_deletes():
    old = make_rows([(1, b"", b"old1", 0), (2, b"", b"old2", 0), (3, b"a", b"old3", 0)])
    new = make_rows([(2, b"", b"new2", 0), (3, b"a", b"", DELETE), (4, b"", b"new4", 0)])
    out = merge([old, new])
    assert as_list(out) == [(1, b"", b"old1", 0), (2, b"", b"new2", 0), (3, b"a", b"", DELETE),
                            (4, b"", b"new4", 0)]
    assert as_list(drop_deletes(out)) == [(1, b"", b"old1", 0), (2, b"", b"new2", 0),
                                          (4, b"", b"new4", 0)]
    assert as_list(merge([new, old]))[1] == (2, b"", b"old2", 0)
    assert len(merge([])) == 0
    assert as_list(merge([Rows.empty(), old])) == as_list(old)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 8), st.binary(max_size=2),
                                   st.binary(max_size=3), st.sampled_from([0, DELETE])),
                         max_size=15), max_size=4))
def test_merge_matches_reference(sources):
    srcs = [sort_dedup(make_rows(s)) for s in sources]
    flat = [e for s in srcs for e in as_list(s)]  # order of sources: later wins
    assert as_list(merge(srcs)) == reference_sort_dedup(flat)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.binary(max_size=3), st.just(b""), st.just(0)),
                max_size=30),
       st.integers(0, 9), st.binary(max_size=4))
def test_ordered_bound_matches_reference(events, id_, key):
    rows = sort_dedup(make_rows(events))
    ref = [(e[0], e[1]) for e in as_list(rows)]
    o = Ordered(rows)
    assert o.bound(id_, key) == sum(1 for x in ref if x < (id_, key))
    assert o.bound(id_, key, "right") == sum(1 for x in ref if x <= (id_, key))
