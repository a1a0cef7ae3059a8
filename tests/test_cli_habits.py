"""The monotone command as sqlite3, duckdb and psql users expect it: options before
or after the path, -c and -cmd, settings for one run that are not written to the
repository, a mistyped path that creates nothing, and serve refusing a repository
another coordinator serves. Each run is the real command in its own process."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import ROOT
from test_cli import cli

import monotone


def stored(repo) -> dict:
    with open(os.path.join(repo, "config.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("args", [
    ["--keep-going", "{repo}", "SHOW interval"],
    ["{repo}", "--keep-going", "SHOW interval"],
    ["{repo}", "SHOW interval", "--keep-going"],
    ["{repo}", "--set", "interval=7000", "SHOW serial"],
])
def test_options_go_before_or_after_the_path(repo, args):
    cli(repo, "CREATE STORAGE a")
    out = cli(*[a.format(repo=repo) for a in args])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("3000000", "true")


def test_the_words_after_the_path_are_a_line_each_so_a_comment_ends_with_its_word(repo):
    cli(repo, "CREATE STORAGE a")
    out = cli(repo, "SHOW interval; -- the ids per partition", "SHOW serial")
    assert out.returncode == 0 and out.stdout.split() == ["3000000", "true"], out.stderr
    # without its ';' the next word is no longer swallowed by the comment, but an error
    out = cli(repo, "SHOW interval -- no ';' here", "SHOW serial")
    assert out.returncode == 1 and "end of command: 'SHOW'" in out.stderr
    out = cli(repo, "SHOW", "interval")  # unquoted words, as a shell splits them
    assert out.returncode == 0 and out.stdout.split() == ["3000000"], out.stderr


def test_dash_c_runs_its_commands_in_order_and_dash_cmd_runs_first(repo):
    out = cli("-c", "CREATE STORAGE a", repo, "-c", "SHOW STORAGE a",
              "--command", "CREATE STORAGE b; SHOW serial")
    assert out.returncode == 0, out.stderr
    first, end = json.JSONDecoder().raw_decode(out.stdout)
    assert first["config"]["name"] == "a" and out.stdout[end:].strip() == "true"
    # -cmd: before a script (here on standard input); a failure stops there
    out = cli(repo, "-cmd", "SET interval TO 5000", stdin="SHOW interval\n")
    assert out.returncode == 0 and out.stdout.split() == ["5000"], out.stderr
    out = cli(repo, "-cmd", "SHOW no_such_variable", stdin="CREATE STORAGE c\n")
    assert out.returncode == 1 and "no_such_variable" in out.stderr
    assert "c" not in json.loads(cli(repo, "SHOW STORAGES").stdout)


def test_set_is_for_one_run_and_persist_writes_it(repo):
    out = cli("--set", "workers=0", "--set", "interval=1000", repo,
              "CREATE STORAGE a; SHOW WORKERS; SHOW interval")
    assert out.returncode == 0, out.stderr
    assert '"workers": 0' in out.stdout and out.stdout.split()[-1] == "1000"
    assert (stored(repo)["workers"], stored(repo)["interval"]) == (3, 3000000)
    # a SET while open is a deliberate change: it is kept
    assert cli("--set", "interval=1000", repo, "SET interval TO 2000").returncode == 0
    assert stored(repo)["interval"] == 2000
    out = cli("--persist", "--set", "workers=0", repo, "SHOW serial")
    assert out.returncode == 0, out.stderr
    assert stored(repo)["workers"] == 0
    assert json.loads(cli(repo, "SHOW WORKERS").stdout)["workers"] == 0


def test_one_run_settings_from_python_too(repo):
    db = monotone.Monotone()
    db.execute("SET workers TO 0")
    db.execute("SET compression TO 'zstd'")
    db.open(repo, persist=False)
    assert db.show("compression") == "zstd"
    db.close()
    assert (stored(repo)["workers"], stored(repo)["compression"]) == (3, "lz4")
    db = monotone.Monotone()
    db.execute("SET compression TO 'zstd'")
    db.open(repo)
    db.close()
    assert stored(repo)["compression"] == "zstd"


def test_a_one_run_value_never_reaches_the_file_after_a_change_that_failed(repo, tmp_path):
    """A deliberate SET whose save fails leaves the one-run value as it was: in force,
    not to be written, so a later change of the catalog writes the file's own value."""
    outside = str(tmp_path / "outside")
    db = monotone.Monotone()
    db.open(repo)
    db.execute(f"CREATE STORAGE a (path '{outside}')")
    db.close()
    db = monotone.Monotone()
    db.execute("SET interval TO 1000")
    db.open(repo, persist=False)
    try:
        shutil.rmtree(outside)
        open(outside, "w").close()  # storage a's directory cannot be made: changes fail
        with pytest.raises(monotone.MonotoneError, match="storage 'a'"):
            db.execute("SET interval TO 5000")
        assert db.show("interval") == 1000
        os.remove(outside)
        os.mkdir(outside, 0o700)
        db.execute("CREATE STORAGE b")
        assert stored(repo)["interval"] == 3000000
    finally:
        db.close()


