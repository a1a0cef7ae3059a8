"""The management language: lexer -> parser -> frozen command records.

parse() dispatches on the first keyword to one parser per object kind
(parse_config, parse_storage, parse_partition, parse_pipeline), each reading
the token stream of parser.Parser.
"""
from ..errors import ParseError
from . import commands as cmd
from . import parse_config, parse_partition, parse_pipeline, parse_storage
from .lexer import END, NAME
from .parser import Parser

__all__ = ["parse"]


def parse(text: str):
    """Parse one command; ParseError says what was expected."""
    if not isinstance(text, str):
        raise ParseError("a command is a str")
    p = Parser(text)
    first = p.take()
    word = first.upper if first.kind == NAME else ""
    if word == "SET":
        command = parse_config.set_(p)
    elif word == "SHOW":
        command = parse_config.show(p)
    elif word == "CREATE":
        kind = p.keyword("STORAGE", "CLOUD", "PARTITION")
        if kind is None:
            raise ParseError("CREATE 'CLOUD|STORAGE|PARTITION' expected")
        command = {"STORAGE": parse_storage.create_storage, "CLOUD": parse_storage.create_cloud,
                   "PARTITION": parse_partition.create}[kind](p)
    elif word == "ALTER":
        kind = p.keyword("STORAGE", "CLOUD", "PIPELINE")
        if kind is None:
            raise ParseError("ALTER 'STORAGE|CLOUD|PIPELINE' expected")
        command = {"STORAGE": parse_storage.alter_storage, "CLOUD": parse_storage.alter_cloud,
                   "PIPELINE": parse_pipeline.alter}[kind](p)
    elif word == "DROP":
        kind = p.keyword("STORAGE", "CLOUD", "PARTITION", "PARTITIONS")
        if kind is None:
            raise ParseError("DROP 'STORAGE|CLOUD|PARTITION|PARTITIONS' expected")
        if kind == "STORAGE":
            command = parse_storage.drop_storage(p)
        elif kind == "CLOUD":
            command = parse_storage.drop_cloud(p)
        else:
            command = parse_partition.partition_command(p, "DROP", kind)
    elif word in ("REFRESH", "MOVE", "UPLOAD", "DOWNLOAD"):
        kind = p.keyword("PARTITION", "PARTITIONS")
        if kind is None:
            raise ParseError(f"{word} 'PARTITION|PARTITIONS' expected")
        command = parse_partition.partition_command(p, word, kind)
    elif word == "REBALANCE":
        command = cmd.Rebalance()
    elif word == "CHECKPOINT":
        command = cmd.Checkpoint()
    elif word == "SERVICE":
        command = cmd.Service()
    elif first.kind == END:
        raise ParseError("empty command")
    else:
        raise ParseError(f"unknown command '{first.text}'")
    p.end()
    return command
