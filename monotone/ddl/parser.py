"""Recursive-descent parser: one command per text, errors say what was expected."""
from __future__ import annotations

from ..errors import ParseError
from . import commands as cmd
from .lexer import END, NAME, NUMBER, PUNCT, STRING, Token, tokenize


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

    def accept(self, word: str) -> bool:
        tok = self.peek()
        if tok.kind == NAME and tok.upper == word:
            self.i += 1
            return True
        return False

    def expect(self, word: str, usage: str) -> None:
        if not self.accept(word):
            self.fail(usage, f"'{word}'")

    def fail(self, usage: str, wanted: str):
        raise ParseError(f"{usage}: expected {wanted}, got {self.peek().describe()}")

    def name(self, usage: str, what: str = "name") -> str:
        tok = self.peek()
        if tok.kind not in (NAME, STRING):
            self.fail(usage, what)
        self.i += 1
        return tok.text

    def integer(self, usage: str, what: str) -> int:
        tok = self.peek()
        if tok.kind != NUMBER or not tok.text.lstrip("-").isdigit():
            self.fail(usage, what)
        self.i += 1
        value = int(tok.text)
        if not 0 <= value < 2**64:
            raise ParseError(f"{usage}: {what} {tok.text} is out of range")
        return value

    def value(self, usage: str):
        tok = self.take()
        if tok.kind == STRING:
            return tok.text
        if tok.kind == NUMBER:
            return int(tok.text) if tok.text.lstrip("-").isdigit() else tok.text
        if tok.kind == NAME:
            if tok.upper in ("TRUE", "ON"):
                return True
            if tok.upper in ("FALSE", "OFF"):
                return False
            return tok.text
        self.i -= tok.kind != END
        self.fail(usage, "a value")

    def end(self, usage: str) -> None:
        if self.peek().kind != END:
            self.fail(usage, "end of command")


def parse(text: str):
    p = Parser(text)
    tok = p.take()
    if tok.kind != NAME:
        raise ParseError(f"unknown command {tok.describe()}: expected SET, SHOW, REFRESH "
                         "or CHECKPOINT")
    handler = _COMMANDS.get(tok.upper)
    if handler is None:
        raise ParseError(f"unknown command '{tok.text}'")
    command = handler(p)
    return command


def _set(p: Parser):
    usage = "SET name TO value"
    name = p.name(usage, "variable name")
    if not p.accept("TO") and not (p.peek().kind == PUNCT and p.peek().text == "=" and p.take()):
        p.fail(usage, "'TO'")
    value = p.value(usage)
    p.end(usage)
    return cmd.Set(name.lower(), value)


def _show(p: Parser):
    usage = "SHOW name | CONFIG | ALL | PARTITIONS | PARTITION id | WAL"
    if p.peek().kind == END:
        p.fail(usage, "what to show")
    if p.accept("PARTITIONS"):
        debug = p.accept("DEBUG")
        p.end(usage)
        return cmd.Show("partitions", debug=debug)
    if p.accept("PARTITION"):
        id_ = p.integer("SHOW PARTITION id", "partition id")
        debug = p.accept("DEBUG")
        p.end(usage)
        return cmd.Show("partition", id=id_, debug=debug)
    if p.accept("WAL"):
        p.end(usage)
        return cmd.Show("wal")
    if p.accept("ALL"):
        p.end(usage)
        return cmd.Show("all")
    if p.accept("CONFIG"):
        if p.peek().kind == END:
            return cmd.Show("config")
        name = p.name(usage).lower()
        p.end(usage)
        return cmd.Show("var", (name,))
    names = [p.name(usage, "variable name").lower()]
    while p.peek().kind == PUNCT and p.peek().text == ",":
        p.take()
        names.append(p.name(usage, "variable name").lower())
    p.end(usage)
    return cmd.Show("list" if len(names) > 1 else "var", tuple(names))


def _refresh(p: Parser):
    if p.accept("PARTITIONS"):
        usage = "REFRESH PARTITIONS BETWEEN min AND max"
        p.expect("BETWEEN", usage)
        lo = p.integer(usage, "min")
        p.expect("AND", usage)
        hi = p.integer(usage, "max")
        p.end(usage)
        return cmd.Refresh(lo, hi)
    usage = "REFRESH PARTITION [IF EXISTS] id"
    p.expect("PARTITION", "REFRESH PARTITION | PARTITIONS")
    if_exists = False
    if p.accept("IF"):
        p.expect("EXISTS", usage)
        if_exists = True
    id_ = p.integer(usage, "partition id")
    p.end(usage)
    return cmd.Refresh(id_, None, if_exists)


def _checkpoint(p: Parser):
    p.end("CHECKPOINT")
    return cmd.Checkpoint()


_COMMANDS = {"SET": _set, "SHOW": _show, "REFRESH": _refresh, "CHECKPOINT": _checkpoint}
