"""The coordinator's own handlers (commands.py's Control entries): the control
messages clients send (monotone/protocol.py), and the commands of the language
whose work is the coordinator's background (CREATE PARTITION's retention,
CHECKPOINT, UPLOAD and DOWNLOAD with upload workers, SERVICE).

Each takes the server and the request and answers through request.reply: at
once, or when the work it started ends; work that spans steps is submitted to
the scheduler with its lock. A handler of the engine alone takes the engine and
the message and returns its answer, as the language's commands do.
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable

from monotone import protocol as msg
from monotone.boundary import ShmError, translate
from monotone.config import RUNTIME, TABLE, applied, convert
from monotone.ddl import parse
from monotone.errors import MonotoneError

from . import partition_commands
from . import refresh as refresher
from .engine import Engine
from .tasks import CATALOG, NOW, PARTITIONS

log = logging.getLogger("monotone")
Reply = Callable[[Any, BaseException | None], None]


@dataclass(frozen=True)
class Request:
    """A message a client sent on conn (or a command inside one), answered through
    reply(value, error)."""
    conn: socket.socket
    message: Any
    reply: Reply


def answer(name: str, value, error: BaseException | None) -> dict:
    """What a client is sent for a request (name: its message's type)."""
    if isinstance(error, ShmError):
        error = translate(error)
    if error is None:
        return {"ok": True, **value}
    if isinstance(error, MonotoneError):
        return {"ok": False, "error": str(error), "type": type(error).__name__}
    # a bug: keep serving, tell the client
    log.error("request %s failed", name, exc_info=error)
    return {"ok": False, "error": f"internal error: {error!r}", "type": "MonotoneError"}


# control messages
def hello(server, request: Request) -> None:
    """A client attaches. Its settings made before open(): runtime ones apply (a
    change of the config: under CATALOG), fixed ones must agree."""
    engine = server.engine
    message: msg.Hello = request.message
    changes = settings_to_apply(engine, message.settings)
    _, once = applied(message.settings)

    def attach():
        if changes:
            with engine.changing():
                for name, value in changes.items():
                    engine.set(name, value, opened=True, persist=name not in once)
        server.clients[request.conn] = message.pid
        server.seen_client = True
        server.stopping = False
        return {"catalog": engine.layout.catalog, "token": engine.layout.token,
                "config": engine.client_config()}

    server.background.scheduler.submit(attach, request.reply, "hello",
                                       CATALOG if changes else NOW)


def settings_to_apply(engine: Engine, settings: dict) -> dict:
    """The runtime settings that differ from the config, or that ask to persist a value
    in force for one open only (MonotoneError when a fixed one differs: it cannot
    change while the repository is open)."""
    out = {}
    values, once = applied(settings)
    for name, value in values.items():
        var = TABLE[name]
        if name in ("uuid", "wal_recover", "strict_modes", "lock_timeout"):
            continue  # only for a repository being opened (and recovered) now, or
            # each process's own
        current = engine.config.values[name]
        if not var.flags & RUNTIME:
            if convert(var, value) != current:
                raise MonotoneError(
                    f"SET '{name}': the repository is already open with "
                    f"{name} = {current!r}; it cannot be changed online")
        elif convert(var, value) != current or name in engine.unsaved and name not in once:
            out[name] = value
    return out


def bye(server, request: Request) -> None:
    request.reply({"last": server.embedded and set(server.clients) == {request.conn}}, None)
    server.drop(request.conn)


def watch(server, request: Request) -> None:
    """A client's second connection: it only waits for us to close it."""


def get_config(engine: Engine, message: msg.GetConfig) -> dict:
    return {"config": engine.client_config()}


def ensure_partitions(server, request: Request) -> None:
    if server.engine.ensure_partitions(request.message.ids):
        server.background.service.created()
    request.reply({}, None)


def refresh_soon(server, request: Request) -> None:
    """A writer saw a memtable pass its storage's refresh_wm."""
    server.background.refresh(request.message.slot)
    request.reply({}, None)


def refresh_now(engine: Engine, message: msg.RefreshNow):
    """A writer found a memtable full: refresh its partition, answer when done."""
    slot = engine.partitions.find(message.min)
    if slot is not None:  # else dropped meanwhile: nothing to refresh
        yield from refresher.refresh(engine, slot)
    return {}


def wait_memory(server, request: Request) -> None:
    """A writer met mm_limit: answer once refreshes have freed enough memory."""
    server.background.wait_memory(request.message.need, request.reply)


def execute(server, request: Request) -> None:
    """A command of the language, through the same table; its answer says the oldest
    lsn still only in memory too."""
    engine = server.engine

    def done(value, error) -> None:
        request.reply({"result": value, "lsn_needed": engine.lsn_needed()}, error)

    server.dispatch(Request(request.conn, parse(request.message.text), done))


# commands of the language that start background work
def create_partition(server, request: Request) -> None:
    """CREATE PARTITION: new partitions, so the pipeline's retention is due."""
    server.background.service.created()
    partition_commands.create_partition(server.engine, request.message)
    request.reply(None, None)


def checkpoint(server, request: Request) -> None:
    """CHECKPOINT: a refresh of every partition with events in memory, in the
    background: with workers all at once, spread over the pool; without, queued
    for SERVICE, as the original. It answers at once."""
    for slot in server.engine.partitions.in_memory():
        server.background.refresh(slot, "checkpoint")
    request.reply(None, None)


def upload(server, request: Request) -> None:
    _transfer(server, request, "upload", partition_commands.upload_partitions,
              server.background.upload)


def download(server, request: Request) -> None:
    _transfer(server, request, "download", partition_commands.download_partitions,
              server.background.download)


def _transfer(server, request: Request, verb: str, in_place, schedule) -> None:
    """UPLOAD or DOWNLOAD: with upload workers, checked, each partition's transfer
    scheduled, and answered at once; without, run in place (in_place: its task)."""
    engine, c = server.engine, request.message
    if server.background.uploads is None:
        server.background.scheduler.submit(lambda: in_place(engine, c), request.reply,
                                           type(c).__name__, PARTITIONS)
        return
    for slot in partition_commands.transfer_targets(engine, c, verb):
        schedule(slot)
    request.reply(None, None)


def service(server, request: Request) -> None:
    """SERVICE (workers = 0): the next step of background work queued, run before
    the answer."""
    server.background.service.run_next(request.reply)
