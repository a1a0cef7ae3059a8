"""Completion at the prompt (monotone.ddl.complete): what each cursor position
offers, that the real parser accepts every candidate where it is offered and that
what the parser accepts there is offered, and Tab on a real terminal."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from terminal import Terminal

import monotone.ddl
from monotone import config
from monotone.cloud.registry import BACKENDS
from monotone.ddl import complete as completion
from monotone.ddl import help as language
from monotone.ddl import parse
from monotone.ddl.complete import CHOICES, PARTITIONS_OFFERED, VERBS, Names, complete
from monotone.ddl.lexer import END, TOKEN, UNITS
from monotone.ddl.parser import Parser
from monotone.errors import MonotoneError, ParseError
from monotone.scripts.prompt import Prompt, readline_matches
from monotone.scripts.runner import QUIT

STORAGES = ["main", "hotdata", "'cold store'"]
NAMES = Names(storages=("main", "hotdata", "cold store"), clouds=("lake",),
              partitions=(0, 1000, 2000, 12000),
              variables=("serial", "interval", "compression", "workers"))
VARIABLES = list(NAMES.variables)
IDS = ["0", "1000", "2000", "12000"]
SHOW_ITEMS = ["MEMORY", "CACHE", "WAL", "WORKERS", "CLOUDS", "CLOUD", "STORAGES", "STORAGE",
              "PARTITIONS", "PARTITION", "PIPELINE", "CONFIG", "ALL"]
STORAGE_OPTIONS = list(language.STORAGE_OPTION_NAMES)
CLOUD_OPTIONS = list(language.CLOUD_OPTION_NAMES)
FIRST = ["SET", "SHOW", "REBALANCE", "CHECKPOINT", "SERVICE", "CREATE", "ALTER", "DROP",
         "REFRESH", "MOVE", "UPLOAD", "DOWNLOAD", "HELP", "QUIT"]

CASES = [
    # the first word
    ("", FIRST),
    ("s", ["set", "show", "service"]),
    ("RE", ["REBALANCE", "REFRESH"]),
    ("q", ["quit"]),
    # SHOW
    ("SHOW ", SHOW_ITEMS + VARIABLES),
    ("show ", [w.lower() for w in SHOW_ITEMS] + ["serial", "interval", "compression"]),
    ("SHOW S", ["STORAGES", "STORAGE", "serial"]),
    ("SHOW STORAGE ", STORAGES),
    ("show storage h", ["hotdata"]),
    ("SHOW STORAGE 'c", ["'cold store'"]),
    ("SHOW CLOUD ", ["lake"]),
    ("SHOW PARTITION ", IDS),
    ("SHOW PARTITION 1", ["1000", "12000"]),
    ("SHOW MEMORY ", ["DEBUG", ",", ";"]),
    ("SHOW STORAGE hotdata ", ["DEBUG", ",", ";"]),
    ("SHOW PARTITIONS ", ["DEBUG", ",", ";"]),  # its storage is optional: not offered
    ("SHOW serial, W", ["WAL", "WORKERS", "workers"]),
    ("SHOW serial, w", ["wal", "workers"]),
    ("SHOW '", ["'serial'", "'interval'", "'compression'", "'workers'"]),
    # the partition commands
    ("REFRESH ", ["PARTITION", "PARTITIONS BETWEEN"]),
    ("REFRESH PARTITION ", ["IF EXISTS"] + IDS),
    ("refresh partition i", ["if exists"]),
    ("REFRESH PARTITIONS BETWEEN 0 ", ["AND"]),
    ("DROP ", ["STORAGE", "CLOUD", "PARTITION", "PARTITIONS BETWEEN"]),
    ("DROP PARTITION ", ["IF EXISTS"] + IDS),
    ("DROP PARTITION IF ", ["EXISTS"]),
    ("DROP PARTITION IF EXISTS 2", ["2000"]),
    ("DROP PARTITION 1000 ", ["ON", ";"]),
    ("DROP PARTITION 1000 ON ", ["STORAGE", "CLOUD"]),
    ("MOVE PARTITION ", ["IF EXISTS"] + IDS),
    ("MOVE PARTITION 0 ", ["INTO"]),
    ("MOVE PARTITION 0 INTO ", STORAGES),
    ("move partition 0 into c", ["'cold store'"]),
    ("MOVE PARTITIONS BETWEEN 0 AND 10 ", ["INTO"]),
    ("UPLOAD PARTITION ", ["IF EXISTS"] + IDS),
    ("UPLOAD PARTITION 0 ", ["IF CLOUD", ";"]),
    ("DOWNLOAD PARTITION 12", ["12000"]),
    ("CREATE PARTITION ", []),
    # SET
    ("SET ", VARIABLES),
    ("SET c", ["compression"]),
    ("set serial ", ["to"]),
    ("SET serial TO ", []),
    # storages and clouds
    ("CREATE ", ["CLOUD", "STORAGE", "PARTITION"]),
    ("CREATE STORAGE ", ["IF NOT EXISTS"]),
    ("CREATE STORAGE new ", ["(", ";"]),
    ("CREATE STORAGE new (", STORAGE_OPTIONS + [")"]),
    ("CREATE STORAGE new (path '/x', comp", ["compression", "compression_level"]),
    ("CREATE STORAGE new (compression ", ["'lz4'", "'zstd'", "'none'"]),
    ("CREATE STORAGE new (compression 'z", ["'zstd'"]),
    ("CREATE STORAGE new (compression z", ["'zstd'"]),
    ("CREATE STORAGE new (encryption ", ["'none'", "'aes'"]),
    ("create storage new (cloud ", ["'lake'"]),
    ("CREATE STORAGE new (sync ", ["true", "false"]),
    ("CREATE STORAGE new (sync true ", [",", ")"]),
    ("CREATE STORAGE new (region_size ", []),
    ("CREATE STORAGE new (sync '", []),
    ("CREATE CLOUD new (", CLOUD_OPTIONS + [")"]),
    ("CREATE CLOUD new (type ", ["'s3'", "'mock'"]),
    ("ALTER ", ["STORAGE", "CLOUD", "PIPELINE"]),
    ("ALTER STORAGE ", ["IF EXISTS"] + STORAGES),
    ("ALTER STORAGE hotdata ", ["RENAME", "SET"]),
    ("alter storage hotdata ", ["rename", "set"]),
    ("ALTER STORAGE hotdata RENAME ", ["TO"]),
    ("ALTER STORAGE hotdata RENAME TO ", []),
    ("ALTER STORAGE hotdata SET ", ["(", ";"]),
    ("ALTER STORAGE hotdata SET (", STORAGE_OPTIONS + [")"]),
    ("ALTER CLOUD lake SET (d", ["debug"]),
    ("DROP CLOUD ", ["IF EXISTS", "lake"]),
    ("DROP STORAGE IF EXISTS m", ["main"]),
    # the pipeline
    ("ALTER PIPELINE ", ["SET", "RESET"]),
    ("ALTER PIPELINE SET ", STORAGES),
    ("ALTER PIPELINE SET hotdata (", list(language.RETENTION_NAMES) + [")"]),
    ("ALTER PIPELINE SET hotdata (partitions 10), ", STORAGES),
    ("ALTER PIPELINE RESET ", [";"]),
    # complete commands
    ("REBALANCE ", [";"]),
    ("CHECKPOINT ", [";"]),
    # after ';' a new statement
    ("SHOW MEMORY; sh", ["show"]),
    ("SHOW MEMORY;SHOW CLOUD ", ["lake"]),
    ("CREATE STORAGE new (path 'a;b'); DROP STORAGE h", ["hotdata"]),
    # comments, strings, and statements gone wrong before the cursor
    ("SHOW MEMORY # the memory", []),
    ("SHOW STORAGE -- which one", []),
    ("SHOW STORAGE hotdata -- ", []),
    ("# a note\nSHOW CLOUD ", ["lake"]),
    ("CREATE STORAGE 'new", []),
    ("SET serial TO 'tr", []),
    ("SHOW NOTHING AT ", []),
    ("FOO ", []),
    ("quit ", []),
    ("SHOW PARTITION 1.5 ", []),
    # help
    ("help ", [name.lower() for name in dict.fromkeys(n.split()[0] for n in language.ENTRIES)]),
    ("HELP CREATE ", ["STORAGE", "CLOUD", "PARTITION"]),
    ("help create storage ", []),
]


@pytest.mark.parametrize("text, words", CASES)
def test_what_each_position_offers(text, words):
    assert complete(text, NAMES).words == words


@pytest.mark.parametrize("text, start", [
    ("", 0), ("SHOW ", 5), ("SHOW STORAGE h", 13), ("SHOW MEMORY; sh", 13),
    ("CREATE STORAGE new (compression 'z", 32), ("CREATE STORAGE new (", 20)])
def test_the_word_replaced_starts_where_it_was_typed(text, start):
    assert complete(text, NAMES).start == start


def test_no_names_offers_the_grammar_alone():
    assert complete("SHOW STORAGE ").words == []
    assert complete("DROP PARTITION ").words == ["IF EXISTS"]


def test_many_partitions_are_offered_a_prefix_at_a_time():
    names = Names(partitions=tuple(range(0, 10**8, 1000)))
    first = complete("SHOW PARTITION ", names).words
    assert first == [str(m) for m in range(0, PARTITIONS_OFFERED * 1000, 1000)]
    some = complete("SHOW PARTITION 9", names).words
    assert some[:2] == ["9000", "90000"] and len(some) == PARTITIONS_OFFERED
    assert all(w.startswith("9") for w in some)
    assert complete("SHOW PARTITION 99999", names).words == ["99999000"]


# what is offered fits, and what fits is offered ---------------------------------------

CORPUS = [entry.example for entry in language.ENTRIES.values()] + [
    "SHOW STORAGE hotdata DEBUG", "SHOW PARTITION 1000 debug", "SHOW serial, MEMORY, CONFIG",
    "SHOW CLOUD lake", "SHOW PARTITIONS DEBUG",
    "DROP PARTITION IF EXISTS 1000 ON CLOUD", "UPLOAD PARTITION IF EXISTS 0 IF CLOUD",
    "MOVE PARTITION IF EXISTS 0 INTO hotdata", "REFRESH PARTITIONS BETWEEN 0 AND 12000",
    "DROP PARTITIONS BETWEEN 0 AND 12000 ON STORAGE",
    "CREATE STORAGE IF NOT EXISTS newstore (path '/x', cloud 'lake', sync false, "
    "compression 'zstd', encryption 'aes')",
    "CREATE CLOUD newcloud (type 'mock', url '/x', debug true)",
    "ALTER STORAGE IF EXISTS hotdata RENAME TO newname", "ALTER CLOUD lake SET (debug false)",
    "ALTER PIPELINE SET hotdata (partitions 10, size 1G), main", "ALTER PIPELINE RESET",
    "SET workers TO 0", "DROP STORAGE IF EXISTS hotdata", "CREATE PARTITION 0 999",
    "SHOW MEMORY; DROP CLOUD lake",
]


def boundaries(text: str):
    """(the text before each token, the token's match) along text."""
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m.lastgroup != "space":
            yield text[:pos], m
        pos = m.end()


PREFIXES = sorted({p for s in CORPUS for before, m in boundaries(s)
                   for p in (before, before + m.group()[:1])})


class Spy(Parser):
    """The real parser, telling whether it looked at the end of the text."""
    last: "Spy"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.reached = False
        Spy.last = self

    def peek(self):
        tok = super().peek()
        self.reached = self.reached or tok.kind == END
        return tok


@pytest.fixture
def accepted(monkeypatch):
    """accepted(text): whether parse() read all of text, whatever it wanted after."""
    monkeypatch.setattr(monotone.ddl, "Parser", Spy)

    def accepted(text: str) -> bool:
        try:
            parse(text)
        except ParseError:
            return Spy.last.reached
        return True
    return accepted


def test_every_candidate_is_accepted_where_it_is_offered(accepted):
    checked = 0
    for prefix in PREFIXES:
        found = complete(prefix, NAMES)
        for word in found.words:
            statement = prefix[:found.start].rpartition(";")[2]  # no ';' in a string here
            if not statement.strip() and word.upper() in completion.PROMPT_WORDS:
                continue  # the prompt's own, not the parser's
            assert accepted(statement + word), (prefix, word)
            checked += 1
    assert checked > 500


def test_what_the_parser_accepts_next_is_offered():
    """Every keyword of the corpus, and every name, option, id and value completion
    knows, is offered once its first letter is typed."""
    known = {*NAMES.storages, *NAMES.clouds, *NAMES.variables, *STORAGE_OPTIONS,
             *CLOUD_OPTIONS, *language.RETENTION_NAMES, *map(str, NAMES.partitions),
             *(f"'{v}'" for values in CHOICES.values() for v in values), "'lake'"}
    for statement in CORPUS:
        start = statement.rfind(";") + 1
        for before, m in boundaries(statement):
            token = m.group()
            if len(before) < start or not (token.isupper() or token in known) \
                    or token.lower() in UNITS:
                continue
            if m.lastgroup == "int" and (not before.endswith(("PARTITION ", "EXISTS "))
                                         or before.startswith("CREATE")):
                continue  # not an id: a new partition's or a range's bound, a size
            words = complete(before + token[:1], NAMES).words
            assert any(w.split()[0].lower() == token.lower() for w in words), (before, token)


def test_every_message_the_table_knows_is_one_the_parser_gives():
    """A message changed in a parser leaves no row of the table unused."""
    messages = set()
    for prefix in PREFIXES + ["SHOW CLOUD ", "ALTER CLOUD ", "CREATE CLOUD x (type "]:
        p = completion._stop(prefix)
        if p is not None:
            messages.update(m for m in [*p.wants, p.error] if m)
    for pattern, kind in completion._FITS:
        assert any(completion.re.match(pattern, m) for m in messages), kind


def test_the_words_come_from_the_parser_and_the_reference():
    assert set(VERBS) == {name.split()[0] for name in language.ENTRIES}
    assert "quit" in QUIT
    assert CHOICES["compression"] == config.COMPRESSIONS
    assert set(CHOICES["type"]) <= set(BACKENDS)
    assert CHOICES["encryption"] == ("none", "aes")


def test_nothing_breaks_it():
    messy = "SHOW 'a\" 1.5 ;; -- x\n ((, 99999999999999999999999 DROP PARTITION IF ) \\q"
    for end in range(len(messy) + 1):
        complete(messy[:end], NAMES)


class Shows:
    """A repository's show(), answering from a dict; what it lacks fails as a closed one."""

    def __init__(self, answers: dict) -> None:
        self.answers = answers

    def show(self, what: str):
        if what not in self.answers:
            raise MonotoneError("the repository is not open: open() it first")
        return self.answers[what]


def test_the_prompt_fetches_the_names_and_goes_without_those_it_cannot():
    answers = {"STORAGES": {"main": {}, "hotdata": {}}, "CLOUDS": {"lake": {}},
               "PARTITIONS": [{"min": 0, "max": 999}, {"min": 1000, "max": 1999}],
               "ALL": {"serial": True, "workers": 3}}
    prompt = Prompt(SimpleNamespace(db=Shows(answers)))
    assert prompt.names == Names(("main", "hotdata"), ("lake",), (0, 1000), ("serial", "workers"))
    del answers["PARTITIONS"], answers["CLOUDS"]
    prompt._fetch_names()
    assert prompt.names == Names(("main", "hotdata"), (), (), ("serial", "workers"))
    assert Prompt(SimpleNamespace(db=Shows({}))).names == Names()


def test_readline_gets_each_completion_from_its_own_word_start():
    assert readline_matches("SHOW STORAGE h", 13, NAMES) == ["hotdata"]
    assert readline_matches("SHOW STORAGE 'cold s", 19, NAMES) == ["store'"]
    assert readline_matches("SHOW STORAGE h", 12, NAMES) == [" hotdata"]


# on a terminal --------------------------------------------------------------------------

def test_tab_on_a_terminal_completes_names_made_in_that_repository(repo, tmp_path, front_end):
    with Terminal(repo, front_end, HOME=str(tmp_path)) as term:
        term.until(b"monotone>")
        term.type(b"CREATE CLOUD lake (type 'mock'); CREATE STORAGE hotdata; SHOW STORAGES\r")
        term.until(b'"hotdata"')
        term.seen = b""
        # each completion shows before Enter: prompt_toolkit completes in the background,
        # and draws what Tab added apart from what was typed
        term.type(b"show cloud \t")  # the one cloud: nothing else fits there
        term.until(b"lake")
        term.type(b"\r")
        term.until(b'"mock"')
        term.seen = b""
        term.type(b"SHOW STORAGE h\t")
        term.until(b"otdata")
        term.type(b"\r")
        term.until(b'"refresh_wm"')
        term.quit()
