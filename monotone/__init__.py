"""monotone: a storage engine for sequential data, shared by many local processes."""
from .client import Monotone
from .cursor import Cursor
from .errors import (ConfigError, CoordinatorError, CorruptionError, InjectedError,
                     LockTimeout, MonotoneError, NoSpaceError, ParseError, PartitionNotFound)
from .event import Batch, Event

__version__ = "0.1.0"
__all__ = ["Monotone", "Event", "Batch", "Cursor", "MonotoneError", "ParseError",
           "ConfigError", "PartitionNotFound", "CorruptionError", "LockTimeout",
           "CoordinatorError", "NoSpaceError", "InjectedError"]
