"""Completion at the prompt: what fits where the cursor is, as the parser sees it.

complete() runs the command parsers themselves (the dispatch tables of
monotone.ddl and their Parser) over the statement before the cursor, with a
Parser that notes what it looks for where the text ends: the keywords and
punctuation it tries there, and the names, ids and values it wants (each known
by the message it would raise, e.g. `SHOW STORAGE 'name' expected`). When it
stops there with an error, the keywords its message quotes count too (`SHOW
'MEMORY | CACHE | ... | name' expected`). So no command's keywords are listed
here: a parser changed is completed as it now reads. What is not the parser's is
small and checked by tests: _FITS, which live names fit which of the parser's
messages, and the option names and values, read from the reference (help.py).
Pure: the text and the names the prompt fetched in, candidates out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import ParseError
from . import _ALONE, _OBJECTS, parse_tokens
from . import help as language
from .lexer import END, NAME, TOKEN, Token, tokenize
from .parser import Parser

VERBS = (*_ALONE, *_OBJECTS)  # what parse() dispatches on
PROMPT_WORDS = ("HELP", "QUIT")  # the prompt's own (scripts/runner.py runs them)
PARTITIONS_OFFERED = 50  # a repository may hold thousands: the first that fit the prefix
_ALIASES = {"="}  # accepted for TO; completion offers the keyword only


@dataclass(frozen=True)
class Names:
    """The live names completion may offer, as the prompt last fetched them."""
    storages: tuple[str, ...] = ()
    clouds: tuple[str, ...] = ()
    partitions: tuple[int, ...] = ()  # each partition's min
    variables: tuple[str, ...] = ()


class Completions(NamedTuple):
    start: int  # where in the text the word they replace begins
    words: list[str]


def complete(text: str, names: Names = Names()) -> Completions:
    """What may replace the word that ends text (the text before the cursor)."""
    cut = _cut(text)
    if cut is None:  # inside a comment
        return Completions(len(text), [])
    start, word_start = cut
    return Completions(word_start, _fitting(text[start:word_start], text[word_start:], names))


def _cut(text: str) -> tuple[int, int] | None:
    """Where the statement the cursor is in starts (after the last ';') and where the
    word being typed starts; None when the cursor is in a comment."""
    start = pos = 0
    last = None
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m.lastgroup == "open":
            return start, m.start()  # an open string: the word, from its quote
        if m.lastgroup == "punct" and m.group() == ";":
            start = m.end()
        pos, last = m.end(), m
    if last is None:
        return start, len(text)
    if last.lastgroup == "space" and not last.group()[0].isspace():
        return None
    if last.lastgroup in ("name", "int"):
        return start, last.start()
    return start, len(text)


def _fitting(head: str, word: str, names: Names) -> list[str]:
    """The candidates for word after head, the statement's text before it."""
    try:
        tokens = tokenize(head)[:-1]
    except ParseError:  # a number or a string the lexer refuses, before the word
        return []
    quote = word[:1] if word[:1] in ("'", '"') else ""
    if not tokens:
        return [] if quote else _matching(_cased([*VERBS, *PROMPT_WORDS], word), word)
    if tokens[0].kind == NAME and tokens[0].upper == "HELP":
        return [] if quote else _help(tokens, word)
    p = _stop(head)
    if p is None:  # the statement went wrong before the cursor
        return []
    keywords = [] if quote else _matching([*p.keywords, *_quoted_keywords(p.error)], word)
    keywords = _cased([_then(head, k) for k in keywords], _sample(word, p.last_keyword))
    values = [v for message in p.wants + [p.error] for v in _values(message, names, word, quote)]
    marks = [] if word else [c for c in p.puncts if c not in _ALIASES]
    if p.error is None and not word:
        marks.append(";")
    return list(dict.fromkeys([*keywords, *_matching(values, word), *marks]))


