"""Tokens of the management language. Keywords are case-insensitive."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ParseError

NAME, NUMBER, STRING, PUNCT, END = "name", "number", "string", "punct", "end"

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>-?\d+[A-Za-z]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<punct>[(),=;.])
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()

    def describe(self) -> str:
        return "end of command" if self.kind == END else f"'{self.text}'"


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ParseError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup
        if kind == "string":
            raw = m.group(kind)
            tokens.append(Token(STRING, raw[1:-1].replace(raw[0] * 2, raw[0]), pos))
        elif kind != "space":
            tokens.append(Token(kind, m.group(kind), pos))
        pos = m.end()
    while tokens and tokens[-1].kind == PUNCT and tokens[-1].text == ";":
        tokens.pop()
    tokens.append(Token(END, "", len(text)))
    return tokens
