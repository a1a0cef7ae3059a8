"""Code run as another local account: what a neighbour on the machine can do.

A Stranger runs a function in a forked child that has dropped to another uid
(setgroups, setgid, setuid). Nothing is executed, so the other account needs
no access to the interpreter or to the project (which may live under root's
home): the function runs on what the test process has imported already, and
so uses only modules imported at the top of this file or of its own. What it
returns (JSON) or raises comes back through a pipe, within a deadline.

Only root can change uid: without it, the fixtures skip the tests that need a
second account and say so. The uid is one no account uses (nothing is added
to the system); `who()` shows it as a bare number.
"""
from __future__ import annotations

import errno
import json
import os
import pwd
import select
import signal
import socket
import struct
import time
import traceback

NEEDS_ROOT = "needs root: a second local account is simulated by changing uid (setuid)"


def free_uid(start: int = 47000) -> int:
    """A uid (and gid) no account of this machine uses."""
    uid = start
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


class Stranger:
    def __init__(self, uid: int) -> None:
        self.uid = self.gid = uid
        self.background: list[Background] = []

    def _fork(self, fn, args, write: int) -> int:
        pid = os.fork()
        if pid:
            return pid
        code = 0
        try:  # the child: never returns into pytest
            os.setgroups([])
            os.setgid(self.gid)
            os.setuid(self.uid)
            result = {"ok": fn(*args)}
        except BaseException as e:  # noqa: BLE001 - everything goes back to the test
            result = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
            code = 1
        try:
            data = json.dumps(result, default=repr).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(write, view):]
        finally:
            os._exit(code)

    def run(self, fn, *args, timeout: float = 30.0):
        """fn(*args) as the stranger; its result (an exception becomes an AssertionError
        with the child's traceback)."""
        read, write = os.pipe()
        pid = self._fork(fn, args, write)
        os.close(write)
        try:
            data = _read_all(read, timeout)
        finally:
            os.close(read)
            _reap(pid)
        result = json.loads(data or b'{"error": "the stranger died"}')
        if "error" in result:
            raise AssertionError(f"as uid {self.uid}: {result['error']}\n"
                                 f"{result.get('trace', '')}")
        return result["ok"]

    def start(self, fn, *args) -> "Background":
        """fn(report, *args) as the stranger, in the background until stop(). fn calls
        report(obj) to send a line (the first one says it is ready)."""
        read, write = os.pipe()

        def body(*rest):
            def report(obj) -> None:
                os.write(write, json.dumps(obj, default=repr).encode() + b"\n")
            return fn(report, *rest)

        pid = self._fork(body, args, write)
        os.close(write)
        job = Background(pid, read)
        self.background.append(job)
        return job

    def stop_all(self) -> None:
        for job in self.background:
            job.stop()
        self.background.clear()


class Background:
    def __init__(self, pid: int, read: int) -> None:
        self.pid, self.read = pid, read
        self.buffer = b""
        self.lines: list = []

    def next(self, timeout: float = 30.0):
        """The next line the job reported (AssertionError past the deadline)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"stranger pid {self.pid} reported nothing in {timeout} s")
            ready, _, _ = select.select([self.read], [], [], left)
            if ready:
                chunk = os.read(self.read, 65536)
                if not chunk:
                    raise AssertionError(f"stranger pid {self.pid} ended: {self.buffer!r}")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        value = json.loads(line)
        self.lines.append(value)
        return value

    def stop(self) -> list:
        """Stop the job; every line it reported."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(self.pid)
            self.pid = 0
            rest = _read_all(self.read, 5.0)
            os.close(self.read)
            for line in (self.buffer + rest).splitlines():
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    break  # a line cut by the kill
        return self.lines


