"""monotone: a storage engine for sequential data, shared by many local processes."""
import os as _os
import sys as _sys

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


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'monotone' has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


class _Beside:
    """In a source checkout the engine's shm/, workers/ and scripts/ folders sit beside
    this package; installed, they are inside it (package-dir in pyproject.toml). This
    finder maps monotone.shm, monotone.workers and monotone.scripts, and nothing else,
    to the folders beside, after every other finder (so an installed copy wins)."""

    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    names = {f"{__name__}.{sub}": sub for sub in ("shm", "workers", "scripts")}

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        sub = cls.names.get(name)
        if sub is None:
            return None
        folder = _os.path.join(cls.root, sub)
        init = _os.path.join(folder, "__init__.py")
        if not _os.path.isfile(init):
            return None
        from importlib.util import spec_from_file_location
        return spec_from_file_location(name, init, submodule_search_locations=[folder])


if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "shm")):
    _sys.meta_path.append(_Beside)
