"""CREATE / ALTER / DROP of storages and clouds."""
from __future__ import annotations

from ..errors import ParseError
from . import commands as cmd
from .parser import Parser


def create_storage(p: Parser) -> cmd.CreateStorage:
    if_not_exists = p.if_not_exists()
    name = p.name("CREATE STORAGE 'name' expected")
    return cmd.CreateStorage(name, p.options("CREATE STORAGE"), if_not_exists)


def alter_storage(p: Parser) -> cmd.AlterStorage:
    if_exists = p.if_exists()
    name = p.name("ALTER STORAGE 'name' expected")
    return _alter(p, "STORAGE", name, if_exists, cmd.AlterStorage)


def drop_storage(p: Parser) -> cmd.DropStorage:
    if_exists = p.if_exists()
    return cmd.DropStorage(p.name("DROP STORAGE 'name' expected"), if_exists)


def create_cloud(p: Parser) -> cmd.CreateCloud:
    if_not_exists = p.if_not_exists()
    name = p.name("CREATE CLOUD 'name' expected")
    return cmd.CreateCloud(name, p.options("CREATE CLOUD"), if_not_exists)


def alter_cloud(p: Parser) -> cmd.AlterCloud:
    if_exists = p.if_exists()
    name = p.name("ALTER CLOUD 'name' expected")
    return _alter(p, "CLOUD", name, if_exists, cmd.AlterCloud)


def drop_cloud(p: Parser) -> cmd.DropCloud:
    if_exists = p.if_exists()
    return cmd.DropCloud(p.name("DROP CLOUD 'name' expected"), if_exists)


def _alter(p: Parser, kind: str, name: str, if_exists: bool, cls):
    what = p.keyword("RENAME", "SET")
    if what is None:
        raise ParseError(f"ALTER {kind} name 'RENAME or SET' expected")
    if what == "RENAME":
        p.keyword("TO")
        return cls(name, rename=p.name(f"ALTER {kind} RENAME 'name' expected"), if_exists=if_exists)
    return cls(name, options=p.options(f"ALTER {kind}"), if_exists=if_exists)
