"""The coordinator's socket: one abstract Unix socket per repository (binding
it makes a process the repository's only coordinator), and who is calling."""
from __future__ import annotations

import errno
import socket
import struct

from monotone import protocol


def bind(base: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(protocol.address(base))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            return None
        raise
    sock.listen(128)
    return sock


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a local socket (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]
