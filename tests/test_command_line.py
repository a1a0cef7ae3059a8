"""Daily use of the monotone command: exit status, standard error, scripts, help,
progress when output is not a terminal, tables, the prompt on a terminal, and the
repository log's lines. Every run is the real command in its own process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from terminal import Terminal
from test_cli import cli, make

import monotone
from monotone.ddl import help as language
from monotone.ddl import parse
from monotone.ddl.lexer import split_statements


def storages(repo) -> list[str]:
    return sorted(json.loads(cli(repo, "SHOW STORAGES").stdout))


def log_of(repo) -> str:
    with open(os.path.join(repo, "log")) as f:
        return f.read()


# the command line -------------------------------------------------------------

def test_version_and_help_open_no_repository(tmp_path):
    os.chdir(tmp_path)
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip().startswith(f"monotone-py {monotone.__version__}")
    out = cli("--help")
    assert out.returncode == 0 and "monotone serve PATH" in out.stdout and "Exit status" in out.stdout
    for sub in ("serve", "bench"):
        out = cli(sub, "--help")
        assert out.returncode == 0 and out.stdout.startswith(f"usage: monotone {sub}")
    out = cli()
    assert out.returncode == 2 and "PATH" in out.stderr and out.stdout == ""
    out = cli("--no-such-option", str(tmp_path / "r"))
    assert out.returncode == 2 and "--no-such-option" in out.stderr
    assert os.listdir(tmp_path) == []  # no repository named after an option


def test_statements_on_one_line_and_the_first_error_stops_them(repo):
    out = cli(repo, "CREATE STORAGE a (path 'x;y'); CREATE STORAGE b")
    assert out.returncode == 0, out.stderr
    assert storages(repo) == ["a", "b", "main"]
    out = cli(repo, "CREATE STORAGE c; BOGUS; CREATE STORAGE d")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip() == "monotone: error: unknown command 'BOGUS'"
    assert storages(repo) == ["a", "b", "c", "main"]


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_piped_script_stops_at_its_first_error_unless_keep_going(repo, keep_going):
    script = "CREATE STORAGE a\n# a comment\n\nSHOW STORAGE nope\nCREATE STORAGE b; SHOW serial\n"
    out = cli(*(["--keep-going"] if keep_going else []), repo, stdin=script)
    assert out.returncode == 1
    assert out.stderr.strip() == "monotone: line 4: error: storage 'nope': not exists"
    assert storages(repo) == (["a", "b", "main"] if keep_going else ["a", "main"])
    assert out.stdout.strip() == ("true" if keep_going else "")


def test_a_script_without_errors_exits_0_and_prints_each_result(repo):
    out = cli(make(repo), stdin="SHOW serial; SHOW interval\nSHOW compression\n")
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.split() == ["true", "3000000", '"lz4"']


def test_set_before_open_and_bad_settings(repo):
    out = cli("--set", "interval=1000", make(repo), "SHOW interval")
    assert out.returncode == 0 and out.stdout.strip() == "1000"
    out = cli("--set", "interval", repo, "SHOW interval")
    assert out.returncode == 2 and "NAME=VALUE" in out.stderr


def test_statement_splitting_keeps_strings_and_comments():
    text = "SHOW a; CREATE STORAGE x (path 'p;q', compression \"z;\") # c;d\n;; SHOW b;"
    assert split_statements(text) == ["SHOW a", "CREATE STORAGE x (path 'p;q', compression \"z;\") # c;d",
                                      "SHOW b"]
    assert split_statements("  # only a comment\n") == []
    assert split_statements("SHOW 'open; x") == ["SHOW 'open; x"]  # the parser reports it


# help -------------------------------------------------------------------------

def test_every_help_example_is_valid_language():
    for name, entry in language.ENTRIES.items():
        assert name.split()[0] in entry.syntax
        parse(entry.example)  # raises if the reference drifted from the parser
    assert language.topic("refresh partitions") == "REFRESH PARTITION"
    assert language.topic("create storage") == "CREATE STORAGE"
    assert language.topic("create") is None  # several: STORAGE, CLOUD, PARTITION
    assert language.topic("nothing") is None
    for name in language.STORAGE_OPTION_NAMES:  # every option named is described
        assert f"  {name} " in language.STORAGE_OPTIONS or f" {name} '" in language.STORAGE_OPTIONS \
            or f", {name} " in language.STORAGE_OPTIONS, name
    for name in language.CLOUD_OPTION_NAMES:
        assert name in language.CLOUD_OPTIONS, name
    from dataclasses import fields

    from monotone.settings import Storage
    assert set(language.STORAGE_OPTION_NAMES) <= {f.name for f in fields(Storage)}


def test_help_lists_the_language_and_one_command(repo):
    out = cli(repo, "help")
    assert out.returncode == 0
    for name in language.ENTRIES:
        assert name in out.stdout
    out = cli(repo, "help create storage")
    assert out.stdout.startswith("CREATE STORAGE [IF NOT EXISTS] name") and "region_size" in out.stdout
    out = cli(repo, "help SET")  # no repository there yet: the defaults
    assert "Variables (of a new repository):" in out.stdout and "wal_rotate_wm" in out.stdout
    assert not os.path.exists(repo)
    out = cli(make(repo), "help SET")
    assert "Variables:" in out.stdout and "wal_rotate_wm" in out.stdout
    out = cli(repo, "help frobnicate")
    assert "no help for 'frobnicate'" in out.stdout


# progress, output --------------------------------------------------------------

def filled(repo, partitions: int) -> None:
    db = monotone.Monotone()
    db.execute("SET interval TO 1000")
    db.execute("SET workers TO 0")
    db.open(repo)
    db.write_batch(np.arange(partitions * 1000, dtype=np.uint64), [b"v"] * (partitions * 1000))
    db.close()


def test_long_commands_report_progress_as_lines_when_not_on_a_terminal(repo):
    filled(repo, 4)
    out = cli(repo, "REFRESH PARTITIONS BETWEEN 0 AND 2999")
    assert out.returncode == 0 and out.stdout == ""
    assert out.stderr.splitlines()[-1].startswith("refresh: 3/3 partitions done (")
    parts = json.loads(cli(repo, "SHOW PARTITIONS").stdout)
    assert [p["events_heap"] for p in parts] == [0, 0, 0, 1000]
    out = cli(repo, "CHECKPOINT")
    assert out.stderr.splitlines()[-1].startswith("checkpoint: 1/1 partitions done (")
    out = cli(repo, "CREATE STORAGE b; MOVE PARTITIONS BETWEEN 1000 AND 9999 INTO b")
    assert out.returncode == 0 and "move: 3/3 partitions done" in out.stderr
    parts = json.loads(cli(repo, "SHOW PARTITIONS").stdout)
    assert [p["storage"] for p in parts] == ["main", "b", "b", "b"]
    assert all(p["events"] == 1000 and p["events_heap"] == 0 for p in parts)
    out = cli(repo, "MOVE PARTITIONS BETWEEN 1000 AND 9999 INTO nope")  # the command's own errors
    assert out.returncode == 1 and "storage 'nope' not found" in out.stderr
    out = cli(repo, "REBALANCE")
    assert out.returncode == 0 and out.stderr.startswith("rebalance: done (")


def test_table_output(repo, monkeypatch):
    filled(repo, 2)
    monkeypatch.setenv("COLUMNS", "250")  # the width a table may take, output being no terminal
    out = cli("--table", repo, "SHOW PARTITIONS; SHOW STORAGES; SHOW serial")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = [c.strip() for c in lines[0].split("|")]
    assert header[:2] == ["min", "max"] and "storage" in header and "size_uncompressed" in header
    rows = [dict(zip(header, (c.strip() for c in line.split("|")))) for line in lines[2:4]]
    assert [(r["min"], r["max"], r["storage"]) for r in rows] == [("0", "999", "main"),
                                                                 ("1000", "1999", "main")]
    assert all(r["created"].count("-") == 2 and r["created"].count(":") == 2 for r in rows)
    assert rows[0]["size_heap"] == "2 MiB" and rows[0]["refreshed"] == "never"
    # STORAGES is wider than 250 columns as a table: records instead
    assert "stats.partitions_local = 0" in out.stdout and "config.refresh_wm = 40 MiB" in out.stdout
    assert lines[-4:] == ["", " name   | value", "--------+-------", " serial | true"]


# the prompt, on a terminal ------------------------------------------------------

def test_prompt_on_a_terminal_helps_completes_and_reports_errors(repo):
    with Terminal(repo, HOME=os.path.dirname(repo)) as term:
        term.until(b"monotone>")
        term.type(b"help\r")
        term.until(b"help COMMAND for one command")
        term.type(b"CREATE STORAGE hotdata; SHOW serial\r")
        term.until(b"true\r\n")
        term.seen = b""
        term.type(b"SHOW STORAGE hotd\t")  # Tab completes the storage's name
        term.until(b"ata")  # what Tab added: prompt_toolkit may draw it apart from the rest
        term.type(b"\r")
        term.until(b'"refresh_wm"')
        term.seen = b""
        term.type(b"SHOW STORAGE nope\r")
        term.until(b"error: storage 'nope': not exists")
        term.quit()


# logs ---------------------------------------------------------------------------

def test_the_log_tells_refreshes_drops_workers_and_recovery(repo):
    db = monotone.Monotone()
    db.execute("SET interval TO 1000")
    db.open(repo)
    db.write_batch(np.arange(2500, dtype=np.uint64), [b"x" * 10] * 2500)
    db.execute("REFRESH PARTITION 0")
    db.execute("DROP PARTITION 1000")
    db.close()
    text = log_of(repo)
    assert "refresh partition 0: 1000 events from memory, 1000 in the file, " in text
    assert "drop partition 1000: 0 events in the file, 1000 in memory" in text
    assert "worker " in text and " started" in text and " stopped (exit status 0)" in text
    db = monotone.Monotone()
    db.open(repo)  # the WAL still holds the events of partition 2000
    assert sum(len(b) for b in db.cursor().batches()) == 1500
    db.close()
    text = log_of(repo)
    assert "recovery: partition files read: 1" in text  # 2000 was never refreshed
    assert "recovery: WAL files: 2, records to replay: 4, events: 2500" in text
    assert "recovery done in " in text


def test_the_log_tells_moves_uploads_downloads_and_cloud_drops(repo):
    out = cli("--set", "interval=1000", repo,
              "CREATE CLOUD mock (type 'mock'); "
              "CREATE STORAGE cs (cloud 'mock', cloud_drop_local false)")
    assert out.returncode == 0, out.stderr
    db = monotone.Monotone()
    db.open(repo)
    try:
        db.write_batch(np.arange(1000, dtype=np.uint64), [b"y" * 20] * 1000)
        db.execute("MOVE PARTITION 0 INTO cs")  # refreshed into cs, then uploaded
        db.execute("DROP PARTITION 0 ON STORAGE")
        db.execute("DOWNLOAD PARTITION 0")
        db.execute("DROP PARTITION 0 ON CLOUD")
    finally:
        db.close()
    text = log_of(repo)
    assert "move partition 0 from main to cs: 1000 events from memory, 1000 in the file" in text
    assert " in cs, " in text
    assert "upload partition 0: " in text and "to cloud mock" in text
    assert "drop partition 0 on storage cs (its cloud copy stays)" in text
    assert "download partition 0: " in text and "from cloud mock" in text
    assert "drop partition 0 on cloud mock" in text


def test_log_to_stdout_for_serve_and_for_an_embedded_coordinator(repo):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen([sys.executable, "-m", "monotone.scripts.cli", "serve", repo,
                               "--set", "log_to_stdout=true"], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        lines = []
        while not lines or lines[-1].strip() != "monotone: ready":
            lines.append(server.stdout.readline())
            assert lines[-1], "serve ended before it was ready"
        assert any("INFO coordinator started for" in line for line in lines)
    finally:
        server.send_signal(signal.SIGTERM)
        rest = server.stdout.read()
        assert server.wait(timeout=60) == 0
    assert "INFO coordinator stopped" in rest
    out = cli("--set", "log_to_stdout=true", repo, "SHOW serial")
    assert out.returncode == 0 and "INFO coordinator started for" in out.stdout
    assert "true" in out.stdout.splitlines()


# the Python API -------------------------------------------------------------------

def test_show_returns_python_objects_and_reprs_say_what_is_open(repo):
    db = monotone.Monotone()
    assert repr(db) == "<Monotone closed>"
    db.execute("SET workers TO 0")
    db.open(repo)
    try:
        assert repr(db) == f"<Monotone open at {os.path.realpath(repo)!r}>" or repo in repr(db)
        db.write([monotone.Event(id=7, key=b"k", value=b"v")])
        assert [p["events"] for p in db.show("PARTITIONS")] == [1]
        assert db.show("serial") is True and "main" in db.show("STORAGES")
        with pytest.raises(monotone.MonotoneError, match="show\\(\\) takes"):
            db.show("")
        cur = db.cursor()
        assert repr(cur) == "<Cursor forward, at id=7 key=b'k'>"
        assert list(cur) and repr(cur) == "<Cursor forward, at the end>"
        cur.close()
        assert repr(cur) == "<Cursor forward, closed>"
        assert repr(db.cursor(reverse=True, max_id=9)) == "<Cursor reverse, max_id=9, at id=7 key=b'k'>"
        with pytest.raises(monotone.MonotoneError, match="a list of Event, got one Event"):
            db.write(monotone.Event(id=1))
        with pytest.raises(monotone.MonotoneError, match="item 1 is int"):
            db.write([monotone.Event(id=1), 5])
    finally:
        db.close()


def test_other_systems_get_a_clear_error(repo, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(monotone.MonotoneError, match="runs on Linux only"):
        monotone.Monotone().open(repo)


def test_package_is_typed_and_has_one_version():
    import monotone as package
    assert os.path.exists(os.path.join(os.path.dirname(package.__file__), "py.typed"))
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    assert 'dynamic = ["version"]' in text and 'attr = "monotone.__version__"' in text
    assert "\nversion =" not in text.split("[tool.setuptools.dynamic]")[0]
