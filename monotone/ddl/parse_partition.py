"""CREATE PARTITION and the partition commands: DROP, REFRESH, MOVE, UPLOAD, DOWNLOAD."""
from __future__ import annotations

from ..errors import ParseError
from . import commands as cmd
from .lexer import INT
from .parser import Parser

_CLASSES = {"DROP": cmd.Drop, "REFRESH": cmd.Refresh, "MOVE": cmd.Move,
            "UPLOAD": cmd.Upload, "DOWNLOAD": cmd.Download}


def create(p: Parser) -> cmd.CreatePartition:
    lo = p.integer("CREATE PARTITION 'min' max")
    hi = p.integer("CREATE PARTITION min 'max'") if p.peek().kind == INT else None
    return cmd.CreatePartition(lo, hi)


def partition_command(p: Parser, verb: str, kind: str):
    if kind == "PARTITION":
        usage_tail = " INTO name" if verb == "MOVE" else ""
        if_exists = p.if_exists()
        lo = p.integer(f"{verb} PARTITION 'id'{usage_tail}")
        fields = dict(min=lo, if_exists=if_exists)
        head = f"{verb} PARTITION id"
    else:
        tail = " INTO name" if verb == "MOVE" else ""
        p.need("BETWEEN", f"{verb} PARTITIONS 'BETWEEN' min AND max{tail}")
        lo = p.integer(f"{verb} PARTITIONS BETWEEN 'min' AND max{tail}")
        p.need("AND", f"{verb} PARTITIONS BETWEEN min 'AND' max{tail}")
        hi = p.integer(f"{verb} PARTITIONS BETWEEN min AND 'max'{tail}")
        fields = dict(min=lo, max=hi)
        head = f"{verb} PARTITIONS BETWEEN min AND max"
    if verb == "MOVE":
        p.need("INTO", f"{head} 'INTO' name")
        fields["into"] = p.name(f"{head} INTO 'name'")
    elif verb == "DROP":
        if p.keyword("ON"):
            on = p.keyword("STORAGE", "CLOUD")
            if on is None:
                raise ParseError(f"{head} 'ON STORAGE | ON CLOUD' expected")
            fields["on"] = on.lower()
    elif verb in ("UPLOAD", "DOWNLOAD"):
        if p.keyword("IF"):
            p.need("CLOUD", "IF 'CLOUD' expected")
            fields["if_cloud"] = True
    return _CLASSES[verb](**fields)
