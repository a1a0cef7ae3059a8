"""Tokens of the management language.

Keywords are case-insensitive names. An integer may carry a unit, attached or
after a space (`10G`, `150 KiB`, `1day`, `5min`): sizes become bytes, durations
microseconds, as in the original. `--` (as in SQL) and `#` start a comment to the end
of the line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ParseError

NAME, INT, STRING, PUNCT, END = "name", "int", "string", "punct", "end"

_SECOND = 1_000_000
_DAY = 86_400 * _SECOND
UNITS = {
    # sizes (bytes)
    "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4, "tib": 1024**4,
    # durations (microseconds)
    "us": 1, "microsecond": 1, "microseconds": 1,
    "ms": 1000, "millisecond": 1000, "milliseconds": 1000,
    "sec": _SECOND, "second": _SECOND, "seconds": _SECOND,
    "min": 60 * _SECOND, "minute": 60 * _SECOND, "minutes": 60 * _SECOND,
    "hr": 3600 * _SECOND, "hour": 3600 * _SECOND, "hours": 3600 * _SECOND,
    "day": _DAY, "days": _DAY, "week": 7 * _DAY, "weeks": 7 * _DAY,
    "month": 30 * _DAY, "months": 30 * _DAY, "year": 365 * _DAY, "years": 365 * _DAY,
}

TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*|--[^\n]*)
  | (?P<float>\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)
  | (?P<int>\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.$]*)
  | (?P<string>'[^'\n]*'|"[^"\n]*")
  | (?P<open>['"])
  | (?P<punct>[^\sA-Za-z0-9_'"])
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    value: object = None

    @property
    def upper(self) -> str:
        return self.text.upper()


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        kind = m.lastgroup
        pos = m.end()
        if kind == "space":
            continue
        if kind == "open":
            raise ParseError("unterminated string")
        if kind == "float":
            raise ParseError(f"unexpected number {m.group(kind)}: integers only")
        if kind == "int":
            tokens.append(Token(INT, m.group(kind), int(m.group(kind))))
        elif kind == "string":
            tokens.append(Token(STRING, m.group(kind)[1:-1], m.group(kind)[1:-1]))
        elif kind == "name":
            unit = UNITS.get(m.group(kind).lower())
            if unit is not None and tokens and tokens[-1].kind == INT and tokens[-1].text.isdigit():
                prev = tokens.pop()
                tokens.append(Token(INT, prev.text + m.group(kind), prev.value * unit))
            else:
                tokens.append(Token(NAME, m.group(kind), m.group(kind)))
        else:
            tokens.append(Token(PUNCT, m.group(kind)))
    if tokens and tokens[-1].kind == PUNCT and tokens[-1].text == ";":
        tokens.pop()
    tokens.append(Token(END, ""))
    return tokens


def split_statements(text: str) -> list[str]:
    """The statements of a text, cut at each ';' outside strings and comments; empty
    ones (blank lines, comments) left out. A string left open is left to the parser."""
    out, start, pos = [], 0, 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m.lastgroup == "open":
            break  # an unterminated string: the rest is one statement, the parser says why
        pos = m.end()
        if m.lastgroup == "punct" and m.group() == ";":
            out.append(text[start:pos - 1])
            start = pos
    out.append(text[start:])
    return [s.strip() for s in out if TOKEN.sub(_blank, s).strip()]


def _blank(m: re.Match) -> str:
    return "" if m.lastgroup == "space" else m.group()

