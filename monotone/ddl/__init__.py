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

__all__ = ["parse", "parse_tokens"]


# what may follow each verb (in the order its error message names them), and the
# parser of each (verb, kind)
_OBJECTS = {
    "CREATE": {"CLOUD": parse_storage.create, "STORAGE": parse_storage.create,
               "PARTITION": lambda p, verb, kind: parse_partition.create(p)},
    "ALTER": {"STORAGE": parse_storage.alter, "CLOUD": parse_storage.alter,
              "PIPELINE": lambda p, verb, kind: parse_pipeline.alter(p)},
    "DROP": {"STORAGE": parse_storage.drop, "CLOUD": parse_storage.drop,
             "PARTITION": parse_partition.partition_command,
             "PARTITIONS": parse_partition.partition_command},
    **{verb: {"PARTITION": parse_partition.partition_command,
              "PARTITIONS": parse_partition.partition_command}
       for verb in ("REFRESH", "MOVE", "UPLOAD", "DOWNLOAD")},
}
_ALONE = {"SET": parse_config.set_, "SHOW": parse_config.show,
          "REBALANCE": lambda p: cmd.Rebalance(), "CHECKPOINT": lambda p: cmd.Checkpoint(),
          "SERVICE": lambda p: cmd.Service()}


def parse(text: str):
    """Parse one command; ParseError says what was expected."""
    if not isinstance(text, str):
        raise ParseError("a command is a str")
    return parse_tokens(Parser(text))


def parse_tokens(p: Parser):
    """Parse one command from a Parser's tokens (completion gives one that watches)."""
    first = p.take()
    word = first.upper if first.kind == NAME else ""
    if word in _ALONE:
        command = _ALONE[word](p)
    elif word in _OBJECTS:
        kinds = _OBJECTS[word]
        kind = p.keyword(*kinds)
        if kind is None:
            raise ParseError(f"{word} '{'|'.join(kinds)}' expected")
        command = kinds[kind](p, word, kind)
    elif first.kind == END:
        raise ParseError("empty command")
    else:
        raise ParseError(f"unknown command '{first.text}'")
    p.end()
    return command
