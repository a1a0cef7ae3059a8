"""How SHOW prints at the command line, in each output mode: json as SHOW returns it, a
table fitted to a width (records past it), csv, and `name = value` lines; times, sizes
and durations readable for people, raw for programs.

The Runner runs in-process over one repository with a storage on a mock cloud and
partitions (local, on the cloud, in memory); one test runs the installed command."""
from __future__ import annotations

import csv
import datetime
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import check_no_leaks, open_db

from monotone.scripts import output
from monotone.scripts.output import FIELDS, human, rows_of
from monotone.scripts.runner import Runner

# every SHOW, and how its rows come out: a row per item, a row per name, or one record
SHOWS = {
    "PARTITIONS": "items", "PARTITIONS s": "items", "PARTITIONS DEBUG": "items",
    "PARTITION 0": "record", "PARTITION 0 DEBUG": "record",
    "STORAGES": "names", "STORAGE main": "record", "STORAGE s": "record",
    "CLOUDS": "names", "CLOUD c": "record", "PIPELINE": "items",
    "WAL": "record", "MEMORY": "record", "CACHE": "record", "WORKERS": "record",
    "CONFIG": "record", "ALL": "record", "serial": "record", "lock_timeout": "record",
}
SEVERAL = ["serial, interval", "serial, WAL", "WAL, PARTITIONS"]
MODES = ["table", "csv", "line"]
# numbers that are ids or counts, printed as they are (FIELDS holds the others)
PLAIN = {"min", "max", "events", "events_heap", "regions", "refreshes", "partitions",
         "partitions_local", "partitions_cloud", "compression_level", "lsn", "lsn_min",
         "files", "pages", "pages_used", "pages_free", "limit_hits", "requests", "hits",
         "evictions", "workers", "workers_upload", "started", "busy", "queue", "done",
         "partitions_busy", "retries", "ssn", "interval"}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Partition 0 refreshed in main, 1000 moved to s on the mock cloud c, 2000 in
    memory; a pipeline with retention; an empty storage."""
    base = str(tmp_path_factory.mktemp("formats") / "repo")
    env = open_db(base, workers_upload=0, interval=1000)
    env.execute("CREATE CLOUD c (type 'mock')")
    env.execute("CREATE STORAGE s (cloud 'c')")
    env.execute("CREATE STORAGE empty")
    env.write_batch(np.arange(2500, dtype=np.uint64), [b"x" * 10] * 2500)
    env.execute("REFRESH PARTITION 0")
    env.execute("MOVE PARTITION 1000 INTO s")
    env.execute("ALTER PIPELINE SET main (partitions 10, duration 1 day), s")
    yield env
    env.close()
    check_no_leaks(base)


def run(db, statement: str, mode: str, width: int | None = 200) -> str:
    out = io.StringIO()
    Runner(db, mode, out=out, width=width).run(statement)
    return out.getvalue()


def show(db, statement: str):
    return json.loads(db.execute(f"SHOW {statement}"))


# what each mode must hold, worked out here from the JSON
def dotted(value: dict, prefix: str = "") -> dict:
    out = {}
    for key, v in value.items():
        if isinstance(v, dict) and v:
            out.update(dotted(v, f"{prefix}{key}."))
        else:
            out[prefix + key] = v
    return out


def expected_rows(value, shape: str, name: str) -> list[dict]:
    if shape == "items":
        return [dotted(v) for v in value]
    if shape == "names":
        return [{"name": key, **dotted(v)} for key, v in value.items()]
    return [dotted(value) if isinstance(value, dict) else {name: value}]


def cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def records(text: str) -> list[dict]:
    """The records of line mode: `name = value` lines, a blank line between records."""
    out = []
    for block in text.strip("\n").split("\n\n"):
        pairs = [line.partition(" = ") for line in block.split("\n")]
        assert all(eq for _, eq, _ in pairs), block
        out.append({name.strip(): value for name, _, value in pairs})
    return out


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """A table's header and rows of cells."""
    lines = text.rstrip("\n").split("\n")
    assert set(lines[1]) <= {"-", "+"}, text
    split = [[c.strip() for c in line.split("|")] for line in lines]
    return split[0], split[2:]


def as_csv(rows: list[dict]) -> list[dict]:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [{c: cell(row.get(c)) for c in columns} for row in rows]