def _read_all(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    out = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the stranger did not finish in {timeout} s")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return out
            out += chunk


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


# what a stranger does: plain functions of stdlib calls, run by Stranger.run/start
def can_open(path: str, flags: int = os.O_RDONLY) -> str:
    """'ok', or the errno name the open failed with."""
    try:
        os.close(os.open(path, flags | os.O_NOFOLLOW))
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def loot(paths: list[str]) -> dict:
    """Every file under paths the stranger can read: {path: its bytes (latin-1)},
    and the paths it could not read, with why."""
    got, denied = {}, {}

    def take(path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            denied[path] = errno.errorcode.get(e.errno, str(e.errno))
            return
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            got[path] = b"".join(chunks).decode("latin-1")
        except OSError as e:
            denied[path] = errno.errorcode.get(e.errno, str(e.errno))
        finally:
            os.close(fd)

    for top in paths:
        if os.path.isfile(top):
            take(top)
            continue
        for root, dirs, files in os.walk(top, onerror=lambda e: denied.setdefault(
                e.filename, errno.errorcode.get(e.errno, str(e.errno)))):
            for name in files:
                take(os.path.join(root, name))
    return {"got": got, "denied": denied}


def squat(report, path: str, answer: bool) -> None:
    """Listen at path (a coordinator's socket name) and keep what clients send; with
    answer, reply to each message as a coordinator would."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o777)
    sock.listen(16)
    report({"ready": True})
    while True:
        conn, _ = sock.accept()
        conn.settimeout(1.0)
        received = b""
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk
                if answer:
                    reply = json.dumps({"ok": True, "catalog": "/x", "token": "x",
                                        "config": {}}).encode()
                    conn.sendall(struct.pack("<I", len(reply)) + reply)
        except OSError:
            pass
        report({"received": received.decode("latin-1")})
        conn.close()


def hold_locks(report, path: str, bytes_: list[int]) -> None:
    """Open a lock file (read-only is enough for a shared OFD lock) and hold shared
    locks on the given bytes, as a neighbour stalling the repository would."""
    import fcntl  # imported by the engine's lock module already
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    for byte in bytes_:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hh4xqqi4x", fcntl.F_RDLCK, 0, byte,
                                                        1, 0))
    report({"ready": True})
    while True:
        time.sleep(3600)


def keep_creating(report, path: str, flags: int) -> None:
    """Make path again and again (a file open to all), reading what lands in it."""
    report({"ready": True})
    seen = ""
    while True:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_RDWR, 0o666)
            os.fchmod(fd, 0o666)
            data = os.read(fd, 1 << 20).decode("latin-1")
            os.close(fd)
            if data and data != seen:
                seen = data
                report({"read": data})
        except OSError:
            pass
        time.sleep(0.001)


def take_names(report, pattern_dir: str, prefix: str) -> None:
    """Watch /dev/shm for a repository's segment names and take the names that would
    come next, as far as they can be guessed from the ones seen."""
    report({"ready": True})
    taken = set()
    while True:
        for name in os.listdir(pattern_dir):
            if not name.startswith(prefix) or ".mt" not in name or name in taken:
                continue  # (guesses from its own guesses would run away)
            head, _, rest = name.rpartition(".mt")
            number, _, tag = rest.partition(".")
            if not number.isdigit():
                continue
            for n in range(int(number) + 1, int(number) + 8):
                for guess in (f"{head}.mt{n}", f"{head}.mt{n}.{tag}"):
                    if guess in taken:
                        continue
                    taken.add(guess)
                    try:
                        os.close(os.open(os.path.join(pattern_dir, guess),
                                         os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666))
                        report({"took": guess})
                    except OSError:
                        pass
        time.sleep(0.002)


def flood(report, path: str, seconds: float) -> None:
    """Connect to path over and over for a while; count how each attempt ended."""
    ends: dict[str, int] = {}
    stop = time.monotonic() + seconds
    report({"ready": True})
    while time.monotonic() < stop:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            ends["connected"] = ends.get("connected", 0) + 1
        except OSError as e:
            name = errno.errorcode.get(e.errno, str(e.errno))
            ends[name] = ends.get(name, 0) + 1
        finally:
            sock.close()
    report({"ends": ends})
