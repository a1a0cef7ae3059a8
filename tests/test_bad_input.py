"""Bad input: every failure is a MonotoneError and nothing of a failed batch is written."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT, coordinator_pids, open_db
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import monotone
from monotone import Event
from monotone.protocol import repo_id
from monotone.shm.segment import list_segments

BEFORE = [(1, b"", b"one"), (2, b"k", b"two"), (10, b"", b"ten")]


def read_all(db):
    with db.cursor() as cur:
        return [(e.id, e.key, e.value) for e in cur]


@pytest.fixture
def filled(db):
    db.write([Event(id=i, key=k, value=v) for i, k, v in BEFORE])
    assert read_all(db) == BEFORE
    yield db
    # the instance is still usable after every failure, and nothing leaked in
    db.write([Event(id=11, value=b"after")])
    assert (11, b"", b"after") in read_all(db)


def rejected(db, call, match=None):
    """call() raises MonotoneError and the database is unchanged."""
    with pytest.raises(monotone.MonotoneError, match=match):
        call()
    assert read_all(db) == BEFORE

# wrong types -------------------------------------------------------------------------


@pytest.mark.parametrize("events", [
    [Event(id=5, value=b"ok"), Event(id=6, value="str value")],
    [Event(id=5, value=b"ok"), Event(id=6, value=None)],
    [Event(id=5, value=b"ok"), Event(id=6, value=123)],
    [Event(id=5, value=b"ok"), Event(id=6.0, value=b"float id")],
    [Event(id=5, value=b"ok"), Event(id=True, value=b"bool id")],
    [Event(id=5, value=b"ok"), Event(id="6", value=b"str id")],
    [Event(id=5, value=b"ok"), Event(id=6, key="str key")],
    [Event(id=5, value=b"ok"), Event(id=6, key=6)],
    [Event(id=5, value=b"ok"), (6, b"", b"a tuple")],
    [Event(id=5, value=b"ok"), b"bytes"],
], ids=["str-value", "none-value", "int-value", "float-id", "bool-id", "str-id", "str-key",
        "int-key", "tuple", "bytes"])
def test_write_wrong_types(filled, events):
    rejected(filled, lambda: filled.write(events))


def test_write_not_iterable(filled):
    with pytest.raises(monotone.MonotoneError):
        filled.write(None)


@pytest.mark.parametrize("kw", [
    dict(ids=[5, 6], values=[b"ok", "str"]),
    dict(ids=[5, 6], values=["a", "b"]),
    dict(ids=[5.0, 6.0], values=[b"a", b"b"]),
    dict(ids=np.array([5.5, 6.5]), values=[b"a", b"b"]),
    dict(ids=[5, "6"], values=[b"a", b"b"]),
    dict(ids=[True, False], values=[b"a", b"b"]),
    dict(ids=np.array([[5, 6]], np.uint64), values=[b"a", b"b"]),
    dict(ids=[5, 6], values=np.zeros((2, 3), np.int64)),
    dict(ids=[5, 6], values=np.zeros(6, np.uint8)),
    dict(ids=[5, 6], values=np.array(["a", "b"])),
    dict(ids=[5, 6], values=123),
    dict(ids=[5, 6], values=[b"a", b"b"], keys=["k", "l"]),
    dict(ids=[5, 6], values=[b"a", b"b"], keys=np.zeros((2, 2), np.int8)),
    dict(ids=[5, 6], values=(np.array([0, 1, 2]), np.zeros(2, np.int64))),
    dict(ids=[5, 6], values=(np.array([0.0, 1, 2]), np.zeros(2, np.uint8))),
    dict(ids=[5, 6], values=(np.array([0, 2, 1]), np.zeros(2, np.uint8))),
    dict(ids=[5, 6], values=(np.array([0, 1, 9]), np.zeros(2, np.uint8))),
    dict(ids=[5, 6], values=(np.array([0, -1, 2]), np.zeros(2, np.uint8))),
    dict(ids=None, values=None),
], ids=lambda kw: "-".join(f"{k}" for k in kw))
def test_write_batch_wrong_types(filled, kw):
    rejected(filled, lambda: filled.write_batch(**kw))


@pytest.mark.parametrize("kw", [
    dict(id=1.5), dict(id=-1), dict(id=2**64), dict(id="1"), dict(key="k"), dict(key=5),
])
def test_cursor_wrong_types(filled, kw):
    with pytest.raises(monotone.MonotoneError):
        filled.cursor(**kw)


def test_execute_wrong_type(filled):
    with pytest.raises(monotone.MonotoneError):
        filled.execute(b"SHOW interval")
    with pytest.raises(monotone.MonotoneError):
        monotone.Monotone().execute(None)

# sizes and ranges ------------------------------------------------------------------------


def test_key_too_long_write(filled):
    rejected(filled, lambda: filled.write([Event(id=5, key=b"k" * 255),
                                           Event(id=6, key=b"k" * 256)]), match="255")


@pytest.mark.parametrize("form", ["list", "2d", "offsets"])
def test_key_too_long_write_batch(filled, form):
    keys = [b"k" * 10, b"k" * 256]
    if form == "2d":
        keys = np.full((2, 256), ord("k"), np.uint8)
    elif form == "offsets":
        keys = (np.array([0, 10, 266]), np.full(266, ord("k"), np.uint8))
    rejected(filled, lambda: filled.write_batch(ids=[5, 6], values=[b"a", b"b"], keys=keys))


def test_key_of_255_bytes_is_fine(db):
    db.write([Event(id=1, key=b"\xff" * 255, value=b"a")])
    db.write_batch(ids=[2], values=[b"b"], keys=np.full((1, 255), 7, np.uint8))
    assert read_all(db) == [(1, b"\xff" * 255, b"a"), (2, bytes([7]) * 255, b"b")]


def test_max_id_with_serial_off(repo):
    db = open_db(repo, serial="false")  # serial is set before open only
    try:
        db.write([Event(id=i, key=k, value=v) for i, k, v in BEFORE])
        rejected(db, lambda: db.write([Event(id=5), Event(id=2**64 - 1)]))
        rejected(db, lambda: db.write_batch(ids=np.array([5, 2**64 - 1], np.uint64),
                                            values=[b"a", b"b"]))
        rejected(db, lambda: db.write([Event(id=5), Event(id=None)]))
        db.write([Event(id=11, value=b"after")])
        assert (11, b"", b"after") in read_all(db)
    finally:
        db.close()


@pytest.mark.parametrize("call", [
    lambda db: db.write([Event(id=5), Event(id=2**64)]),
    lambda db: db.write([Event(id=5), Event(id=-1)]),
    lambda db: db.write_batch(ids=[5, -1], values=[b"a", b"b"]),
    lambda db: db.write_batch(ids=np.array([5, -1], np.int64), values=[b"a", b"b"]),
    lambda db: db.write_batch(ids=np.array([5, -(2**63)], np.int64), values=[b"a", b"b"]),
    lambda db: db.write_batch(ids=[5, 2**64], values=[b"a", b"b"]),
], ids=["write-2**64", "write-neg", "batch-neg-list", "batch-neg-i64", "batch-min-i64",
        "batch-2**64"])
def test_ids_out_of_range(filled, call):
    rejected(filled, lambda: call(filled))

# mismatched lengths ---------------------------------------------------------------------


@pytest.mark.parametrize("kw", [
    dict(ids=[5, 6, 7], values=[b"a", b"b"]),
    dict(ids=[5], values=[b"a", b"b"]),
    dict(ids=[5, 6], values=np.zeros((3, 4), np.uint8)),
    dict(ids=[5, 6], values=(np.array([0, 1, 2, 3]), np.zeros(3, np.uint8))),
    dict(ids=[5, 6], values=[b"a", b"b"], keys=[b"k"]),
    dict(ids=[5, 6], values=[b"a", b"b"], keys=[b"k", b"l", b"m"]),
    dict(ids=[5, 6], values=[b"a", b"b"], keys=np.zeros((1, 2), np.uint8)),
    dict(values=[b"a", b"b"], keys=[b"k"]),
    dict(ids=[5, 6], values=[b"a", b"b"], deletes=[True]),
    dict(ids=[5, 6], values=[b"a", b"b"], deletes=[True, False, True]),
    dict(ids=[5, 6], values=[b"a", b"b"], deletes=np.zeros((2, 1), bool)),
    dict(values=[b"a", b"b"], deletes=np.zeros(3, bool)),
], ids=["ids>values", "ids<values", "2d-rows", "offsets", "keys<ids", "keys>ids", "2d-keys",
        "serial-keys", "deletes<", "deletes>", "deletes-2d", "serial-deletes"])
def test_mismatched_lengths(filled, kw):
    ssn = json.loads(filled.execute("SHOW ssn"))
    rejected(filled, lambda: filled.write_batch(**kw))
    assert json.loads(filled.execute("SHOW ssn")) == ssn  # no serial id was used up

# the repository directory ---------------------------------------------------------------


def test_repository_under_a_regular_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    path = str(blocker / "repo")
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    with pytest.raises(monotone.MonotoneError, match="repo"):
        env.open(path)
    assert not list_segments(repo_id(path))
    with pytest.raises(monotone.MonotoneError):
        env.write([Event(id=1)])  # not open
    # the same environment can open a good path afterwards
    env.open(str(tmp_path / "good"))
    try:
        env.write([Event(id=1, value=b"x")])
        assert read_all(env) == [(1, b"", b"x")]
    finally:
        env.close()
    assert not coordinator_pids(str(tmp_path / "good"))
    assert not list_segments(repo_id(str(tmp_path / "good")))


def test_repository_path_is_a_regular_file(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"")
    env = monotone.Monotone()
    with pytest.raises(monotone.MonotoneError):
        env.open(str(path))
    assert not list_segments(repo_id(str(path)))


def test_repository_not_writable(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits are not enforced")
    parent = tmp_path / "ro"
    parent.mkdir()
    os.chmod(parent, 0o500)
    try:
        env = monotone.Monotone()
        with pytest.raises(monotone.MonotoneError):
            env.open(str(parent / "repo"))
        with pytest.raises(monotone.MonotoneError):
            env.open(str(parent))
    finally:
        os.chmod(parent, 0o700)


@pytest.mark.parametrize("path", [None, 5, ""])
def test_open_bad_path_argument(path):
    env = monotone.Monotone()
    with pytest.raises(monotone.MonotoneError):
        env.open(path)

# configuration --------------------------------------------------------------------------


def test_unknown_config_variable_closed_and_open(filled):
    closed = monotone.Monotone()
    for text in ("SET no_such_var TO 1", "SHOW no_such_var", "SHOW interval, no_such_var"):
        with pytest.raises(monotone.MonotoneError, match="no_such_var"):
            closed.execute(text)
        with pytest.raises(monotone.MonotoneError, match="no_such_var"):
            filled.execute(text)


@pytest.mark.parametrize("name, value", [("wal", "false"), ("workers", "2"),
                                         ("uuid", "'00000000-0000-0000-0000-000000000000'")])
def test_before_open_variable_after_open(filled, name, value):
    before = filled.execute(f"SHOW CONFIG {name}")
    with pytest.raises(monotone.ConfigError, match=name):
        filled.execute(f"SET {name} TO {value}")
    assert filled.execute(f"SHOW CONFIG {name}") == before


@pytest.mark.parametrize("text", [
    "SET interval TO 'abc'", "SET interval TO abc", "SET interval TO true", "SET interval TO 0",
    "SET interval TO -5", "SET serial TO 5", "SET serial TO 'maybe'", "SET compression TO 'rot13'",
    "SET compression TO 5", "SET mm_limit_behaviour TO 'explode'", "SET version TO '2.0'",
    "SET lsn TO 5", "SET directory TO '/tmp'",
    "SET wal_rotate_wm TO 10XB",
])
def test_bad_config_values(filled, text):
    name = text.split()[1]
    before = filled.execute(f"SHOW CONFIG {name}")
    with pytest.raises(monotone.MonotoneError):
        filled.execute(text)
    assert filled.execute(f"SHOW CONFIG {name}") == before
    closed = monotone.Monotone()
    with pytest.raises(monotone.MonotoneError):
        closed.execute(text)


@pytest.mark.parametrize("text", ["ALTER STORAGE main SET (region_size 10)",
                                  "ALTER STORAGE main SET (region_size 'big')",
                                  "ALTER STORAGE main SET (compression 'rot13')",
                                  "ALTER STORAGE main SET (encryption 'rot13')",
                                  "ALTER STORAGE main SET (no_such_option 1)"])
def test_bad_storage_options(filled, text):
    """region_size is a storage option now (ALTER STORAGE main SET (region_size ...))."""
    before = filled.execute("SHOW STORAGE main")
    with pytest.raises(monotone.MonotoneError):
        filled.execute(text)
    assert filled.execute("SHOW STORAGE main") == before
    with pytest.raises(monotone.ConfigError, match="region_size"):
        filled.execute("SET region_size TO 4096")  # not a config variable any more


@pytest.mark.parametrize("text", ["SET interval TO 99999999999999999999999",
                                  "SET ssn TO 18446744073709551616"])
def test_config_integer_out_of_u64_range(filled, text):
    with pytest.raises(monotone.ConfigError):
        filled.execute(text)
    with pytest.raises(monotone.ConfigError):
        monotone.Monotone().execute(text)


@pytest.mark.parametrize("size", ["1G", "64K", "10M"])
def test_size_units_are_the_same_quoted_or_not(size):
    env = monotone.Monotone()
    env.execute(f"SET wal_rotate_wm TO {size}")
    literal = env.execute("SHOW wal_rotate_wm")
    env.execute(f"SET wal_rotate_wm TO '{size}'")
    assert env.execute("SHOW wal_rotate_wm") == literal


def test_pipeline_unclosed_options_message():
    with pytest.raises(monotone.ParseError) as info:
        monotone.Monotone().execute("ALTER PIPELINE SET hot (partitions 2")
    assert str(info.value) == "ALTER PIPELINE SET name (...')' expected"


def test_serial_ids_exhausted(filled):
    filled.execute("SET ssn TO 18446744073709551614")
    assert filled.write([Event(value=b"last")]) == [2**64 - 2]
    # 2**64-1 is the "serial" marker, not an id: serial ids are used up
    with pytest.raises(monotone.MonotoneError):
        filled.write([Event(value=b"no more")])
    assert read_all(filled) == BEFORE + [(2**64 - 2, b"", b"last")]


def test_ssn_out_of_range_before_open_does_not_brick_repo(repo):
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    try:
        env.execute("SET ssn TO 18446744073709551616")
    except monotone.MonotoneError:
        env = monotone.Monotone()  # rejected at SET: fine
        env.execute("SET workers TO 0")
    try:
        env.open(repo)
    except monotone.MonotoneError:
        pass  # rejected at open: fine too, but it must leave nothing behind...
    else:
        env.close()
    assert not list_segments(repo_id(repo))
    # ...and the repository must still open
    env = monotone.Monotone()
    env.execute("SET workers TO 0")
    env.open(repo)
    env.close()

# the command language -------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "", " ", ";", "GARBAGE", "SET", "SET interval", "SET interval TO", "SET TO 5",
    "SHOW", "SHOW ,", "SHOW interval,", "SHOW PARTITION", "SHOW PARTITION x",
    "REFRESH", "REFRESH PARTITION", "REFRESH PARTITIONS BETWEEN 1", "REFRESH PARTITIONS 1 2",
    "REFRESH PARTITION -1", "REFRESH PARTITION 18446744073709551616", "SET interval TO 5 6",
    "CHECKPOINT NOW", "SET interval TO 'unterminated", "SHOW interval interval", "@", "SET x = ",
    "\x00", "SHOW ALL extra", "REFRESH PARTITION IF 5",
])
def test_parse_errors(filled, text):
    with pytest.raises(monotone.MonotoneError):
        filled.execute(text)
    with pytest.raises(monotone.MonotoneError):
        monotone.Monotone().execute(text)


def test_parse_error_is_parse_error():
    with pytest.raises(monotone.ParseError, match="FROBNICATE"):
        monotone.Monotone().execute("FROBNICATE everything")


def test_show_config_name_trailing_garbage():
    with pytest.raises(monotone.ParseError):
        monotone.Monotone().execute("SHOW CONFIG interval and more")


PREFIXES = ["", "SET ", "SHOW ", "REFRESH ", "REFRESH PARTITION ", "REFRESH PARTITIONS BETWEEN ",
            "SET interval TO ", "SHOW CONFIG ", "SET serial TO ", "SHOW PARTITION ", "CHECKPOINT",
            "SET compression TO ", "SHOW interval, "]
command_text = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, b: a + b, st.sampled_from(PREFIXES), st.text(max_size=20)),
    st.builds(lambda a, b: a + b, st.sampled_from(PREFIXES),
              st.text(alphabet="0123456789-',;=() abcTRUEfalse\"", max_size=20)),
)


@settings(max_examples=400, deadline=None)
@given(command_text)
def test_parse_fuzz_closed(text):
    env = monotone.Monotone()  # never opened: no repository needed
    try:
        result = env.execute(text)
    except monotone.MonotoneError:
        return
    assert result is None or isinstance(json.loads(result), (int, str, bool, list, dict))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=30),
                 st.builds(lambda a, b: a + b, st.sampled_from(PREFIXES + ["SHOW WAL", "SHOW ALL"]),
                           st.text(alphabet="0123456789-',;= abc", max_size=12))))
def test_parse_fuzz_open(filled, text):
    try:
        filled.execute(text)
    except monotone.MonotoneError:
        pass
    assert read_all(filled)[:3] == BEFORE  # whatever ran, the data is intact

# a full /dev/shm --------------------------------------------------------------------------

SHM_CHILD = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import monotone
    from monotone import Event
    db = monotone.Monotone()
    db.execute("SET workers TO 0")
    db.open(sys.argv[1])
    mib = np.full((1, 1024 * 1024), 7, np.uint8)
    written = []
    error = None
    for i in range(200):
        try:
            db.write_batch(ids=np.array([i], np.uint64), values=mib)
        except monotone.MonotoneError as e:
            error = (type(e).__name__, str(e))
            break
        written.append(i)
    ids = [ev.id for ev in db.cursor()]
    ok = all(len(ev.value) == 1024 * 1024 for ev in db.cursor())
    # room comes back when the memtable is refreshed into a file
    db.execute("REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615")
    db.write_batch(ids=np.array([1000], np.uint64), values=mib)
    after = [ev.id for ev in db.cursor()]
    db.close()
    print(json.dumps({"written": written, "error": error, "ids": ids, "ok": ok,
                      "after": after}))
""")


def unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def test_full_dev_shm_is_an_error_not_sigbus(repo):
    """A private, small tmpfs on /dev/shm (mount namespace): the real one is never filled."""
    if not unshare_works():
        pytest.skip("needs unshare -m and mount (root) to give the test its own small /dev/shm")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = ("mount -t tmpfs -o size=32m tmpfs /dev/shm && exec \"$0\" -c \"$1\" \"$2\"")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                             sys.executable, SHM_CHILD, repo],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != -signal.SIGBUS, "killed by SIGBUS on a full /dev/shm"
    assert proc.returncode == 0, err.decode()[-3000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["error"] is not None, "32 MiB of /dev/shm never ran out"
    assert result["error"][0] == "NoSpaceError", result["error"]
    written = result["written"]
    assert written == list(range(len(written))) and len(written) >= 1
    assert result["ids"] == written  # the failed batch is not there, the others are
    assert result["ok"]
    assert result["after"] == written + [1000]
