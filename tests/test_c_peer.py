"""The C monotone peer of `monotone bench --compare`, against a real build of the C library.

The library is not part of this project: the tests that need it run when
MONOTONE_C_LIB names a libmonotone.so (github.com/monotone-studio/monotone, make
release, build/libmonotone.so) and are skipped otherwise.
"""
from __future__ import annotations

import _ctypes
import os
import re
from contextlib import closing

import pytest

from monotone.scripts.c_peer import ENV, CMonotone, find_library, run_c_monotone
from monotone.scripts.peers import Workload


def _library() -> str:
    path = os.environ.get(ENV)
    if not path:
        pytest.skip(f"{ENV} is not set: no C monotone library to measure")
    if not os.path.exists(path):
        pytest.skip(f"{ENV}={path}: no such file or directory")
    return find_library(path)


def test_no_library_given_leaves_the_peer_out(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert find_library(None) is None


def test_a_missing_library_stops_the_run(tmp_path, monkeypatch):
    missing = str(tmp_path / "nowhere" / "libmonotone.so")
    monkeypatch.setenv(ENV, missing)
    with pytest.raises(SystemExit, match="no C monotone library at .*nowhere"):
        find_library(None)


def test_a_directory_without_the_library_stops_the_run(tmp_path):
    with pytest.raises(SystemExit, match=re.escape(f"at {tmp_path}/libmonotone.so")):
        find_library(str(tmp_path))


def test_a_file_that_is_no_library_stops_the_run(tmp_path):
    fake = tmp_path / "libmonotone.so"
    fake.write_text("not an ELF file")
    with pytest.raises(SystemExit, match="is not the C monotone library"):
        find_library(str(tmp_path))


def test_another_shared_library_stops_the_run():
    other = getattr(_ctypes, "__file__", None)
    if not other:
        pytest.skip("_ctypes is built into this Python: no other shared library at hand")
    with pytest.raises(SystemExit, match="is not the C monotone library.*monotone_init"):
        find_library(other)


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "no-wal"])
def test_measures_the_workload_and_keeps_every_event(tmp_path, wal):
    lib = _library()
    w = Workload(20_000, 1_000, 100, wal)
    path = str(tmp_path / "c")
    seen = []
    result = run_c_monotone(w, path, seen.append, lib)

    assert set(result) == {"write", "durable", "write_ref", "durable_ref"}
    assert all(value > 0 for value in result.values()), result
    assert result["durable"] <= result["write"]
    assert result["durable_ref"] <= result["write_ref"]
    assert seen[-1] == w.n
    for run in ("default", "workers0"):  # default workers, then the reference's 0
        assert _read_back(lib, os.path.join(path, run)) == _expected(w)


def _expected(w: Workload) -> list[tuple]:
    return [(i, b"", bytes(v), 0)
            for ids, values in w.batches() for i, v in zip(ids.tolist(), values)]


def _read_back(lib: str, path: str) -> list[tuple]:
    """Every event of the repository, by a fresh C environment reopening it."""
    db = CMonotone(lib)
    try:
        db.open(path)
        with closing(db.events()) as events:
            return list(events)
    finally:
        db.close()
