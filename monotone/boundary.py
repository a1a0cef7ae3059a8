"""Where the engine meets shared memory: shm's errors turned into the engine's.

shm raises its own errors (it knows nothing of the engine); the engine's code
that calls it turns them into MonotoneErrors with translate() where they would
otherwise reach a user or a client."""
from __future__ import annotations

from .errors import MemtableFull, MonotoneError, NoSpaceError
from .shm.errors import Full, NoSpace, ShmError


def translate(e: ShmError) -> MonotoneError:
    """The engine's error for an error of shm (raise it `from None`)."""
    if isinstance(e, Full):
        return MemtableFull(str(e), e.segno)
    if isinstance(e, NoSpace):
        return NoSpaceError(str(e))
    return MonotoneError(str(e))


__all__ = ["ShmError", "translate"]
