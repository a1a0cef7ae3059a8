"""The coordinator process of one repository.

Started by the first open() of a repository (embedded: it stops when its last
client goes) or by `monotone serve PATH` (a service: it stays). It binds the
repository's socket first, which makes it the only coordinator; recovers the
repository; says "ready" on stdout to whoever started it; and then answers
control requests. Data never passes through it.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import signal
import socket
import sys

from monotone import protocol
from monotone.config import RUNTIME, TABLE, convert
from monotone.errors import MonotoneError
from shm.catalog import lsn_needed

from . import handlers
from .engine import Engine
from .recovery import recover

log = logging.getLogger("monotone")
IDLE_START = 60.0  # an embedded coordinator nobody connects to goes away


class Server:
    def __init__(self, engine: Engine, listener: socket.socket, embedded: bool) -> None:
        self.engine = engine
        self.listener = listener
        self.embedded = embedded
        self.sel = selectors.DefaultSelector()
        self.conns: set[socket.socket] = set()
        self.clients: dict[socket.socket, int] = {}   # connections that said hello
        self.seen_client = False
        self.stopping = False

    def run(self) -> None:
        self.sel.register(self.listener, selectors.EVENT_READ)
        while not self.stopping:
            timeout = IDLE_START if self.embedded and not self.seen_client else None
            events = self.sel.select(timeout)
            if not events and self.embedded and not self.seen_client:
                break
            for key, _ in events:
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._serve(key.fileobj)
        self.shutdown()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        self.sel.register(conn, selectors.EVENT_READ)
        self.conns.add(conn)

    def _serve(self, conn: socket.socket) -> None:
        message = protocol.recv(conn)
        if message is None:
            self._drop(conn)
            return
        try:
            reply = {"ok": True, **self.handle(conn, message)}
        except MonotoneError as e:
            reply = {"ok": False, "error": str(e), "type": type(e).__name__}
        except Exception as e:  # a bug: keep serving, tell the client
            log.exception("request %s failed", message.get("op"))
            reply = {"ok": False, "error": f"internal error: {e!r}", "type": "MonotoneError"}
        try:
            protocol.send(conn, reply)
        except OSError:
            pass  # the client is gone; its EOF comes next
        if message.get("op") == "bye":
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        conn.close()
        self.conns.discard(conn)
        if self.clients.pop(conn, None) is not None and self.embedded and not self.clients:
            self.stopping = True

    def handle(self, conn: socket.socket, message: dict) -> dict:
        engine = self.engine
        op = message.get("op")
        if op == "hello":
            apply_settings(engine, message.get("settings", {}))
            self.clients[conn] = int(message.get("pid", 0))
            self.seen_client = True
            return {"catalog": engine.layout.catalog, "config": engine.client_config()}
        if op == "bye":
            return {"last": self.embedded and set(self.clients) == {conn}}
        if op == "config":
            return {"config": engine.client_config()}
        if op == "partitions":
            engine.ensure_partitions(message["ids"])
            return {}
        if op == "execute":
            result = handlers.execute(engine, message["text"])
            return {"result": result, "lsn_needed": lsn_needed(engine.slots)}
        raise MonotoneError(f"unknown request {op!r}")

    def shutdown(self) -> None:
        engine = self.engine
        try:
            if not engine.config.wal:
                # without a WAL, memory is the only copy: a clean stop refreshes it
                handlers.checkpoint(engine)
            else:
                handlers.collect_wal(engine)
        except MonotoneError as e:
            log.error("refresh at shutdown failed: %s", e)
        finally:
            engine.close()
            for conn in list(self.conns):
                conn.close()
            self.listener.close()


def apply_settings(engine: Engine, settings: dict) -> None:
    """Settings a client made before open(): runtime ones apply, fixed ones must agree."""
    changed = False
    for name, value in settings.items():
        var = TABLE[name]
        if name == "uuid":
            continue
        if not var.flags & RUNTIME:
            if convert(var, value) != engine.config.values[name]:
                raise MonotoneError(
                    f"SET '{name}': the repository is already open with "
                    f"{name} = {engine.config.values[name]!r}; it cannot be changed online")
            continue
        engine.config.set(name, value, opened=True)
        changed = True
    if changed:
        engine.config_changed()


def setup_logging(engine: Engine) -> None:
    cfg = engine.config
    log.setLevel(logging.INFO)
    if cfg.log and cfg.log_to_file:
        handler = logging.FileHandler(engine.layout.log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
        log.addHandler(handler)
    if cfg.log and cfg.log_to_stdout:
        log.addHandler(logging.StreamHandler(sys.stderr))


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


def serve(base: str, settings: dict, embedded: bool, announce=print) -> int:
    listener = bind(base)
    if listener is None:
        announce("ready")  # another coordinator serves this repository
        return 0
    engine = None
    try:
        engine = Engine(base, settings)
        setup_logging(engine)
        recover(engine)
    except Exception as e:
        if engine is not None:
            engine.close()
        listener.close()
        announce(f"error: {e}")
        return 1
    log.info("coordinator started for %s (pid %d)", engine.layout.base, os.getpid())
    server = Server(engine, listener, embedded)
    signal.signal(signal.SIGTERM, _interrupt)
    announce("ready")
    try:
        server.run()
    except KeyboardInterrupt:
        server.shutdown()
    log.info("coordinator stopped")
    return 0


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main() -> int:
    base = sys.argv[1]
    settings = json.loads(sys.stdin.read() or "{}")

    def announce(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)

    return serve(base, settings, embedded=True, announce=announce)


if __name__ == "__main__":
    sys.exit(main())
