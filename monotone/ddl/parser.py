"""The token stream every command parser reads: keywords, names, literals, options.

Errors follow the original's style: the usage of the command, with the part
that was expected where parsing stopped in quotes, e.g. `REFRESH PARTITIONS
BETWEEN min 'AND' max`.
"""
from __future__ import annotations

from ..errors import ParseError
from . import commands as cmd
from .lexer import END, INT, NAME, PUNCT, STRING, Token, tokenize


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != END:
            self.i += 1
        return tok

    def keyword(self, *words: str) -> str | None:
        """Take the next token if it is one of the keywords; return it upper-cased."""
        tok = self.peek()
        if tok.kind == NAME and tok.upper in words:
            self.i += 1
            return tok.upper
        return None

    def need(self, word: str, error: str) -> None:
        if self.keyword(word) is None:
            raise ParseError(error)

    def punct(self, char: str) -> bool:
        tok = self.peek()
        if tok.kind == PUNCT and tok.text == char:
            self.i += 1
            return True
        return False

    def name(self, error: str) -> str:
        tok = self.peek()
        if tok.kind not in (NAME, STRING) or (tok.kind == STRING and not tok.text):
            raise ParseError(error)
        self.i += 1
        return tok.text

    def integer(self, error: str) -> int:
        tok = self.peek()
        if tok.kind != INT:
            raise ParseError(error)
        self.i += 1
        if not 0 <= tok.value < 2**64:
            raise ParseError(f"{tok.text} is out of range (0 .. 2**64-1)")
        return tok.value

    def value(self, error: str):
        """A literal: integer, string, or true/false."""
        tok = self.peek()
        if tok.kind in (INT, STRING):
            self.i += 1
            return tok.value
        if tok.kind == NAME:
            self.i += 1
            if tok.upper in ("TRUE", "ON"):
                return True
            if tok.upper in ("FALSE", "OFF"):
                return False
            return tok.text
        raise ParseError(error)

    def if_exists(self) -> bool:
        if self.keyword("IF") is None:
            return False
        self.need("EXISTS", "IF 'EXISTS' expected")
        return True

    def if_not_exists(self) -> bool:
        if self.keyword("IF") is None:
            return False
        self.need("NOT", "IF 'NOT' EXISTS expected")
        self.need("EXISTS", "IF NOT 'EXISTS' expected")
        return True

    def options(self, usage: str) -> cmd.Options:
        """[ ( name value [, name value ...] ) ]"""
        if not self.punct("("):
            return ()
        out = []
        if self.punct(")"):
            return ()
        while True:
            name = self.name(f"{usage} ('name' expected")
            expected = _missing(usage, name)
            value = self.value(expected)
            if not _typed(name.lower(), value):  # as the original: checked as it is read
                raise ParseError(expected)
            out.append((name.lower(), value))
            if self.punct(","):
                continue
            if self.punct(")"):
                return tuple(out)
            raise ParseError(f"{usage} name (...')' expected")

    def end(self) -> None:
        if self.peek().kind != END:
            raise ParseError(f"unexpected clause at the end of command: '{self.peek().text}'")


# the value an option takes, for the original's message when it is missing
_BOOLS = {"sync", "crc", "cloud_drop_local", "debug"}
_INTS = {"refresh_wm", "region_size", "compression_level", "partitions", "size", "events",
         "duration", "connect_timeout", "read_timeout", "retries", "removal_delay"}
_STRINGS = {"uuid", "path", "cloud", "compression", "encryption", "encryption_key", "type",
            "url", "login", "password", "access_key", "secret_key"}


def _typed(option: str, value) -> bool:
    """Whether value has the type a known option takes (others are checked later)."""
    if option in _BOOLS:
        return isinstance(value, bool)
    if option in _INTS:
        return isinstance(value, int) and not isinstance(value, bool)
    if option in _STRINGS:
        return isinstance(value, str)
    return True


def _missing(usage: str, name: str) -> str:
    option = name.lower()
    if option in _BOOLS:
        return f"{name} 'true|false' expected"
    if option in _INTS:
        return f"{name} 'integer' expected"
    if option in _STRINGS:
        return f"{name} 'string'expected"  # sic: the original's message
    return f"{usage} ({name} 'value' expected"
