"""Where the engine meets shared memory: shm's errors turned into the engine's.

shm raises its own errors (it knows nothing of the engine); the engine's code
that calls it turns them into MonotoneErrors with translate() where they would
otherwise reach a user or a client."""
from __future__ import annotations

from .errors import AccessDenied, LockTimeout, MemtableFull, MonotoneError, NoSpaceError
from .shm import errors as shm
from .shm.errors import ShmError


def translate(e: ShmError) -> MonotoneError:
    """The engine's error for an error of shm (raise it `from None`)."""
    if isinstance(e, shm.Full):
        return MemtableFull(str(e), e.segno)
    if isinstance(e, shm.NoSpace):
        return NoSpaceError(str(e))
    if isinstance(e, shm.Untrusted):
        return AccessDenied(str(e))
    if isinstance(e, shm.LockTimeout):
        return LockTimeout(str(e))
    return MonotoneError(str(e))


__all__ = ["ShmError", "translate"]
