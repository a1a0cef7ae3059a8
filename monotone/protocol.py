"""Control messages between clients and the coordinator.

A local stream socket in the repository's directory (repository.SOCKET); each
end checks the other's uid (connection.connect, the coordinator's accept).
Requests are typed messages (the dataclasses below), replies are {"ok": ...}
objects; both go as length-prefixed JSON, at most MAX_MESSAGE bytes (checked
before anything is read into memory). Data never travels this way.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from dataclasses import asdict, dataclass, field, fields

_LEN = struct.Struct("<I")
MAX_MESSAGE = 64 << 20  # SHOW PARTITIONS of every slot fits many times over


@dataclass(frozen=True)
class Hello:
    """A client attaches: its pid and the settings it made before open()."""
    pid: int
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Watch:
    """A client's second connection: closed by the coordinator's death, nothing else."""


@dataclass(frozen=True)
class Bye:
    """A client detaches; the reply says whether it was the last."""


@dataclass(frozen=True)
class GetConfig:
    """The config as clients need it (storages with their places and keys)."""


@dataclass(frozen=True)
class EnsurePartitions:
    """Create the partitions these ids fall in, where none is yet."""
    ids: list


@dataclass(frozen=True)
class RefreshSoon:
    """A memtable passed its storage's refresh_wm: refresh it in the background."""
    slot: int


@dataclass(frozen=True)
class RefreshNow:
    """A memtable is full: refresh the partition starting at min; reply when done."""
    min: int


@dataclass(frozen=True)
class WaitMemory:
    """mm_limit is reached: reply once refreshes have freed need bytes."""
    need: int


@dataclass(frozen=True)
class Execute:
    """A command of the management language."""
    text: str


MESSAGES = {cls.__name__: cls for cls in (Hello, Watch, Bye, GetConfig, EnsurePartitions,
                                          RefreshSoon, RefreshNow, WaitMemory, Execute)}


class BadMessage(ValueError):
    """A request that is no message of this protocol."""


def encode(message) -> dict:
    return {"op": type(message).__name__, **asdict(message)}


def decode(data: dict):
    """The message a request carries (BadMessage when it is none)."""
    cls = MESSAGES.get(data.get("op")) if isinstance(data, dict) else None
    if cls is None:
        raise BadMessage(f"unknown request {data.get('op') if isinstance(data, dict) else data!r}")
    names = {f.name for f in fields(cls)}
    args = {k: v for k, v in data.items() if k != "op"}
    if set(args) - names:
        raise BadMessage(f"{cls.__name__}: unknown fields {sorted(set(args) - names)}")
    try:
        return cls(**args)
    except TypeError as e:
        raise BadMessage(f"{cls.__name__}: {e}") from None


def repo_id(base: str) -> str:
    """A short stable name of a repository, for its segments."""
    return hashlib.sha1(os.path.realpath(base).encode()).hexdigest()[:12]


def send(sock: socket.socket, message) -> None:
    """Send a message (a request) or a reply (a dict)."""
    if not isinstance(message, dict):
        message = encode(message)
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"a message of {len(data)} bytes is larger than {MAX_MESSAGE}")
    sock.sendall(_LEN.pack(len(data)) + data)


def recv(sock: socket.socket) -> dict | None:
    """The next message, or None when the peer closed the connection."""
    head = _recv_exact(sock, _LEN.size)
    if head is None:
        return None
    size = _LEN.unpack(head)[0]
    if size > MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes announced, more than {MAX_MESSAGE}")
    data = _recv_exact(sock, size)
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
