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
