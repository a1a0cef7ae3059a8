"""The monotone command: one command, the prompt, serve and bench, as real processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, coordinator_pids

import monotone
from monotone.protocol import repo_id
from monotone.shm.segment import list_segments


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "monotone.scripts.cli", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120)


def make(repo: str) -> str:
    """A new repository at repo (the command makes none for a command that only reads)."""
    db = monotone.Monotone()
    db.open(repo)
    db.close()
    return repo


def test_one_command_prints_its_result(repo):
    out = cli(make(repo), "SHOW interval")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == 3000000


def test_error_exits_1_with_the_message(repo):
    out = cli(make(repo), "SHOW no_such_variable")
    assert out.returncode == 1
    assert "no_such_variable" in out.stderr
    out = cli(repo, "REFRESH PARTITIONS BETWEEN 1")
    assert out.returncode == 1
    assert "error: REFRESH PARTITIONS BETWEEN min 'AND' max" in out.stderr


def test_works_while_another_process_has_it_open(repo):
    db = monotone.Monotone()
    db.open(repo)
    try:
        db.write([monotone.Event(value=b"x")] * 3)
        out = cli(repo, "SHOW PARTITIONS")
        assert out.returncode == 0, out.stderr
        parts = json.loads(out.stdout)
        assert [p["events_heap"] for p in parts] == [3]
        assert cli(repo, "REFRESH PARTITION 0").returncode == 0
        assert [ev.value for ev in db.cursor()] == [b"x", b"x", b"x"]
        assert json.loads(db.execute("SHOW PARTITION 0"))["events"] == 3
    finally:
        db.close()


def test_piped_commands_run_until_quit(repo):
    out = cli(repo, stdin="SET compression TO 'zstd'\nSHOW compression\nquit\nSHOW wal\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '"zstd"'  # nothing after quit


def test_serve_keeps_the_repository_open_until_terminated(repo):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    server = subprocess.Popen([sys.executable, "-m", "monotone.scripts.cli", "serve", repo],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout.readline().startswith("monotone: serving")
        assert server.stdout.readline().strip() == "monotone: ready"
        for value in (b"a", b"b"):
            db = monotone.Monotone()
            db.open(repo)
            db.write([monotone.Event(value=value)])
            db.close()
            # a served repository outlives its clients
            assert coordinator_pids(repo) == [] and server.poll() is None
        db = monotone.Monotone()
        db.open(repo)
        assert [ev.value for ev in db.cursor()] == [b"a", b"b"]
        db.close()
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    assert list_segments(repo_id(repo)) == []


def test_bench_runs_and_reports(tmp_path):
    out = cli("bench", "--n", "20000", "--batch", "500", "--writers", "2", "--path", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for what in ("write (wal)", "scan batches (wal)", "write (no wal)", "scan file (no wal)",
                 "write, 1 writer", "write, 2 writers"):
        assert any(line.startswith(what) and "events/s" in line and "MiB/s" in line
                   for line in lines), what


def test_bench_compare_prints_every_peer_it_has(tmp_path, monkeypatch):
    monkeypatch.delenv("MONOTONE_C_LIB", raising=False)
    out = cli("bench", "--compare", "--n", "20000", "--repeat", "1", "--writers", "2",
              "--refresh-sizes", "20000,60000", "--path", str(tmp_path))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    try:
        import lmdb  # noqa: F401  (an optional extra: pip install '.[bench]')
        have_lmdb = True
    except ImportError:
        have_lmdb = False
    header = next(line for line in text.splitlines() if "sqlite3" in line and "numpy file" in line)
    assert "sqlite3" in header and "numpy file" in header
    assert ("lmdb" in header) == have_lmdb
    assert ("left out: lmdb" in text) != have_lmdb
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    for row in ("write_batch, workers 0", "write + refresh, workers 0",
                "write_batch, workers 3", "write + refresh, workers 3", "scan, batches()",
                "per event, memtable", "per event, files",
                "scan after writes, worst", "scan after writes, best",
                "range read of 10,000", "2 writer processes"):
        assert row in rows and ("M/s" in rows[row] or " ms" in rows[row]), row
    cpu = rows["writer CPU-s per M events"].split()
    assert float(cpu[5]) > 0 and float(cpu[7]) > 0 and cpu[6:9:2] == ["(1)", "(2)"]
    busy = rows["cores busy while writing"].split()
    assert all(0 < float(busy[i]) <= os.cpu_count() + 0.5 for i in (4, 6))
    if have_lmdb:  # ratios against lmdb, with the goal beside each
        assert ">=1.30x" in rows["write_batch, workers 0"]
        assert ">=1.30x" in rows["write_batch, workers 3"]
        assert "<=1.00x" in rows["range read of 10,000"]
        assert ">=3.00x" in rows["scan after writes, worst"]
    assert "monotone memory:" in text
    for size in ("20,000", "60,000"):  # the same new events refreshed into each size
        row = rows[f"into a partition of {size}"].split()
        assert row[-1] == "ms" and float(row[-2]) > 0
    assert "left out: C monotone" in text  # no build of the C original given
    assert os.listdir(tmp_path) == []  # every repository and peer file removed


@pytest.mark.parametrize("sizes", ["1,x", "-5", ""])
def test_bench_refuses_bad_refresh_sizes(sizes):
    out = cli("bench", "--compare", "--refresh-sizes", sizes)
    assert out.returncode == 2 and "--refresh-sizes" in out.stderr