def readable(rows: list[dict]) -> list[dict]:
    return [{k: human(k, v) for k, v in row.items()} for row in rows]


# every SHOW, every mode ----------------------------------------------------------

@pytest.mark.parametrize("statement", list(SHOWS) + SEVERAL)
def test_json_is_what_show_returns(db, statement):
    assert run(db, f"SHOW {statement}", "json") == db.execute(f"SHOW {statement}") + "\n"


@pytest.mark.parametrize("statement", SHOWS)
def test_every_show_in_every_mode(db, statement):
    name = statement.split()[0].lower()
    want = expected_rows(show(db, statement), SHOWS[statement], name)
    assert csv_rows(run(db, f"SHOW {statement}", "csv")) == as_csv(want)
    got = records(run(db, f"SHOW {statement}", "line"))
    assert got == readable(want)
    text = run(db, f"SHOW {statement}", "table", width=1000)
    header, rows = table(text)
    if SHOWS[statement] == "record":
        assert header == ["name", "value"]
        assert rows == [[k, v] for k, v in readable(want)[0].items()]
    else:
        assert header == list(as_csv(want)[0])
        assert rows == [[human(c, row.get(c)) for c in header] for row in want]


@pytest.mark.parametrize("statement", SHOWS)
@pytest.mark.parametrize("width", [60, 200])
def test_a_table_fits_the_width_or_prints_records(db, statement, width):
    text = run(db, f"SHOW {statement}", "table", width=width)
    whole = run(db, f"SHOW {statement}", "table", width=1000)
    if max(len(line) for line in whole.splitlines()) <= width:
        assert text == whole
    elif text != run(db, f"SHOW {statement}", "line"):
        # the column names broken over lines: the same columns, rows and cells, narrower
        assert max(len(line) for line in text.splitlines()) <= width
        lines = text.splitlines()
        rule = next(i for i, line in enumerate(lines) if set(line) <= {"-", "+"})
        assert rule > 1 and [c.strip() for c in lines[rule + 1].split("|")] == \
            [c.strip() for c in whole.splitlines()[2].split("|")]
        names = ["".join(parts).replace(" ", "") for parts in
                 zip(*([c.strip() for c in line.split("|")] for line in lines[:rule]))]
        assert names == table(whole)[0]


def test_partitions_as_a_table_and_as_records(db):
    mins = [p["min"] for p in show(db, "PARTITIONS")]
    header, rows = table(run(db, "SHOW PARTITIONS", "table", width=200))
    assert header[:2] == ["min", "max"] and "storage" in header
    assert [int(row[0]) for row in rows] == mins
    assert all(len(line) <= 200 for line in run(db, "SHOW PARTITIONS", "table", 200).split("\n"))
    narrow = run(db, "SHOW PARTITIONS", "table", width=60)
    assert [int(r["min"]) for r in records(narrow)] == mins
    assert "min = 0\n" in narrow and "min = 1000\n" in narrow
    for mode in ("line", "csv", "json"):  # no width for them
        assert run(db, "SHOW PARTITIONS", mode, width=20) == run(db, "SHOW PARTITIONS", mode)


def test_several_items(db):
    # variables only: one record
    assert records(run(db, "SHOW serial, interval", "line")) == [
        {"serial": "true", "interval": "1000"}]
    assert csv_rows(run(db, "SHOW serial, interval", "csv")) == [
        {"serial": "true", "interval": "1000"}]
    # else each item on its own, a blank line between
    first, second = run(db, "SHOW serial, WAL", "csv").split("\n\n")
    assert csv_rows(first) == [{"serial": "true"}]
    assert csv_rows(second) == as_csv([show(db, "WAL")])
    wal, partitions = run(db, "SHOW WAL, PARTITIONS", "table", width=200).split("\n\n")
    assert table(wal)[0] == ["name", "value"] and table(partitions)[0][0] == "min"


def test_results_are_set_apart_and_an_empty_one_prints_nothing(db):
    out = io.StringIO()
    runner = Runner(db, "csv", out=out)
    runner.run("SHOW PARTITIONS empty")
    assert out.getvalue() == ""
    runner.run("SHOW serial")
    runner.run("SHOW interval")
    assert out.getvalue() == "serial\ntrue\n\ninterval\n1000\n"
    assert run(db, "SHOW PARTITIONS empty", "line") == ""
    assert run(db, "SHOW PARTITIONS empty", "table") == "(0 rows)\n"
    assert run(db, "SHOW PARTITIONS empty", "json") == "[]\n"
    with pytest.raises(ValueError, match="output mode 'xml'"):
        Runner(db, "xml")


