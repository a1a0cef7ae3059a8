"""Comments in the language: `--` as SQL has them, and `#`, each to the end of
its line, wherever a command may end; never inside a string."""
from __future__ import annotations

import pytest

from monotone.ddl import commands as cmd
from monotone.ddl import parse
from monotone.ddl.lexer import split_statements
from monotone.errors import ParseError


@pytest.mark.parametrize("text", [
    "REBALANCE -- apply retention now",
    "REBALANCE --",
    "REBALANCE--tight",
    "REBALANCE # the original's",
    "-- before\nREBALANCE",
    "REBALANCE; -- after the end",
])
def test_a_comment_ends_where_its_line_ends(text):
    assert parse(text) == cmd.Rebalance()


def test_a_comment_may_end_any_line_of_a_command():
    text = ("CREATE STORAGE a ( -- options follow\n"
            "  path 'x--y',     -- dashes in a string are the string's\n"
            "  compression 'zstd' # and the original's comment\n"
            ")")
    assert parse(text) == cmd.CreateStorage("a", (("path", "x--y"), ("compression", "zstd")))


def test_statements_split_outside_comments():
    assert split_statements("SHOW a -- b; SHOW c\nSHOW d; -- ;;") == ["SHOW a -- b; SHOW c\nSHOW d"]
    assert split_statements("-- only a comment") == []
    assert split_statements("SHOW a; SHOW '--'") == ["SHOW a", "SHOW '--'"]


@pytest.mark.parametrize("text, error", [
    ("REBALANCE - 1", "unexpected clause at the end of command: '-'"),
    ("-- all of it: SHOW a", "empty command"),
])
def test_one_dash_is_no_comment(text, error):
    with pytest.raises(ParseError, match=error):
        parse(text)
