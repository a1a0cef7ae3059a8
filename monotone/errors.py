"""The one error tree of monotone: every failure a user sees is a MonotoneError."""


class MonotoneError(Exception):
    """Root of every error raised by monotone."""


LINUX_ONLY = ("monotone-py runs on Linux only: it shares a repository between processes "
              "through /dev/shm and open file description locks")


class ParseError(MonotoneError, ValueError):
    """A command could not be parsed; the message says what was expected."""


class ConfigError(MonotoneError, ValueError):
    """An unknown configuration variable, a wrong type, or a value set at the wrong time."""


class PartitionNotFound(MonotoneError, KeyError):
    """A command named a partition that does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "partition not found"


class CorruptionError(MonotoneError):
    """A partition file or WAL record failed its checksum or framing check."""


class AccessDenied(MonotoneError, PermissionError):
    """Something of the repository is another user's, or open to others: its
    directory, a file in it, its coordinator's socket, a shared-memory segment."""


class LockTimeout(MonotoneError, TimeoutError):
    """A lock was not granted within lock_timeout; the message names its holders."""


class CoordinatorError(MonotoneError, ConnectionError):
    """The coordinator process could not be started or reached."""


class NoSpaceError(MonotoneError, OSError):
    """Shared memory or disk ran out of space; nothing of the batch was written."""


class MemtableFull(MonotoneError):
    """A partition's memtable has no room left; refreshing the partition frees it."""

    def __init__(self, message: str, segno: int) -> None:
        super().__init__(message)
        self.segno = segno


class InjectedError(MonotoneError):
    """A step failed on purpose because an error_* switch is set (crash tests)."""
