"""A client's control connection to its repository's coordinator.

It finds the coordinator through the socket in the repository's directory
(`monotone.sock`), or starts one (under the START lock, so processes opening a
repository at the same instant start exactly one). Before it sends a byte it
checks who listens there (SO_PEERCRED): a process of another uid is refused
with an error naming it, and every wait (connect, the coordinator's answer, a
coordinator starting) has a deadline. While connected the client holds
ATTACHED shared: a coordinator starting after a crash takes it exclusively
before recovery, so it waits until every client of the dead one has stopped
writing. A second connection is only watched: when it closes, the coordinator
is gone, and the watcher thread lets go of ATTACHED once no write is in flight.
"""
from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

from . import errors, process, protocol
from .boundary import ShmError, translate
from .errors import AccessDenied, CoordinatorError, MonotoneError
from .repository import Layout, socket_address
from .shm import private, segment
from .shm.locks import ATTACHED, COORDINATOR, START, Held, LockFile

# a coordinator starting may recover a large WAL first: waits for it (the START
# and COORDINATOR locks, its "ready") allow this many times lock_timeout
START_WAITS = 10
HANDSHAKE = 60.0  # seconds a coordinator gives a client to finish sending a message


class Connection:
    def __init__(self, layout: Layout, dirfd: int, locks: LockFile, settings: dict,
                 on_death) -> None:
        self.layout = layout
        self.base = layout.base
        self.dirfd = dirfd
        self.locks = locks
        self.timeout = locks.timeout  # lock_timeout: to connect, and to be answered hello
        self.start_timeout = self.timeout * START_WAITS
        self.child: subprocess.Popen | None = None
        self.sock, self.hello = self._connect(settings)
        self.locks.lock(ATTACHED, exclusive=False)
        self.dead = False
        self.closing = False
        self.watch = connect(dirfd, self.layout.socket, self.timeout)
        if self.watch is None:
            self.sock.close()
            raise CoordinatorError(f"the coordinator of {self.base} went away while opening")
        self.watch.settimeout(None)
        protocol.send(self.watch, protocol.Watch())
        self.watcher = threading.Thread(target=self._watch, args=(on_death,), daemon=True,
                                        name="monotone-watch")
        self.watcher.start()

    def _connect(self, settings: dict):
        for _ in range(50):
            sock = connect(self.dirfd, self.layout.socket, self.timeout)
            if sock is None:
                with Held(self.locks, START, timeout=self.start_timeout):
                    sock = connect(self.dirfd, self.layout.socket, self.timeout)
                    if sock is None:
                        self._spawn(settings)
                        sock = connect(self.dirfd, self.layout.socket, self.timeout)
                if sock is None:
                    continue
            try:
                protocol.send(sock, protocol.Hello(os.getpid(), settings))
            except OSError:
                pass  # a refusal may be waiting to be read
            try:
                reply = protocol.recv(sock)
            except socket.timeout:
                sock.close()
                raise CoordinatorError(f"the coordinator of {self.base} did not answer in "
                                       f"{self.timeout:g} s (busy, or stopped?): see "
                                       f"{self.layout.log} (lock_timeout sets how long "
                                       "to wait)") from None
            except (OSError, ValueError):
                reply = None
            if reply is None:  # the coordinator was stopping: start again
                sock.close()
                continue
            if not reply.get("ok"):
                sock.close()
                raise error_of(reply)
            sock.settimeout(None)  # commands may run long (a refresh): no deadline
            return sock, reply
        raise CoordinatorError(f"cannot reach the coordinator of {self.base}")

    def _spawn(self, settings: dict) -> None:
        try:  # the coordinator's (and its workers') stderr
            log = os.fdopen(private.open_own(self.layout.log, os.O_WRONLY | os.O_APPEND,
                                             create=True), "ab")
        except private.Untrusted as e:
            raise AccessDenied(f"cannot open {self.base}: {e}") from None
        except OSError as e:
            raise MonotoneError(f"cannot open {self.base}: cannot write {self.layout.log}: "
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
        line = self._first_line(child)
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
                           f"{_last_words(self.layout.log)}")
            raise cls(f"cannot open {self.base}: {message}")
        self.child = child

    def _first_line(self, child: subprocess.Popen) -> str:
        """What a coordinator we started says first ("ready" or an error), waiting
        at most start_timeout; one that says nothing by then is stopped."""
        deadline = time.monotonic() + self.start_timeout
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                child.kill()
                child.wait()
                raise CoordinatorError(
                    f"cannot open {self.base}: the coordinator (pid {child.pid}) did not "
                    f"get ready in {self.start_timeout:.0f} s and was stopped; see "
                    f"{self.layout.log} (raise lock_timeout if recovery takes this long)")
            ready, _, _ = select.select([child.stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(child.stdout.fileno(), 4096)
                if not chunk:
                    break
                data += chunk
        return data.decode(errors="replace").split("\n", 1)[0].strip()

    def _clean_after_death(self) -> None:
        """The coordinator died and we may be its last client: remove its shared memory.

        Only when no coordinator runs (COORDINATOR is free) and nobody is attached
        (ATTACHED is free); a coordinator starting meanwhile waits for us."""
        if not self.locks.try_lock(COORDINATOR):
            return
        try:
            if self.locks.try_lock(ATTACHED):
                for name in segment.list_segments(self.layout.id):
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
            try:
                with Held(self.locks, COORDINATOR, exclusive=False,
                          timeout=self.start_timeout):
                    pass
            except ShmError as e:
                raise translate(e) from None
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


def connect(dirfd: int, where: str, timeout: float) -> socket.socket | None:
    """A connection to the repository's coordinator, None when none listens.

    Nothing is sent before the listener is known to run as our uid: a process
    of another user at that name (it could only be there if the directory is
    shared) is refused with AccessDenied naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_address(dirfd))
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        return None  # nobody listens: no socket file, or a dead coordinator's
    except PermissionError:
        sock.close()
        try:
            owner = private.who(os.lstat(socket_address(dirfd)).st_uid)
        except OSError:
            owner = "another user"
        raise AccessDenied(f"{where} belongs to {owner}, and {private.who(os.geteuid())} "
                           "may not use it: is this someone else's repository?") from None
    except socket.timeout:
        sock.close()
        raise CoordinatorError(f"the coordinator at {where} did not accept a connection in "
                               f"{timeout:g} s") from None
    pid, uid = peer(sock)
    if uid != os.geteuid():
        sock.close()
        raise AccessDenied(f"{where} is served by {private.who(uid)} (pid {pid}), not by "
                           f"{private.who(os.geteuid())}: nothing was sent to it. Another "
                           "user's process holds the repository's socket; stop it, or "
                           "remove the socket file")
    return sock


def serving(dirfd: int, where: str, timeout: float) -> bool:
    """Whether a coordinator of ours listens on the repository's socket."""
    sock = connect(dirfd, where, timeout)
    if sock is None:
        return False
    sock.close()
    return True


def peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a local socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    return pid, uid


def error_of(reply: dict) -> MonotoneError:
    cls = getattr(errors, reply.get("type", ""), MonotoneError)
    if not (isinstance(cls, type) and issubclass(cls, MonotoneError)):
        cls = MonotoneError
    return cls(reply["error"])
