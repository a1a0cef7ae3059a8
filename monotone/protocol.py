"""Control messages between clients and the coordinator.

A local stream socket in the Linux abstract namespace (no file to leave
behind, no path length limit), named after the repository's real path.
Messages are length-prefixed JSON; data never travels this way.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import struct

_LEN = struct.Struct("<I")


def repo_id(base: str) -> str:
    """A short stable name of a repository, for its socket and segments."""
    return hashlib.sha1(os.path.realpath(base).encode()).hexdigest()[:12]


def address(base: str) -> str:
    return f"\0monotone.{repo_id(base)}"


def send(sock: socket.socket, message: dict) -> None:
    data = json.dumps(message).encode()
    sock.sendall(_LEN.pack(len(data)) + data)


def recv(sock: socket.socket) -> dict | None:
    """The next message, or None when the peer closed the connection."""
    head = _recv_exact(sock, _LEN.size)
    if head is None:
        return None
    data = _recv_exact(sock, _LEN.unpack(head)[0])
    if data is None:
        return None
    return json.loads(data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)
