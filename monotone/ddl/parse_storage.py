"""CREATE / ALTER / DROP of storages and clouds: the same grammar for both kinds."""
from __future__ import annotations

from ..errors import ParseError
from . import commands as cmd
from .parser import Parser

_CLASSES = {"CREATE": {"STORAGE": cmd.CreateStorage, "CLOUD": cmd.CreateCloud},
            "ALTER": {"STORAGE": cmd.AlterStorage, "CLOUD": cmd.AlterCloud},
            "DROP": {"STORAGE": cmd.DropStorage, "CLOUD": cmd.DropCloud}}


def create(p: Parser, verb: str, kind: str):
    if_not_exists = p.if_not_exists()
    name = p.name(f"CREATE {kind} 'name' expected")
    return _CLASSES[verb][kind](name, p.options(f"CREATE {kind}"), if_not_exists)


def alter(p: Parser, verb: str, kind: str):
    if_exists = p.if_exists()
    name = p.name(f"ALTER {kind} 'name' expected")
    cls = _CLASSES[verb][kind]
    what = p.keyword("RENAME", "SET")
    if what is None:
        raise ParseError(f"ALTER {kind} name 'RENAME or SET' expected")
    if what == "RENAME":
        p.keyword("TO")
        return cls(name, rename=p.name(f"ALTER {kind} RENAME 'name' expected"), if_exists=if_exists)
    return cls(name, options=p.options(f"ALTER {kind}"), if_exists=if_exists)


def drop(p: Parser, verb: str, kind: str):
    if_exists = p.if_exists()
    return _CLASSES[verb][kind](p.name(f"DROP {kind} 'name' expected"), if_exists)
