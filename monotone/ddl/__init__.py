"""The management language: lexer -> parser -> frozen command records."""
from .parser import parse

__all__ = ["parse"]
