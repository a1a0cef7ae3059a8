"""A client's control connection to its repository's coordinator.

It finds the coordinator through the repository's abstract socket, or starts
one (under the START lock, so processes opening a repository at the same
instant start exactly one). While connected the client holds ATTACHED shared:
a coordinator starting after a crash takes it exclusively before recovery, so
it waits until every client of the dead one has stopped writing. A second
connection is only watched: when it closes, the coordinator is gone, and the
watcher thread lets go of ATTACHED once no write is in flight.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

from . import errors, process, protocol
from .errors import CoordinatorError, MonotoneError
from .protocol import repo_id
from .shm import segment
from .shm.locks import ATTACHED, COORDINATOR, START, Held, LockFile


class Connection:
    def __init__(self, base: str, log: str, locks: LockFile, settings: dict, on_death) -> None:
        self.base = base
        self.log = log
        self.locks = locks
        self.child: subprocess.Popen | None = None
        self.sock, self.hello = self._connect(settings)
        self.locks.lock(ATTACHED, exclusive=False)
        self.dead = False
        self.closing = False
        self.watch = _try_connect(base)
        if self.watch is None:
            self.sock.close()
            raise CoordinatorError(f"the coordinator of {base} went away while opening")
        protocol.send(self.watch, protocol.Watch())
        self.watcher = threading.Thread(target=self._watch, args=(on_death,), daemon=True,
                                        name="monotone-watch")
        self.watcher.start()

    def _connect(self, settings: dict):
        for _ in range(50):
            sock = _try_connect(self.base)
            if sock is None:
                with Held(self.locks, START):
                    sock = _try_connect(self.base)
                    if sock is None:
                        self._spawn(settings)
                        sock = _try_connect(self.base)
                if sock is None:
                    continue
            try:
                protocol.send(sock, protocol.Hello(os.getpid(), settings))
            except OSError:
                pass  # a refusal may be waiting to be read
            try:
                reply = protocol.recv(sock)
            except OSError:
                reply = None
            if reply is None:  # the coordinator was stopping: start again
                sock.close()
                continue
            if not reply["ok"]:
                sock.close()
                raise error_of(reply)
            return sock, reply
        raise CoordinatorError(f"cannot reach the coordinator of {self.base}")

    def _spawn(self, settings: dict) -> None:
        try:
            log = open(self.log, "ab")  # the coordinator's (and its workers') stderr
        except OSError as e:
            raise MonotoneError(f"cannot open {self.base}: cannot write {self.log}: "
                                f"{e.strerror}") from None
        env, keep = process.environment(), ()
        if settings.get("log_to_stdout"):  # the coordinator logs to our standard output too
            try:  # as another descriptor: the child's own stdout is the pipe below
                keep = (os.dup(sys.stdout.fileno()),)
                env["MONOTONE_LOG_FD"] = str(keep[0])
            except (AttributeError, OSError, ValueError):
                pass  # no file behind it (captured): the repository log only
        try:
            child = subprocess.Popen(
                process.command("monotone.workers.coordinator", self.base),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                start_new_session=True, close_fds=True, pass_fds=keep)
        except OSError as e:
            raise CoordinatorError(f"cannot start the coordinator: {e}") from None
        finally:
            log.close()
            for fd in keep:
                os.close(fd)
        child.stdin.write(json.dumps(settings).encode())
        child.stdin.close()
        line = child.stdout.readline().decode().strip()
        child.stdout.close()
        if line != "ready":
            child.wait()
            cls = MonotoneError
            if line.startswith("error: "):
                kind, _, message = line[len("error: "):].partition(": ")
                cls = getattr(errors, kind, MonotoneError)
                if not (isinstance(cls, type) and issubclass(cls, MonotoneError)):
                    cls = MonotoneError
            else:
                message = (f"the coordinator exited with status {child.returncode}"
                           f"{_last_words(self.log)}")
            raise cls(f"cannot open {self.base}: {message}")
        self.child = child

    def _clean_after_death(self) -> None:
        """The coordinator died and we may be its last client: remove its shared memory.

        Only when no coordinator runs (COORDINATOR is free) and nobody is attached
        (ATTACHED is free); a coordinator starting meanwhile waits for us."""
        if not self.locks.try_lock(COORDINATOR):
            return
        try:
            if self.locks.try_lock(ATTACHED):
                for name in segment.list_segments(repo_id(self.base)):
                    segment.unlink(name)
                self.locks.unlock(ATTACHED)
        finally:
            self.locks.unlock(COORDINATOR)

    def _watch(self, on_death) -> None:
        try:
            self.watch.recv(1)  # nothing ever comes: this returns when either side closes
        except OSError:
            pass
        if not self.closing:
            on_death(self)

    def request(self, message) -> dict:
        if self.dead:
            raise CoordinatorError("the coordinator is gone")
        try:
            protocol.send(self.sock, message)
            reply = protocol.recv(self.sock)
        except OSError:
            reply = None
        if reply is None:
            raise CoordinatorError("the coordinator is gone")
        if not reply["ok"]:
            raise error_of(reply)
        return reply

    def detach(self) -> None:
        """Stop being a client of this coordinator (it died, or we close)."""
        self.dead = True
        self.sock.close()
        self.locks.unlock(ATTACHED)

    def close(self) -> None:
        """Say goodbye; when we were the last client, wait for the coordinator to stop."""
        self.closing = True
        last = False
        if not self.dead:
            try:
                protocol.send(self.sock, protocol.Bye())
                reply = protocol.recv(self.sock)
                last = bool(reply and reply.get("last"))
            except OSError:
                pass
            self.detach()
        try:
            self.watch.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.watch.close()
        # no join: the watcher may be waiting for the session lock our caller holds;
        # it finds this connection dead or closing and ends by itself
        if last:
            # the coordinator stops now: wait until it has let go of everything
            with Held(self.locks, COORDINATOR, exclusive=False):
                pass
        elif self.dead:
            self._clean_after_death()
        if self.child is not None:
            if last:
                self.child.wait()
            else:
                self.child.poll()


def _last_words(log: str) -> str:
    """The last line a process that died wrote to the log, to quote in an error."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f" ({lines[-1].strip()}; see {log})" if lines else ""


def _try_connect(base: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(protocol.address(base))
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        return None
    return sock


def error_of(reply: dict) -> MonotoneError:
    cls = getattr(errors, reply.get("type", ""), MonotoneError)
    if not (isinstance(cls, type) and issubclass(cls, MonotoneError)):
        cls = MonotoneError
    return cls(reply["error"])