class _Recorder(Parser):
    """The parser, noting what it looks for where the text ends: the cursor."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.reached = False  # it looked at the cursor: all before it parsed
        self.keywords: list[str] = []
        self.puncts: list[str] = []
        self.wants: list[str] = []  # the messages of the names, ids and values it wanted
        self.error: str | None = None
        self.last_keyword = self.tokens[0].text  # as typed: its case is the candidates'

    def peek(self):
        tok = super().peek()
        self.reached = self.reached or tok.kind == END
        return tok

    def keyword(self, *words: str) -> str | None:
        tok = self.peek()
        if tok.kind == END:
            self.keywords += words
        found = super().keyword(*words)
        self.last_keyword = tok.text if found else self.last_keyword
        return found

    def punct(self, char: str) -> bool:
        if self.peek().kind == END:
            self.puncts.append(char)
        return super().punct(char)

    def name(self, error: str) -> str:
        self._want(error)
        return super().name(error)

    def integer(self, error: str) -> int:
        self._want(error)
        return super().integer(error)

    def value(self, error: str):
        self._want(error)
        return super().value(error)

    def _want(self, error: str) -> None:
        if self.peek().kind == END:
            self.wants.append(error)


def _stop(head: str) -> _Recorder | None:
    """The parser run over head, stopped at its end; None when it failed before."""
    try:
        p = _Recorder(head)
    except ParseError:
        return None
    try:
        parse_tokens(p)
    except ParseError as e:
        p.error = str(e)
    return p if p.reached else None


def _quoted_keywords(error: str | None) -> list[str]:
    """The keywords among the alternatives an error quotes as expected."""
    m = re.search(r"'([^']*)'", error or "")
    alternatives = m.group(1).split("|") if m else []
    return [a.strip() for a in alternatives if re.fullmatch(r"[A-Z_]+", a.strip())]


def _then(head: str, keyword: str) -> str:
    """keyword with the keywords the parser then requires, one by one, when nothing
    else may follow it (IF: IF EXISTS, IF NOT EXISTS, IF CLOUD)."""
    words = [keyword]
    for _ in range(3):
        p = _stop(f"{head} {' '.join(words)} ")
        if p is None or p.error is None or p.wants or p.puncts:
            break
        required = list(dict.fromkeys([*p.keywords, *_quoted_keywords(p.error)]))
        if len(required) != 1:
            break
        words.append(required[0])
    return " ".join(words)


# the parser's messages for what it wants, and what fits there
_FITS = (
    (r"(SET|SHOW) '.*name'", "variables"),
    (r"(SHOW|ALTER|DROP) STORAGE 'name'|.* INTO 'name'|ALTER PIPELINE SET 'storage name'",
     "storages"),
    (r"(SHOW|ALTER|DROP) CLOUD 'name'", "clouds"),
    (r"\w+ PARTITION 'id'", "partitions"),
    (r"\w+ STORAGE \('name'", "storage options"),
    (r"\w+ CLOUD \('name'", "cloud options"),
    (r"ALTER PIPELINE SET \('name'", "retention"),
    (r"\w+ 'true\|false'", "bool"),
    (r"\w+ 'string'", "string"),
)
_OPTIONS = {"storage options": language.STORAGE_OPTION_NAMES,
            "cloud options": language.CLOUD_OPTION_NAMES, "retention": language.RETENTION_NAMES}


def _fits(message: str | None) -> str | None:
    for pattern, kind in _FITS:
        if message and re.match(pattern, message):
            return kind
    return None


def _values(message: str | None, names: Names, word: str, quote: str) -> list[str]:
    """The names, ids or values that fit where the parser wanted what message says."""
    kind = _fits(message)
    if kind in ("variables", "storages", "clouds"):
        return [_quoted(n, quote) for n in getattr(names, kind)]
    if kind == "string":  # an option's value: its choices, or the clouds for cloud
        option = message.split()[0].lower()
        found = names.clouds if option == "cloud" else CHOICES.get(option, ())
        q = quote or "'"
        return [f"{q}{v}{q}" for v in found]
    if quote:  # option names, ids and true/false are never quoted
        return []
    if kind == "partitions":
        ids = [str(m) for m in sorted(names.partitions) if str(m).startswith(word)]
        return ids[:PARTITIONS_OFFERED]
    if kind == "bool":
        return ["true", "false"]
    return list(_OPTIONS.get(kind, ()))


def _quoted(name: str, quote: str) -> str:
    """name as typed there: quoted when the user opened a string, or when the lexer
    would not read it as one bare name."""
    try:
        bare = [(t.kind, t.text) for t in tokenize(name)] == [(NAME, name), (END, "")]
    except ParseError:
        bare = False
    if quote or not bare:
        q = quote or ("'" if "'" not in name else '"')
        return f"{q}{name}{q}"
    return name


def _choices() -> dict[str, tuple[str, ...]]:
    """The values the reference lists for an option, as `compression 'lz4|zstd|none'`
    (placeholders such as <fsspec protocol> left out)."""
    found = re.findall(r"(\w+) '([^']*\|[^']*)'", language.STORAGE_OPTIONS + language.CLOUD_OPTIONS)
    return {name: tuple(v for v in values.split("|") if re.fullmatch(r"\w+", v))
            for name, values in found}


CHOICES = _choices()


def _help(tokens: list[Token], word: str) -> list[str]:
    """After `help`: the next word of the topics the words so far begin."""
    done = [t.upper for t in tokens[1:]]
    topics = [name.split() for name in language.ENTRIES]
    following = [t[len(done)] for t in topics if t[:len(done)] == done and len(t) > len(done)]
    return _matching(_cased(following, _sample(word, tokens[-1].text)), word)


def _sample(word: str, typed: str) -> str:
    """What the candidates' case follows: the word being typed, or when it has no
    letter yet, the last keyword typed."""
    return word if any(c.isalpha() for c in word) else typed


def _cased(keywords: list[str], sample: str) -> list[str]:
    """Keywords in the case the user types them: lower when sample is."""
    return [k.lower() for k in keywords] if sample.islower() else list(keywords)


def _matching(candidates: list[str], word: str) -> list[str]:
    """Those candidates word begins (any case); a quoted one also by what it quotes."""
    low = word.lower()
    return list(dict.fromkeys(
        c for c in candidates if c.lower().startswith(low)
        or (c[:1] in ("'", '"') and c[1:].lower().startswith(low))))
