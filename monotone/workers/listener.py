"""The coordinator's socket: `monotone.sock` in the repository directory, and
who is calling.

The socket lives in the repository's own directory, so its permissions (the
directory is its owner's, 0700) keep other users from reaching it, and nobody
can take its name first: a global name (an abstract socket) anyone may bind
before the coordinator does. Only the coordinator binds it, holding the
COORDINATOR lock; a socket file left by a coordinator that was killed is
replaced, anything else at that name is refused. Both ends still check the
other's uid (SO_PEERCRED): the directory may be shared (strict_modes off).
"""
from __future__ import annotations

import logging
import os
import socket
import stat
import time

from monotone.repository import socket_address
from monotone.shm import private
from monotone.shm.errors import Untrusted

log = logging.getLogger("monotone")


class Listener:
    """The repository's listening socket (bound by the caller holding COORDINATOR)."""

    def __init__(self, dirfd: int, where: str) -> None:
        self.path = socket_address(dirfd)
        self.where = where
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
                raise Untrusted(f"{where} is not a socket of {private.who(os.geteuid())} "
                                f"(it belongs to {private.who(st.st_uid)}): the "
                                "coordinator does not replace it; move it away")
            os.unlink(self.path)  # a killed coordinator's: nobody listens there
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.bind(self.path)
            os.chmod(self.path, 0o600)
            self.ino = os.lstat(self.path).st_ino
            self.sock.listen(128)
        except BaseException:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> socket.socket | None:
        """The next connection waiting, or None."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        conn.setblocking(True)
        return conn

    def close(self) -> None:
        """Stop being found: our socket file goes (not one put there since), then
        the socket."""
        if self.sock.fileno() < 0:
            return
        try:
            if os.lstat(self.path).st_ino == self.ino:
                os.unlink(self.path)
        except OSError:
            pass
        self.sock.close()


class Refusals:
    """Refused connections, logged without letting a flood fill the log: the first
    FIRST of each minute one by one, then one line with how many more."""

    FIRST = 5
    PERIOD = 60.0

    def __init__(self) -> None:
        self.since = 0.0
        self.logged = 0
        self.quiet = 0
        self.uids: set[int] = set()

    def refused(self, pid: int, uid: int) -> None:
        now = time.monotonic()
        if now - self.since >= self.PERIOD:
            self.flush()
            self.since, self.logged = now, 0
        if self.logged < self.FIRST:
            self.logged += 1
            log.warning("refused a client of %s (pid %d): this repository is served for "
                        "%s only", private.who(uid), pid, private.who(os.geteuid()))
        else:
            self.quiet += 1
            self.uids.add(uid)

    def flush(self) -> None:
        if self.quiet:
            log.warning("refused %d more connections (%s) in the last minute", self.quiet,
                        ", ".join(private.who(u) for u in sorted(self.uids)))
        self.quiet = 0
        self.uids.clear()
