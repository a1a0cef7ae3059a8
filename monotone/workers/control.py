"""Handlers of the control messages clients send (monotone/protocol.py).

Each takes the server, the client's connection, the message and reply(value,
error); work that spans steps is submitted to the scheduler with its lock.
"""
from __future__ import annotations

from monotone import protocol as msg
from monotone.config import RUNTIME, TABLE, convert
from monotone.ddl import parse
from monotone.errors import MonotoneError

from . import refresh as refresher
from .engine import Engine
from .tasks import CATALOG, NOW, PARTITIONS


def hello(server, conn, message: msg.Hello, reply) -> None:
    """A client attaches. Its settings made before open(): runtime ones apply (a
    change of the config: under CATALOG), fixed ones must agree."""
    engine = server.engine
    changes = settings_to_apply(engine, message.settings)

    def attach():
        if changes:
            for name, value in changes.items():
                engine.config.set(name, value, opened=True)
            engine.config_changed()
        server.clients[conn] = message.pid
        server.seen_client = True
        server.stopping = False
        return {"catalog": engine.layout.catalog, "token": engine.layout.token,
                "config": engine.client_config()}

    server.scheduler.submit(attach, reply, "hello", CATALOG if changes else NOW)


def settings_to_apply(engine: Engine, settings: dict) -> dict:
    """The runtime settings that differ from the config (MonotoneError when a fixed
    one differs: it cannot change while the repository is open)."""
    out = {}
    for name, value in settings.items():
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
        elif convert(var, value) != current:
            out[name] = value
    return out


def bye(server, conn, message: msg.Bye, reply) -> None:
    reply({"last": server.embedded and set(server.clients) == {conn}}, None)
    server.drop(conn)


def get_config(server, conn, message: msg.GetConfig, reply) -> None:
    reply({"config": server.engine.client_config()}, None)


def ensure_partitions(server, conn, message: msg.EnsurePartitions, reply) -> None:
    before = server.engine.pmap.map_version
    server.engine.ensure_partitions(message.ids)
    if server.engine.pmap.map_version != before:
        server.service.created()
    reply({}, None)


def refresh_soon(server, conn, message: msg.RefreshSoon, reply) -> None:
    """A writer saw a memtable pass its storage's refresh_wm."""
    server.refresh_in_background(message.slot)
    reply({}, None)


def refresh_now(server, conn, message: msg.RefreshNow, reply) -> None:
    """A writer found a memtable full: refresh its partition, reply when done."""
    engine = server.engine

    def start():
        slot = engine.partition_of(message.min)
        if slot is None or engine.pmap.slot(slot).min != message.min:
            return None  # dropped meanwhile: nothing to refresh
        return refresher.refresh(engine, slot)

    server.scheduler.submit(start, lambda value, error: reply({}, error), "refresh",
                            PARTITIONS)


def wait_memory(server, conn, message: msg.WaitMemory, reply) -> None:
    """A writer met mm_limit: answer once refreshes have freed enough memory."""
    server.memory_waiters.append((message.need, reply))
    server.free_memory()


def execute(server, conn, message: msg.Execute, reply) -> None:
    server.run_command(parse(message.text), reply)
