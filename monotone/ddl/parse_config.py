"""SET and SHOW."""
from __future__ import annotations

from ..errors import ParseError
from . import commands as cmd
from .lexer import END, NAME, PUNCT, STRING
from .parser import Parser

SHOW_USAGE = ("SHOW 'MEMORY | CACHE | WAL | WORKERS | CLOUDS | CLOUD | STORAGES | STORAGE "
              "| PARTITIONS | PARTITION | PIPELINE | CONFIG | ALL | name' expected")


def set_(p: Parser) -> cmd.Set:
    if p.peek().upper == "TO":
        raise ParseError("SET 'name' expected")
    name = p.name("SET 'name' expected")
    if p.keyword("TO") is None and not p.punct("="):
        raise ParseError(f"SET {name} 'TO' expected")
    value = p.value(f"SET {name} TO 'value' expected")
    return cmd.Set(name.lower(), value)


def show(p: Parser) -> cmd.Show:
    items = [_show_item(p)]
    while p.punct(","):
        items.append(_show_item(p))
    return cmd.Show(tuple(items))


def _show_item(p: Parser) -> cmd.ShowItem:
    tok = p.peek()
    if tok.kind == END or (tok.kind == PUNCT):
        raise ParseError(SHOW_USAGE)
    word = p.keyword("MEMORY", "CACHE", "WAL", "WORKERS", "CLOUDS", "CLOUD", "STORAGES", "STORAGE",
                     "PARTITIONS", "PARTITION", "PIPELINE", "CONFIG", "ALL")
    item: cmd.ShowItem
    if word in ("MEMORY", "CACHE", "WAL", "WORKERS", "CLOUDS", "STORAGES", "PIPELINE"):
        item = cmd.ShowItem(word.lower())
    elif word == "CLOUD":
        item = cmd.ShowItem("cloud", name=p.name("SHOW CLOUD 'name' expected"))
    elif word == "STORAGE":
        item = cmd.ShowItem("storage", name=p.name("SHOW STORAGE 'name' expected"))
    elif word == "PARTITION":
        item = cmd.ShowItem("partition", id=p.integer("SHOW PARTITION 'id' expected"))
    elif word == "PARTITIONS":
        name = None
        nxt = p.peek()
        if nxt.kind == STRING or (nxt.kind == NAME and nxt.upper != "DEBUG"):
            name = p.take().text
        item = cmd.ShowItem("partitions", name=name)
    elif word in ("CONFIG", "ALL"):
        nxt = p.peek()
        if nxt.kind == STRING or (nxt.kind == NAME and nxt.upper != "DEBUG"):
            item = cmd.ShowItem("var", name=p.take().text.lower())
        else:
            item = cmd.ShowItem("config")
    else:
        item = cmd.ShowItem("var", name=p.name(SHOW_USAGE).lower())
    if p.keyword("DEBUG"):
        item = cmd.ShowItem(item.what, item.name, item.id, True)
    return item