def test_a_second_process_asking_to_keep_a_one_run_value_keeps_it(repo):
    first = monotone.Monotone()
    first.execute("SET interval TO 1000")
    first.open(repo, persist=False)
    assert stored(repo)["interval"] == 3000000
    second = monotone.Monotone()
    second.execute("SET interval TO 1000")
    second.open(repo)  # the same value, to be kept
    assert stored(repo)["interval"] == 1000
    second.close()
    first.close()
    assert stored(repo)["interval"] == 1000


@pytest.mark.parametrize("commands", [["SHOW PARTITIONS"], ["SHOW interval; SHOW WAL"],
                                      ["-c", "SHOW STORAGES"], ["--csv", "SHOW PARTITIONS"]])
def test_a_command_that_only_reads_creates_no_repository(tmp_path, commands):
    typo = tmp_path / "repos" / "evnets"
    os.makedirs(tmp_path / "repos")
    out = cli(str(typo), *commands)
    assert out.returncode == 1 and out.stdout == ""
    assert f"no repository at {typo}: nothing was created" in out.stderr
    assert os.listdir(tmp_path / "repos") == []


def test_a_script_that_only_reads_creates_no_repository_and_one_that_writes_does(tmp_path):
    path = str(tmp_path / "new")
    out = cli(path, stdin="# nothing yet\nSHOW STORAGES\n")
    assert out.returncode == 1 and "line 2: error: no repository at" in out.stderr
    assert not os.path.exists(path)
    os.makedirs(path)  # an empty directory holds no repository either, nor one of notes
    with open(os.path.join(path, "notes.txt"), "w") as f:
        f.write("not a repository")
    assert cli(path, "SHOW ssn").returncode == 1 and os.listdir(path) == ["notes.txt"]
    out = cli(path, stdin="CREATE STORAGE a\nSHOW STORAGES\n")
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(out.stdout)) == ["a", "main"]
    db = monotone.Monotone()
    db.open(path)
    db.write([monotone.Event(value=b"kept")])
    db.close()
    os.remove(os.path.join(path, "config.json"))  # a repository's files without it
    out = cli(path, "SHOW STORAGES")
    assert out.returncode == 1 and "config.json is missing" in out.stderr


def test_serve_on_a_served_repository_names_the_server_and_fails(repo):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen([sys.executable, "-m", "monotone.scripts.cli", "serve", repo],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout.readline().startswith("monotone: serving")
        assert server.stdout.readline().strip() == "monotone: ready"
        second = cli("serve", repo)
        assert second.returncode == 1 and second.stdout == ""
        assert f"{os.path.realpath(repo)} is already served by pid {server.pid}" in \
            second.stderr, second.stderr
        assert server.poll() is None
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0


def test_execute_after_close_is_an_error_as_write_and_cursor_are(repo):
    db = monotone.Monotone()
    db.execute("SET interval TO 1000")  # before open: config to open with
    assert db.show("interval") == 1000
    db.open(repo)
    db.close()
    for call in (lambda: db.execute("SHOW ssn"), lambda: db.show("interval"),
                 lambda: db.execute("SHOW CONFIG"), lambda: db.write([monotone.Event()]),
                 lambda: db.cursor()):
        with pytest.raises(monotone.MonotoneError, match="the repository is not open"):
            call()
    db.execute("SET interval TO 2000")  # for the next open
    db.open(repo)
    assert db.show("interval") == 2000
    db.close()
