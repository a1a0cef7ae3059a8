"""Where things live in a repository directory, and the shared-memory names of
the coordinator serving it."""
from __future__ import annotations

import os
import re

from .errors import AccessDenied, MonotoneError
from .protocol import repo_id
from .settings import config_path
from .shm import private
from .shm.errors import BadPath, Untrusted
from .shm.segment import memtable_kind, segment_name

SOCKET = "monotone.sock"
# a storage's directory in the repository's own (a storage without a path of its own)
UUID_DIR = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def holds_repository(path: str) -> bool:
    """Whether path holds a repository's files (its config.json, lock file, WAL or a
    storage's directory): what an open there would take as a repository, or refuse as
    one damaged, rather than make a new one."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # not a directory, not searchable...: an open says what is wrong
    return any(name in ("config.json", "monotone.lock", "wal") or UUID_DIR.match(name)
               for name in names)


class Layout:
    """token: the random part of the serving coordinator's segment names (its
    clients learn it from the coordinator, which chose it); key: the key of its
    memtables' names (in its partition map: its processes read it there)."""

    def __init__(self, base: str, token: str = "", key: bytes = b"") -> None:
        self.base = os.path.realpath(base)
        self.id = repo_id(self.base)
        self.token = token
        self.key = key
        self.config = config_path(self.base)
        self.lock = os.path.join(self.base, "monotone.lock")
        self.socket = os.path.join(self.base, SOCKET)
        self.wal = os.path.join(self.base, "wal")
        self.log = os.path.join(self.base, "log")

    @property
    def catalog(self) -> str:
        return segment_name(self.id, self.token, "catalog")

    def memtable(self, segno: int) -> str:
        return segment_name(self.id, self.token, memtable_kind(self.key, segno))


def socket_address(dirfd: int) -> str:
    """The socket's path through a descriptor of the repository directory: short
    whatever the repository's path (sun_path takes 107 bytes), and inside the
    directory that was checked, whatever happened to its path since."""
    return f"/proc/self/fd/{dirfd}/{SOCKET}"


def open_base(base: str, strict: bool = True) -> int:
    """The repository directory, made 0700 if missing and checked (private.check_dir;
    strict: strict_modes), as a descriptor: what is reached through it (the
    socket) is in the directory checked, whatever its path becomes."""
    try:
        private.make_dir(base, strict)
        if not os.access(base, os.W_OK | os.X_OK):
            raise MonotoneError(f"repository directory {base} is not writable")
        return os.open(os.path.realpath(base), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                       os.O_CLOEXEC)
    except Untrusted as e:
        raise AccessDenied(f"cannot open repository {base}: {e}") from None
    except BadPath as e:
        raise MonotoneError(f"cannot open repository {base}: {e}") from None
    except OSError as e:
        raise MonotoneError(f"cannot open repository {base}: {e.strerror}"
                            f"{': ' + e.filename if e.filename else ''}") from None
