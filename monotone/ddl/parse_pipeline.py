"""ALTER PIPELINE SET tier [, tier ...] | RESET."""
from __future__ import annotations

from ..errors import ParseError
from . import commands as cmd
from .parser import Parser


def alter(p: Parser) -> cmd.AlterPipeline:
    what = p.keyword("SET", "RESET")
    if what is None:
        raise ParseError("ALTER PIPELINE 'SET | RESET' expected")
    if what == "RESET":
        return cmd.AlterPipeline(())
    tiers = []
    while True:
        name = p.name("ALTER PIPELINE SET 'storage name' expected")
        tiers.append(cmd.Tier(name, p.options("ALTER PIPELINE SET")))
        if not p.punct(","):
            return cmd.AlterPipeline(tuple(tiers))
