"""Bad configuration and command text: every failure is a MonotoneError and leaves the
configuration and the data as they were."""
from __future__ import annotations

import json

import pytest
from conftest import BEFORE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from readback import read_all

import monotone
from monotone import Event
from monotone.protocol import repo_id
from monotone.shm.segment import list_segments

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


@pytest.mark.parametrize("text", ["ALTER STORAGE main SET (region_size 0)",
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
