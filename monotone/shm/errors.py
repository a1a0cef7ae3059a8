"""Errors of shared memory and locks (the engine turns them into its own)."""


class ShmError(Exception):
    """A segment or lock could not be made, found or used."""


class NoSpace(ShmError):
    """/dev/shm has no room for the pages asked for."""


class Full(ShmError):
    """A memtable has no room left for the rows asked for."""

    def __init__(self, message: str, segno: int) -> None:
        super().__init__(message)
        self.segno = segno


class LockTimeout(ShmError, TimeoutError):
    """A lock was not granted within its deadline; the message names its holders."""


class Untrusted(ShmError, PermissionError):
    """A file, directory, socket, lock or segment is not the engine's own: another
    user's, a link, or open to others."""


class BadPath(ShmError, ValueError):
    """A path Linux cannot use (too long)."""