# readable for people, raw for programs --------------------------------------------

def local(microseconds: int) -> str:
    return datetime.datetime.fromtimestamp(microseconds // 10**6).strftime("%Y-%m-%d %H:%M:%S")


def test_times_and_sizes_readable_in_table_and_line_raw_in_csv_and_json(db):
    parts = show(db, "PARTITIONS")
    header, rows = table(run(db, "SHOW PARTITIONS", "table", width=200))
    lines = records(run(db, "SHOW PARTITIONS", "line"))
    raw = csv_rows(run(db, "SHOW PARTITIONS", "csv"))
    for p, row, record, r in zip(parts, rows, lines, raw):
        got = dict(zip(header, row))
        assert got["created"] == record["created"] == local(p["created"])
        assert r["created"] == str(p["created"]) and r["size_heap"] == str(p["size_heap"])
        assert got["refreshed"] == ("never" if p["refreshed"] == 0 else local(p["refreshed"]))
        assert got["min"] == record["min"] == str(p["min"])  # ids stay as they are
    assert [r["size_heap"] for r in lines] == ["0 B", "0 B", "2 MiB"]
    assert all(r["size"].endswith(" KiB") for r in lines[:2])
    assert records(run(db, "SHOW CLOUD c", "line")) == [{
        "name": "c", "type": "mock", "login": "", "password": "(secret)", "url": "",
        "debug": "false", "connect_timeout": "5 sec", "read_timeout": "15 sec",
        "retries": "3", "removal_delay": "1 hour"}]
    assert csv_rows(run(db, "SHOW CLOUD c", "csv"))[0]["removal_delay"] == "3600000000"
    memory = records(run(db, "SHOW MEMORY", "line"))[0]
    assert memory["limit"] == "false" and memory["limit_wm"] == "8 GiB"
    assert records(run(db, "SHOW PIPELINE", "line"))[0]["duration"] == "1 day"
    storage = records(run(db, "SHOW STORAGE s", "line"))[0]
    assert storage["config.refresh_wm"] == "40 MiB" and storage["config.region_size"] == "128 KiB"
    assert records(run(db, "SHOW lock_timeout", "line")) == [{"lock_timeout": "1 min"}]


def test_every_number_of_every_show_is_named_a_quantity_or_plain(db):
    """A new numeric field must be placed: in FIELDS (a time, size or duration) or here
    among ids and counts."""
    numbers = set()
    for statement in SHOWS:
        for rows in expected_rows(show(db, statement), SHOWS[statement], statement.lower()):
            numbers |= {k.rsplit(".", 1)[-1] for k, v in rows.items()
                        if isinstance(v, int) and not isinstance(v, bool)}
    assert numbers - PLAIN - set(FIELDS) == set()
    assert not PLAIN & set(FIELDS)


def test_the_field_names_table():
    us = 1_000_000
    cases = [
        ("size", 0, "0 B"), ("size", 512, "512 B"), ("size", 1024, "1 KiB"),
        ("size", 1536, "1.5 KiB"), ("stats.size_heap", 2 << 20, "2 MiB"),
        ("refresh_wm", 40 << 20, "40 MiB"), ("mm_cache", 8 << 30, "8 GiB"),
        ("index.size_total", 4449, "4.3 KiB"), ("limit", 3 << 40, "3 TiB"),
        ("removal_delay", 3600 * us, "1 hour"), ("duration", 86400 * us, "1 day"),
        ("duration", 2 * 86400 * us, "2 days"), ("lock_timeout", 60 * us, "1 min"),
        ("lock_timeout", 90 * us, "1.5 min"), ("lock_timeout", 1500, "1.5 ms"),
        ("lock_timeout", 250, "250 us"), ("removal_delay", 0, "0 us"),
        ("connect_timeout", 5, "5 sec"), ("read_timeout", 120, "2 min"),
        ("refreshed", 0, "never"), ("created", 1796433973819543, local(1796433973819543)),
        ("created", "(filtered)", "(filtered)"),  # DEBUG hides times
        ("size", -1, "-1"),  # a pipeline tier's no limit
        ("limit", False, "false"),  # MEMORY's limit is a bool
        ("min", 18446744073709551615, "18446744073709551615"), ("events", 2500, "2500"),
        ("interval", 3_000_000, "3000000"),  # ids a partition holds, not a time
        ("storage", "main", "main"), ("index", None, ""), ("pids", [1, 2], "[1, 2]"),
    ]
    for name, value, text in cases:
        assert human(name, value) == text, (name, value)
    assert local(1796433973819543)[:4] == "2026"


# the rules, on shapes no SHOW has yet --------------------------------------------

def test_rows_of_any_shape():
    # a map of maps with a field in common: a row per name
    reads = {"cold": {"bytes": 1, "count": 2}, "hot": {"bytes": 3, "count": 4, "x": [1]}}
    rows = rows_of(reads)
    assert rows.columns == ["name", "bytes", "count", "x"] and not rows.record
    assert output.csv_text(rows) == "name,bytes,count,x\ncold,1,2,\nhot,3,4,[1]\n"
    # groups of different fields: one record, dotted
    rows = rows_of({"config": {"a": 1}, "stats": {"b": {"c": 2}, "d": {}}})
    assert rows.record and rows.rows == [{"config.a": 1, "stats.b.c": 2, "stats.d": {}}]
    # a list of scalars, a scalar, nothing
    assert rows_of([1, 2], "id").rows == [{"id": 1}, {"id": 2}]
    assert rows_of(7, "n") == output.Rows(["n"], [{"n": 7}], True)
    assert rows_of({}).rows == [] and rows_of([]).rows == []
    assert output.render([("clouds", {})], "table", 80) == "(0 rows)\n"


def test_the_width_from_columns_or_the_default(db, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    assert run(db, "SHOW PARTITIONS", "table", width=None) == run(db, "SHOW PARTITIONS", "line")
    monkeypatch.setenv("COLUMNS", "200")
    assert run(db, "SHOW PARTITIONS", "table", width=None) == \
        run(db, "SHOW PARTITIONS", "table", width=200)
    monkeypatch.delenv("COLUMNS")
    assert output.terminal_width(io.StringIO()) == output.DEFAULT_WIDTH


# the installed command ------------------------------------------------------------

def test_the_installed_command(repo):
    env = open_db(repo, interval=1000)
    env.write_batch(np.arange(2000, dtype=np.uint64), [b"v"] * 2000)
    env.execute("REFRESH PARTITIONS BETWEEN 0 AND 1999")
    shown = env.execute("SHOW PARTITIONS")
    env.close()
    command = os.path.join(os.path.dirname(sys.executable), "monotone")

    def monotone(*args: str, columns: str) -> str:
        out = subprocess.run([command, *args], capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, COLUMNS=columns))
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert monotone(repo, "SHOW PARTITIONS", columns="60") == shown + "\n"
    narrow = monotone("--table", repo, "SHOW PARTITIONS; SHOW serial", columns="60")
    assert "min = 0\n" in narrow and "min = 1000\n" in narrow
    assert narrow.endswith("\n\n name   | value\n--------+-------\n serial | true\n")
    assert csv_rows(monotone("--csv", repo, "SHOW PARTITIONS", columns="60")) == \
        as_csv(json.loads(shown))


def test_a_table_too_wide_breaks_its_column_names_before_it_gives_up():
    rows = output.rows_of([{"size_uncompressed": 4096, "events_heap": 7, "on_storage": True},
                           {"size_uncompressed": 5000, "events_heap": 12, "on_storage": False}])
    whole = output.table_text(rows, None)
    assert whole.splitlines()[0] == " size_uncompressed | events_heap | on_storage"
    assert output.table_text(rows, 46) == whole  # its rule is the widest line
    assert output.table_text(rows, 45) != whole
    narrow = output.table_text(rows, 34)
    assert narrow.splitlines() == [
        "        size_ | events_ | on_",
        " uncompressed |    heap | storage",
        "--------------+---------+---------",
        "        4 KiB |       7 | true",
        "      4.9 KiB |      12 | false"]
    assert output.table_text(rows, 33) is None  # records, then
