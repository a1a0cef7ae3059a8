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
from monotone.ddl import commands as cmd
from monotone.errors import MonotoneError
from monotone.shm import private

from . import cloud_tier, commands
from . import partition_commands as partitions
from . import refresh as refresher
from .engine import AlreadyServed, Engine
from .listener import Listener, Refusals
from .pool import Pool
from .recovery import recover
from .service import ServiceQueue
from .tasks import PARTITIONS, Scheduler

log = logging.getLogger("monotone")
IDLE_START = 60.0  # an embedded coordinator nobody connects to goes away
BACKGROUND = 1.0   # seconds between checks of the pipeline's retention


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
        workers = engine.config.workers
        self.pool = Pool(engine.layout, workers, self.sel) if workers else None
        uploads = engine.config.workers_upload
        self.uploads = Pool(engine.layout, uploads, self.sel, eager=False) \
            if uploads else None
        engine.pool, engine.uploads = self.pool, self.uploads
        self.scheduler = Scheduler(engine, self.pool, self.uploads)
        self.service = ServiceQueue(engine, self.scheduler)  # workers = 0: SERVICE runs it
        self.rebalancing = False
        self.checkpointing = False
        self.memory_waiters: list = []
        self.next_background = time.monotonic()
        # partitions a writer asked to refresh while a task had them: {slot: (heap, when)},
        # the size of their memtable when last looked at
        self.refresh_wanted: dict[int, tuple[int, float]] = {}

    def run(self) -> None:
        self.sel.register(self.listener, selectors.EVENT_READ)
        while not (self.stopping and self.scheduler.idle()):
            events = self.sel.select(self._timeout())
            if not events and self.embedded and not self.seen_client:
                break  # started, but nobody came
            for key, _ in events:
                if key.fileobj is self.listener:
                    self._accept()
                elif key.data is not None:  # (pool, worker): a worker answered
                    key.data[0].readable(key.data[1])
                else:
                    self._serve(key.fileobj)
            self._background()
        self.shutdown()

    def _timeout(self) -> float | None:
        if self.embedded and not self.seen_client:
            return IDLE_START
        if self.refresh_wanted:
            return BACKGROUND / 4
        if self.pool is not None and self.engine.catalog.pipeline:
            return max(0.0, self.next_background - time.monotonic())
        return None

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
        if isinstance(message, protocol.Watch):
            return  # a client's second connection: it only waits for us to close it

        def reply(value, error) -> None:
            if isinstance(error, ShmError):
                error = translate(error)
            if error is None:
                answer = {"ok": True, **value}
            elif isinstance(error, MonotoneError):
                answer = {"ok": False, "error": str(error), "type": type(error).__name__}
            else:  # a bug: keep serving, tell the client
                log.error("request %s failed", type(message).__name__, exc_info=error)
                answer = {"ok": False, "error": f"internal error: {error!r}",
                          "type": "MonotoneError"}
            try:
                protocol.send(conn, answer)
            except OSError:
                pass  # the client is gone; its EOF comes next

        try:
            commands.CONTROL[type(message)].handler(self, conn, message, reply)
        except Exception as e:
            reply(None, e)

    def drop(self, conn: socket.socket) -> None:
        if conn not in self.conns:
            return
        self.sel.unregister(conn)
        conn.close()
        self.conns.discard(conn)
        if self.clients.pop(conn, None) is not None and self.embedded and not self.clients:
            self.stopping = True

    def run_command(self, command, reply) -> None:
        """A command of the management language, under the lock it needs."""
        engine = self.engine

        def done(value, error) -> None:
            reply({"result": value, "lsn_needed": engine.lsn_needed()}, error)

        if isinstance(command, cmd.Service):
            self.service.run_next(done)
            return
        if isinstance(command, cmd.Checkpoint) and self.pool is None:
            self.service.checkpoint()  # as the original: SERVICE runs them, one by one
            done(None, None)
            return
        if isinstance(command, cmd.CreatePartition):
            self.service.created()
        if isinstance(command, cmd.Checkpoint) and self.pool is not None:
            # with workers, CHECKPOINT schedules the refreshes (all at once,
            # spread over the pool) and returns
            for slot in partitions.in_memory(engine):
                self.refresh_in_background(slot, "checkpoint")
            done(None, None)
            return
        if isinstance(command, (cmd.Upload, cmd.Download)) and self.uploads is not None:
            # with upload workers, UPLOAD and DOWNLOAD check, schedule and return
            try:
                slots = partitions.transfer_targets(engine, command)
            except MonotoneError as e:
                done(None, e)
                return
            for slot in slots:
                self.transfer_in_background(slot, isinstance(command, cmd.Upload))
            done(None, None)
            return
        entry = commands.DDL[type(command)]
        self.scheduler.submit(lambda: entry.handler(engine, command), done,
                              type(command).__name__, entry.lock)

    # background work
    def refresh_in_background(self, slot: int, name: str = "refresh") -> None:
        if self.pool is None:
            self.service.refresh(slot)
            return
        if slot in self.engine.busy and name == "refresh":
            # the writer's hint is spent: without this, a partition written on while it
            # refreshes would grow in memory until something else refreshed it
            self.refresh_wanted.setdefault(slot, (-1, time.monotonic()))
            return

        def done(value, error) -> None:
            self._background_done(value, error)
            self._refresh_wanted()

        self.scheduler.submit(lambda: refresher.refresh(self.engine, slot), done, name,
                              PARTITIONS)

    def _refresh_wanted(self) -> None:
        """Refresh again the partitions asked for while busy, once their memtable has
        stopped growing for BACKGROUND seconds (writers left it), so it does not stay in
        memory, nor its WAL files on disk, until something else refreshes it.

        Not at once: a refresh rewrites the whole partition file, and a partition still
        written would be rewritten at every refresh_wm (measured: a 2M-event partition
        written and then refreshed took 20% longer). Until writes to it stop, its
        memtable is bounded by its interval and by mm_limit_wm."""
        now = time.monotonic()
        for slot, (heap, since) in sorted(self.refresh_wanted.items()):
            if slot in self.engine.busy:
                continue
            s = self.engine.pmap.slot(slot)
            if not s.live or s.heap == 0:
                del self.refresh_wanted[slot]
            elif s.heap == heap and now - since >= BACKGROUND:
                del self.refresh_wanted[slot]
                self.refresh_in_background(slot)
            elif s.heap != heap:
                self.refresh_wanted[slot] = (s.heap, now)

    def transfer_in_background(self, slot: int, upload: bool) -> None:
        engine = self.engine
        min_ = engine.pmap.slot(slot).min

        def start():
            s = engine.pmap.slot(slot)
            if not s.live or s.min != min_:
                return None  # dropped meanwhile
            return partitions.transfer_one(engine, slot, upload)

        self.scheduler.submit(start, self._background_done,
                              "upload" if upload else "download", PARTITIONS)

    def resume_uploads(self) -> None:
        """Files of cloud storages without their cloud copy (an upload that failed or
        was cut short) go up in the background, as a refresh would have sent them;
        the manifests are rewritten (a crash may have left one a step behind)."""
        engine = self.engine
        for storage in engine.catalog.storages:
            if storage.cloud:
                self.scheduler.submit(lambda s=storage: cloud_tier.write_manifest(engine, s),
                                      self._background_done, "manifest", PARTITIONS)
        if self.uploads is None:
            return
        for slot in cloud_tier.waiting_upload(engine):
            min_ = engine.pmap.slot(slot).min

            def start(slot=slot, min_=min_):
                s = engine.pmap.slot(slot)
                if not s.live or s.min != min_:
                    return None
                return partitions._claimed(engine, slot,
                                           lambda: cloud_tier.offload(engine, slot))

            self.scheduler.submit(start, self._background_done, "upload", PARTITIONS)

    def free_memory(self) -> None:
        """Answer writers waiting on mm_limit, refreshing memtables to make room."""
        if not self.memory_waiters:
            return
        limit = self.engine.config.mm_limit_wm
        used = self.engine.pmap.heap_total()
        waiting = []
        for need, reply in self.memory_waiters:
            if used + need <= limit:
                reply({}, None)
            elif need > limit:
                reply(None, MonotoneError(f"a batch of {need} bytes is larger than "
                                          f"mm_limit_wm ({limit})"))
            else:
                waiting.append((need, reply))
        self.memory_waiters = waiting
        if waiting and not self.checkpointing:
            self.checkpointing = True

            def done(value, error) -> None:
                self.checkpointing = False
                self._background_done(value, error)
                if not self.engine.busy and self.engine.pmap.heap_total() + min(
                        n for n, _ in self.memory_waiters or [(0, None)]) > limit:
                    for _, reply in self.memory_waiters:  # nothing left to refresh
                        reply(None, MonotoneError("memory limit reached and nothing is left "
                                                  "to refresh"))
                    self.memory_waiters = []
                self.free_memory()

            self.scheduler.submit(lambda: partitions.checkpoint(self.engine), done,
                                  "memory checkpoint", PARTITIONS)

    def _background(self) -> None:
        """The pipeline's retention, applied by workers every BACKGROUND seconds."""
        self.free_memory()
        if self.refresh_wanted:
            self._refresh_wanted()
        if self.pool is None or not self.engine.catalog.pipeline or self.rebalancing:
            return
        if time.monotonic() < self.next_background:
            return
        self.next_background = time.monotonic() + BACKGROUND
        self.rebalancing = True

        def done(value, error) -> None:
            self.rebalancing = False
            self._background_done(value, error)

        self.scheduler.submit(lambda: partitions.rebalance(self.engine), done, "rebalance",
                              PARTITIONS)

    def _background_done(self, value, error) -> None:
        if error is not None:
            log.error("background work failed: %s", error)
        partitions.collect_wal(self.engine)

    def shutdown(self) -> None:
        engine = self.engine
        self.listener.close()  # first: a client from now on starts a new coordinator
        try:
            for pool in (self.pool, self.uploads):
                if pool is not None:
                    pool.close()
            self.scheduler.pool = self.scheduler.uploads = None  # what is left runs here
            # every client is gone: a batch still pending is a dead writer's
            engine.shared.finish_all()
            if not engine.config.wal:
                # without a WAL, memory is the only copy: a clean stop refreshes it
                self.scheduler.submit(lambda: partitions.checkpoint(engine),
                                      self._background_done, "final checkpoint", PARTITIONS)
            else:
                partitions.collect_wal(engine)
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
    except AlreadyServed:
        engine = None
        _say(announce, "ready")  # another coordinator serves this repository
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
    server.resume_uploads()
    signal.signal(signal.SIGTERM, _interrupt)
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
