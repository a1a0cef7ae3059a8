"""The coordinator process of one repository.

Started by the first open() of a repository (embedded: it stops when its last
client goes) or by `monotone serve PATH` (a service: it stays). It takes the
COORDINATOR lock first, which makes it the only coordinator (one that finds a
coordinator serving says "ready" and leaves); recovers the repository; binds
the socket in the repository's directory; says "ready" on stdout to whoever
started it; and then answers control requests, from processes of its own uid
(or root) only. Data never passes through it.
"""
from __future__ import annotations

import faulthandler
import gc
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time

from monotone import protocol
from monotone.boundary import ShmError, translate
from monotone.connection import HANDSHAKE, peer
from monotone.errors import MonotoneError
from monotone.shm import private

from . import commands, control
from .background import Background
from .engine import AlreadyServed, Engine
from .listener import Listener, Refusals
from .recovery import recover

log = logging.getLogger("monotone")
IDLE_START = 60.0  # an embedded coordinator nobody connects to goes away


class Server:
    def __init__(self, engine: Engine, listener: Listener, embedded: bool) -> None:
        self.engine = engine
        self.listener = listener
        self.refusals = Refusals()
        self.embedded = embedded
        self.sel = selectors.DefaultSelector()
        self.conns: set[socket.socket] = set()
        self.clients: dict[socket.socket, int] = {}   # connections that said hello
        self.seen_client = False
        self.stopping = False
        self.background = Background(engine, self.sel)

    def run(self) -> None:
        self.sel.register(self.listener, selectors.EVENT_READ)
        stop_since = None
        while not (self.stopping and self.background.scheduler.idle()):
            timeout = self._timeout()
            if self.stopping:
                stop_since = stop_since or time.monotonic()
                wait = self.background.stopping(stop_since)
                if wait is not None:
                    timeout = wait if timeout is None else min(timeout, wait)
            else:
                stop_since = None
            events = self.sel.select(timeout)
            if not events and self.embedded and not self.seen_client:
                break  # started, but nobody came
            for key, _ in events:
                if key.fileobj is self.listener:
                    self._accept()
                elif key.data is not None:  # (pool, worker): a worker answered
                    key.data[0].readable(key.data[1])
                else:
                    self._serve(key.fileobj)
            self.background.tick()
        self.shutdown()

    def _timeout(self) -> float | None:
        if self.embedded and not self.seen_client:
            return IDLE_START
        return self.background.timeout()

    def _accept(self) -> None:
        """Take the connections waiting (a bounded number a turn, so a flood of them
        cannot starve the clients already served)."""
        for _ in range(64):
            conn = self.listener.accept()
            if conn is None:
                return
            pid, uid = peer(conn)
            if uid not in (os.getuid(), 0):
                self._refuse(conn, pid, uid)
                continue
            # a client that stops halfway through a message cannot stall us
            conn.settimeout(HANDSHAKE)
            self.sel.register(conn, selectors.EVENT_READ)
            self.conns.add(conn)

    def _refuse(self, conn: socket.socket, pid: int, uid: int) -> None:
        """A process of another uid: one line saying why (never blocking on it), and a
        log line, rate-limited."""
        self.refusals.refused(pid, uid)
        try:
            conn.setblocking(False)
            protocol.send(conn, {"ok": False, "type": "AccessDenied", "error": (
                f"the repository {self.engine.layout.base} is served for "
                f"{private.who(os.getuid())}; {private.who(uid)} may not use it")})
        except OSError:
            pass
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            data = protocol.recv(conn)
            message = protocol.decode(data) if data is not None else None
        except (ValueError, protocol.BadMessage) as e:
            log.warning("dropped a client that sent no message of the protocol: %s", e)
            message = None
        except OSError as e:  # a timeout halfway through a message, a reset
            log.warning("dropped a client: %s", e)
            message = None
        if message is None:
            self.drop(conn)
            return

        def reply(value, error) -> None:
            try:
                protocol.send(conn, control.answer(type(message).__name__, value, error))
            except OSError:
                pass  # the client is gone; its EOF comes next

        self.dispatch(control.Request(conn, message, reply))

    def dispatch(self, request: control.Request) -> None:
        """A control message, or a command of the language, under the lock it needs."""
        commands.TABLE[type(request.message)].run(self, request)

    def drop(self, conn: socket.socket) -> None:
        if conn not in self.conns:
            return
        self.sel.unregister(conn)
        conn.close()
        self.conns.discard(conn)
        if self.clients.pop(conn, None) is not None and self.embedded and not self.clients:
            self.stopping = True

    def shutdown(self) -> None:
        engine = self.engine
        self.listener.close()  # first: a client from now on starts a new coordinator
        try:
            self.background.stop_workers()
            # every client is gone: a batch still pending is a dead writer's
            engine.shared.finish_all()
            self.background.last_checkpoint()
        except Exception as e:
            log.error("refresh at shutdown failed: %s", e)
        finally:
            self.refusals.flush()
            engine.close()
            for conn in list(self.conns):
                conn.close()


def setup_logging(engine: Engine) -> None:
    cfg = engine.config
    log.setLevel(logging.INFO)
    form = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s")
    if cfg.log and cfg.log_to_file:
        # never through a link put at its name, nor into another user's file
        fd = private.open_own(engine.layout.log, os.O_WRONLY | os.O_APPEND, create=True)
        handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
        handler.setFormatter(form)
        log.addHandler(handler)
    if cfg.log and cfg.log_to_stdout:
        # monotone serve: its own standard output; started by open(): the opener's
        fd = os.environ.get("MONOTONE_LOG_FD")
        handler = logging.StreamHandler(
            os.fdopen(int(fd), "w", buffering=1, closefd=False) if fd else sys.stdout)
        handler.setFormatter(form)
        log.addHandler(handler)


def serve(base: str, settings: dict, embedded: bool, announce=print) -> int:
    engine = None
    try:
        engine = Engine(base, settings)
        setup_logging(engine)
        recover(engine)
        listener = Listener(engine.dirfd, engine.layout.socket)
    except AlreadyServed as served:
        if not embedded:  # monotone serve: a second one would serve nothing
            _say(announce, f"error: MonotoneError: {os.path.realpath(base)} is already "
                           f"served by {served}")
            return 1
        _say(announce, "ready")  # another coordinator serves this repository: use it
        return 0
    except Exception as e:
        if engine is not None:
            engine.close()
        if isinstance(e, ShmError):
            e = translate(e)
        kind = type(e).__name__ if isinstance(e, MonotoneError) else "MonotoneError"
        _say(announce, f"error: {kind}: {e}")
        return 1
    log.info("coordinator started for %s (pid %d)", engine.layout.base, os.getpid())
    server = Server(engine, listener, embedded)
    server.background.resume_cloud_work()
    signal.signal(signal.SIGTERM, _interrupt)
    gc.collect()
    gc.freeze()  # what start-up made lives on: collections pass over what serving makes
    try:
        if not _say(announce, "ready") and embedded:
            server.stopping = True  # whoever started us is gone: stop, cleaning up
        server.run()
    except KeyboardInterrupt:
        server.shutdown()
    except BaseException:
        server.shutdown()
        raise
    log.info("coordinator stopped")
    return 0


def _say(announce, line: str) -> bool:
    """Tell whoever started us; False when they are gone (a closed pipe)."""
    try:
        announce(line)
    except OSError:
        return False
    return True


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main() -> int:
    faulthandler.enable()  # a crash leaves its traceback in the repository log (stderr)
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
