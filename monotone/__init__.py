"""monotone: a storage engine for sequential data, shared by many local processes."""
from typing import TYPE_CHECKING

from .errors import (
    AccessDenied,
    ConfigError,
    CoordinatorError,
    CorruptionError,
    InjectedError,
    LockTimeout,
    MemtableFull,
    MonotoneError,
    NoSpaceError,
    ParseError,
    PartitionNotFound,
)

__version__ = "0.1.0"
__all__ = ["Monotone", "Event", "Batch", "Cursor", "MonotoneError", "ParseError",
           "ConfigError", "PartitionNotFound", "CorruptionError",
           "CoordinatorError", "NoSpaceError", "InjectedError", "MemtableFull",
           "AccessDenied", "LockTimeout"]

# The client is imported on first use, so that the leaf modules (errors,
# format) can be imported by the coordinator and workers without pulling it in.
_LAZY = {"Monotone": ".client", "Cursor": ".cursor", "Event": ".event", "Batch": ".event"}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from .client import Monotone
    from .cursor import Cursor
    from .event import Batch, Event
else:
    # hidden from type checkers: to them a module's __getattr__ makes every name exist,
    # so a misspelled monotone.Monotnoe would pass unseen, as whatever it returns
    def __getattr__(name: str):
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'monotone' has no attribute {name!r}")
        from importlib import import_module
        value = getattr(import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))

