"""A fault-injecting HTTP proxy in front of the S3 server, for the tests.

FaultProxy listens on 127.0.0.1:<ephemeral> and forwards each request to the
target (the moto S3 server), one thread per client connection, stdlib only.
Clients keep their connection to the proxy alive; the proxy opens one upstream
connection per request (moto closes each anyway). Request bodies may come with
a Content-Length or chunked (forwarded chunked); 'Expect: 100-continue' is
answered by the proxy itself, only once something wants the body, so a fault
can leave a body unsent. Response bodies are read whole from upstream, then
sent with a Content-Length.

What happens to a request is decided by rules, first match wins, requests that
match none are passed:

    proxy.set("status", 503, count=2)             # the next 2 requests: 503 SlowDown
    proxy.set("status", 500, method="PUT")         # every PUT: 500 InternalError
    proxy.set(BlackHole(), method="GET", path="/bucket/key")
    proxy.add("reset_mid_body", method="GET")      # add a rule after the others
    proxy.clear()                                  # pass everything again

set() replaces the rules, add() appends one; both return the Rule (its
`applied` and `remaining` counts). A fault is a name in FAULTS with its
arguments, an instance of one of the classes below, or any callable taking an
Exchange. A new kind of fault is a small class or function using Exchange:

    def reply_twice_as_slow(ex):        # ex.method, ex.path, ex.headers
        answer = ex.forward()           # the upstream Response (status, headers, body)
        ex.sleep(0.5)                   # False once the proxy stops
        ex.reply(answer)                # or send_head/send_body, then reset() or close()

Counters, under proxy.lock (a Condition, notified whenever one changes; wait()
waits on it): `seen` (requests per method), `applied` (requests per fault
name, passes not counted), `log` (a Seen per request: method, path, fault
name, headers), `connections` (accepted), `held` (connections a black hole
holds now), `errors` (exceptions of the proxy itself, not of clients going
away: the fixture fails the test on any). release() ends the current holds;
stop() closes every socket and joins every thread.
"""
from __future__ import annotations

import fcntl
import http.client
import socket
import struct
import termios
import threading
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from xml.sax.saxutils import escape

import pytest

# headers of one hop, never forwarded (the proxy frames and answers on its own)
_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                  "transfer-encoding", "upgrade", "expect", "content-length"})

_S3_ERRORS = {
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
    400: ("BadRequest", "Bad Request"),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    502: ("BadGateway", "The proxy could not reach the S3 server."),
}


class UpstreamError(Exception):
    """The S3 server behind the proxy could not be reached or answered badly."""


@dataclass
class Response:
    """An answer: the upstream one (Exchange.forward) or a made-up one."""
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def s3_error(status: int, code: str | None = None, message: str | None = None,
             resource: str = "") -> Response:
    """An S3 error answer: <Error><Code>SlowDown</Code>... for 503 and so on."""
    default_code, default_message = _S3_ERRORS.get(status, ("InternalError", "Error"))
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
            f"<Code>{escape(code or default_code)}</Code>"
            f"<Message>{escape(message or default_message)}</Message>"
            f"<Resource>{escape(resource)}</Resource>"
            "<RequestId>FAULTPROXY</RequestId></Error>").encode()
    return Response(status, HTTPStatus(status).phrase,
                    [("Content-Type", "application/xml"), ("x-amz-request-id", "FAULTPROXY")],
                    body)


# -- the faults ---------------------------------------------------------------------------

FAULTS: dict[str, Callable[..., Callable[[Exchange], None]]] = {}


def register(name: str):
    """Class decorator: the fault kind is FAULTS[name], and its instances are named so."""
    def deco(cls):
        cls.name = name
        FAULTS[name] = cls
        return cls
    return deco


def _cut(length: int, keep: int | None) -> int:
    """Bytes of a body of `length` to send before cutting it short (at least one is not)."""
    n = length // 2 if keep is None else keep
    return max(0, min(n, length - 1))


class Fault:
    """Base of the fault kinds: __call__(ex) answers (or not) the request of ex."""
    name = "fault"
    connection_level = False   # True: applied on accept, before anything is read

    def __call__(self, ex: Exchange) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


@register("pass")
class Pass(Fault):
    """Forward faithfully."""

    def __call__(self, ex: Exchange) -> None:
        ex.reply(ex.forward())


@register("black_hole")
class BlackHole(Fault):
    """Never answer: hold the connection open until release() or stop().

    read: "all" reads the whole request first (sending '100 Continue' when
    asked), "head" its request line and headers only, "none" nothing at all:
    the connection is held as it is accepted (so method and path filters
    cannot apply, and a client's already open keep-alive connections are not
    affected). after: what release() does to a held connection, "close" it
    (FIN) or "pass" the request on as if nothing happened."""

    def __init__(self, read: str = "all", after: str = "close") -> None:
        if read not in ("all", "head", "none") or after not in ("close", "pass"):
            raise ValueError(f"black_hole: read {read!r}, after {after!r}")
        self.read, self.after = read, after

    @property
    def connection_level(self) -> bool:  # type: ignore[override]
        return self.read == "none"

    def __call__(self, ex: Exchange) -> None:
        if self.read == "all":
            ex.body()
        if ex.hold() and self.after == "pass":
            ex.reply(ex.forward())
        else:
            ex.close()


@register("delay")
class Delay(Fault):
    """A slow endpoint: wait `seconds`, forward, then send the answer's body
    `chunk` bytes every `every` seconds (chunk 0: all at once)."""

    def __init__(self, seconds: float = 0.0, chunk: int = 0, every: float = 0.0) -> None:
        self.seconds, self.chunk, self.every = seconds, chunk, every

    def __call__(self, ex: Exchange) -> None:
        if self.seconds and not ex.sleep(self.seconds):
            return ex.close()
        answer = ex.forward()
        ex.send_head(answer)
        body = answer.body if ex.method != "HEAD" else b""
        step = self.chunk or len(body) or 1
        for at in range(0, len(body), step):
            if at and self.every and not ex.sleep(self.every):
                return ex.close()
            ex.send_body(body[at:at + step])


def trickle(chunk: int, every: float) -> Delay:
    """The answer's body `chunk` bytes every `every` seconds."""
    return Delay(0.0, chunk, every)


@register("reset_mid_body")
class ResetMidBody(Fault):
    """Send the status line, the headers (the full Content-Length) and `keep`
    bytes of the body (default half), then reset the connection (RST). An
    answer without a body is not sent at all: just the reset."""

    def __init__(self, keep: int | None = None) -> None:
        self.keep = keep

    def __call__(self, ex: Exchange) -> None:
        answer = ex.forward()
        if ex.method != "HEAD" and answer.body:
            ex.send_head(answer)
            ex.send_body(answer.body[:_cut(len(answer.body), self.keep)])
        ex.reset()


@register("truncate_body")
class TruncateBody(Fault):
    """Send the headers (the full Content-Length) and `keep` bytes of the body
    (default half), then close the connection cleanly (FIN)."""

    def __init__(self, keep: int | None = None) -> None:
        self.keep = keep

    def __call__(self, ex: Exchange) -> None:
        answer = ex.forward()
        ex.send_head(answer)
        if ex.method != "HEAD":
            ex.send_body(answer.body[:_cut(len(answer.body), self.keep)])
        ex.close()


@register("status")
class Status(Fault):
    """Answer with an S3 error (500 InternalError, 503 SlowDown, or `code` and
    `message` given) without forwarding; the connection stays usable."""

    def __init__(self, status: int = 500, code: str | None = None,
                 message: str | None = None) -> None:
        self.status, self.code, self.message = status, code, message

    def __call__(self, ex: Exchange) -> None:
        ex.body()
        ex.reply(s3_error(self.status, self.code, self.message,
                          urllib.parse.urlsplit(ex.path).path))


@register("reset")
class Reset(Fault):
    """Read the request, then reset the connection (RST) without an answer;
    forward=True passes it on first (the server did it, the answer is lost)."""

    def __init__(self, forward: bool = False) -> None:
        self.forward = forward

    def __call__(self, ex: Exchange) -> None:
        if self.forward:
            ex.forward()
        else:
            ex.body()
        ex.reset()


@register("reset_mid_request")
class ResetMidRequest(Fault):
    """Read `keep` bytes of the request body (default half; '100 Continue'
    sent when asked), then reset the connection: an upload cut off."""

    def __init__(self, keep: int | None = None) -> None:
        self.keep = keep

    def __call__(self, ex: Exchange) -> None:
        ex.read_body_part(_cut(ex.content_length(), self.keep))
        ex.reset()


# -- one request ------------------------------------------------------------------------

def _unsent(sock: socket.socket) -> int:
    """Bytes sent on sock and not yet acknowledged by the peer (Linux SIOCOUTQ)."""
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return struct.unpack("i", buf)[0]


class Exchange:
    """A request in the proxy, and the means for a fault to answer it."""

    def __init__(self, handler: _Handler) -> None:
        self._h = handler
        self.proxy: FaultProxy = handler.server
        self.method: str = handler.command
        self.path: str = handler.path
        self.headers: Message = handler.headers
        self.chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        self._body: bytes | None = None
        self._read = 0            # bytes of a Content-Length body read so far
        self._continued = False
        self._answer: Response | None = None
        self.open = True          # False once reset() or close()
        self.answered = False

    # the request

    def content_length(self) -> int:
        return int(self.headers.get("Content-Length") or 0)

    def has_body(self) -> bool:
        return self.chunked or self.content_length() > 0

    def _continue(self) -> None:
        if not self._continued:
            self._continued = True
            if self.headers.get("Expect", "").lower() == "100-continue":
                self._h.send_response_only(100)
                self._h.end_headers()

    def read_body_part(self, n: int) -> bytes:
        """Up to n more bytes of a Content-Length body."""
        self._continue()
        n = min(n, self.content_length() - self._read)
        data = self._h.rfile.read(n) if n > 0 else b""
        if len(data) < n:
            raise ConnectionError("the client closed its connection in the request body")
        self._read += len(data)
        return data

    def body(self) -> bytes:
        """The request body, read whole (once)."""
        if self._body is None:
            if self.chunked:
                self._continue()
                self._body = _read_chunked(self._h.rfile)
            else:
                if self._read:
                    raise RuntimeError("part of the body was read already")
                self._body = self.read_body_part(self.content_length())
        return self._body

    @property
    def body_read(self) -> bool:
        return self._body is not None or not self.has_body()

    # upstream

    def forward(self) -> Response:
        """The upstream answer to the request (asked once)."""
        if self._answer is None:
            body = self.body()
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP]
            if self.chunked:
                headers.append(("Transfer-Encoding", "chunked"))
            elif body or "Content-Length" in self.headers:
                headers.append(("Content-Length", str(len(body))))
            self._answer = self.proxy._upstream(self.method, self.path, headers, body,
                                                self.chunked)
        return self._answer

    # answering

    def send_head(self, answer: Response) -> None:
        """The status line and headers of answer, its Content-Length that of its
        whole body (a HEAD's: the upstream one)."""
        h = self._h
        h.send_response_only(answer.status, answer.reason)
        for k, v in answer.headers:
            if k.lower() not in _HOP:
                h.send_header(k, v)
        if self.method == "HEAD":
            h.send_header("Content-Length",
                          answer.header("Content-Length") or str(len(answer.body)))
        elif answer.status not in (204, 304):
            h.send_header("Content-Length", str(len(answer.body)))
        if h.close_connection:
            h.send_header("Connection", "close")
        h.end_headers()
        self.answered = True

    def send_body(self, data: bytes) -> None:
        if data:
            self._h.wfile.write(data)

    def reply(self, answer: Response) -> None:
        """Answer whole; the connection stays usable."""
        self.send_head(answer)
        if self.method != "HEAD":
            self.send_body(answer.body)

    def close(self) -> None:
        """End the connection cleanly (FIN) after what was sent."""
        if self.open:
            self.open = False
            try:
                self._h.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def reset(self) -> None:
        """End the connection with a reset (RST), once what was sent has arrived."""
        if not self.open:
            return
        self.open = False
        sock = self._h.connection
        try:
            deadline = time.monotonic() + 2
            while _unsent(sock) and time.monotonic() < deadline and not self.proxy.stopping:
                time.sleep(0.001)  # only on a client that does not read its socket
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # the socket closes for real (and so resets) once its file objects are closed too
        self._h.rfile.close()
        self._h.wfile.close()
        sock.close()

    # waiting

    def hold(self) -> bool:
        """Wait until release() (True) or stop() (False)."""
        return self.proxy._hold()

    def sleep(self, seconds: float) -> bool:
        """Wait seconds; False if the proxy stops meanwhile."""
        return self.proxy._sleep(seconds)


def _read_chunked(rfile) -> bytes:
    parts = []
    while True:
        line = rfile.readline(65537)
        if not line.endswith(b"\n"):
            raise ConnectionError("the client closed its connection in a chunked body")
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers, dropped
            return b"".join(parts)
        data = rfile.read(size)
        if len(data) < size or rfile.readline(65537) not in (b"\r\n", b"\n"):
            raise ConnectionError("the client closed its connection in a chunked body")
        parts.append(data)


# -- rules ------------------------------------------------------------------------------

@dataclass
class Rule:
    """A fault for the requests matching method (any of) and path (a substring of
    the request target), `remaining` times (None: for ever)."""
    fault: Callable[[Exchange], None]
    methods: frozenset[str] | None = None
    path: str | None = None
    remaining: int | None = None
    applied: int = 0

    @property
    def name(self) -> str:
        return getattr(self.fault, "name", None) or getattr(self.fault, "__name__", "fault")

    @property
    def connection_level(self) -> bool:
        return bool(getattr(self.fault, "connection_level", False))

    def matches(self, method: str, path: str) -> bool:
        return ((self.methods is None or method in self.methods)
                and (self.path is None or self.path in path))


@dataclass
class Seen:
    method: str
    path: str
    fault: str
    headers: Message = field(repr=False)


# -- the proxy --------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # partial bodies leave at once
    server: FaultProxy

    def log_message(self, format, *args) -> None:
        pass

    def handle_expect_100(self) -> bool:
        return True  # sent by Exchange, when the body is wanted

    def handle(self) -> None:
        rule = self.server._take(None, None)
        if rule is not None:  # a black hole holding the connection unread
            if not (self.server._hold() and getattr(rule.fault, "after", "") == "pass"):
                return
        super().handle()

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > 65536:
                self.send_error(414)
                return
            if not self.parse_request():
                return
            self.server._serve(Exchange(self))
        except (OSError, ValueError):   # the client went away, or stop()
            self.close_connection = True


class FaultProxy:
    """A forwarding HTTP proxy on 127.0.0.1 in front of target, with faults."""

    def __init__(self, target: str, upstream_timeout: float = 30.0) -> None:
        split = urllib.parse.urlsplit(target)
        self.target = (split.hostname or "127.0.0.1", split.port or 80)
        self.upstream_timeout = upstream_timeout
        self.lock = threading.Condition()
        self.rules: list[Rule] = []
        self.seen: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self.log: list[Seen] = []
        self.errors: list[str] = []
        self.connections = 0
        self.held = 0
        self.stopping = False
        self._generation = 0
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._acceptor = threading.Thread(target=self._accept, name=f"faultproxy-{self.port}",
                                          daemon=True)
        self._acceptor.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # the rules

    def _rule(self, fault, args, params, method, path, count) -> Rule:
        if isinstance(fault, str):
            fault = FAULTS[fault](*args, **params)
        elif args or params:
            raise TypeError("arguments are for a fault given by name")
        if isinstance(method, str):
            method = [method]
        methods = frozenset(m.upper() for m in method) if method is not None else None
        if count is not None and count < 1:
            raise ValueError(f"count {count}: a rule applies at least once (None: for ever)")
        rule = Rule(fault, methods, path, count)
        if rule.connection_level and (methods or path):
            raise ValueError(f"{rule.name} applies on accept: no method or path to match")
        return rule

    def set(self, fault: str | Callable[[Exchange], None], *args,
            method: str | Iterable[str] | None = None, path: str | None = None,
            count: int | None = None, **params) -> Rule:
        """The fault (a FAULTS name with its arguments, or a callable) for the
        requests matching method and path, the next count of them (None: all)."""
        rule = self._rule(fault, args, params, method, path, count)
        with self.lock:
            self.rules = [rule]
            self.lock.notify_all()
        return rule

    def add(self, fault: str | Callable[[Exchange], None], *args,
            method: str | Iterable[str] | None = None, path: str | None = None,
            count: int | None = None, **params) -> Rule:
        """As set(), after the rules there are."""
        rule = self._rule(fault, args, params, method, path, count)
        with self.lock:
            self.rules.append(rule)
            self.lock.notify_all()
        return rule

    def clear(self) -> None:
        """Pass everything from now on (held connections stay held: release())."""
        with self.lock:
            self.rules = []
            self.lock.notify_all()

    def _take(self, method: str | None, path: str | None) -> Rule | None:
        """The rule for a request (method None: for a connection just accepted)."""
        with self.lock:
            for rule in self.rules:
                if rule.connection_level != (method is None):
                    continue
                if method is not None and not rule.matches(method, path or ""):
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.rules.remove(rule)
                rule.applied += 1
                self.applied[rule.name] += 1
                self.lock.notify_all()
                return rule
            return None

    # waiting

    def release(self) -> None:
        """End the holds of the black holes holding a connection now."""
        with self.lock:
            self._generation += 1
            self.lock.notify_all()

    def wait(self, predicate: Callable[[FaultProxy], bool], timeout: float = 10.0) -> bool:
        """Wait until predicate(self) holds (checked whenever a counter changes)."""
        with self.lock:
            return self.lock.wait_for(lambda: predicate(self), timeout)

    def _hold(self) -> bool:
        with self.lock:
            generation = self._generation
            self.held += 1
            self.lock.notify_all()
            try:
                self.lock.wait_for(lambda: self.stopping or self._generation != generation)
                return not self.stopping
            finally:
                self.held -= 1
                self.lock.notify_all()

    def _sleep(self, seconds: float) -> bool:
        with self.lock:
            return not self.lock.wait_for(lambda: self.stopping, seconds)

    # serving

    def _track(self, sock: socket.socket) -> bool:
        with self.lock:
            if self.stopping:
                return False
            self._sockets.add(sock)
            return True

    def _untrack(self, sock: socket.socket) -> None:
        with self.lock:
            self._sockets.discard(sock)
        sock.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self._listener.accept()
            except OSError:
                return  # stop(): the listener was shut down
            with self.lock:
                if self.stopping:
                    sock.close()
                    return
                self.connections += 1
                thread = threading.Thread(target=self._connection, args=(sock, address),
                                          name=f"faultproxy-{self.port}-{self.connections}",
                                          daemon=True)
                self._sockets.add(sock)
                self._threads.add(thread)
                self.lock.notify_all()
            thread.start()

    def _connection(self, sock: socket.socket, address) -> None:
        try:
            _Handler(sock, address, self)
        except OSError:
            pass
        except Exception:
            with self.lock:
                self.errors.append(traceback.format_exc())
        finally:
            self._untrack(sock)
            with self.lock:
                self._threads.discard(threading.current_thread())
                self.lock.notify_all()

    def _serve(self, ex: Exchange) -> None:
        rule = self._take(ex.method, ex.path)
        with self.lock:
            self.seen[ex.method] += 1
            self.log.append(Seen(ex.method, ex.path, rule.name if rule else "pass", ex.headers))
            self.lock.notify_all()
        try:
            (rule.fault if rule else Pass())(ex)
        except UpstreamError as e:
            if ex.open and not ex.answered:
                ex._h.close_connection = True
                ex.reply(s3_error(502, message=str(e)))
            ex.close()
        except (OSError, ValueError):
            raise
        except Exception:
            with self.lock:
                self.errors.append(traceback.format_exc())
            ex.close()
        if not (ex.open and ex.answered and ex.body_read):
            ex._h.close_connection = True  # no telling where the next request starts

    def _upstream(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes,
                  chunked: bool) -> Response:
        conn = http.client.HTTPConnection(*self.target, timeout=self.upstream_timeout)
        try:
            conn.connect()
        except OSError as e:
            raise UpstreamError(f"S3 server unreachable: {e}") from e
        sock = conn.sock
        if not self._track(sock):
            conn.close()
            raise OSError("the proxy is stopping")
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            conn.endheaders(body if (body or chunked) else None, encode_chunked=chunked)
            answer = conn.getresponse()
            data = answer.read()
            return Response(answer.status, answer.reason, answer.getheaders(), data)
        except (OSError, http.client.HTTPException) as e:
            raise UpstreamError(f"S3 server failed: {e!r}") from e
        finally:
            conn.close()
            self._untrack(sock)

    # the end

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every connection (held ones too), and wait for
        every thread of the proxy to end."""
        with self.lock:
            if self.stopping and not self._acceptor.is_alive() and not self._threads:
                return
            self.stopping = True
            self.rules = []
            self.lock.notify_all()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (Linux)
        except OSError:
            pass
        self._acceptor.join(timeout)
        self._listener.close()
        with self.lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            ended = self.lock.wait_for(lambda: not self._threads, timeout)
            left = [t.name for t in self._threads]
        if not ended or self._acceptor.is_alive():
            raise RuntimeError(f"fault proxy threads still running: {left}")


@pytest.fixture
def fault_proxy(s3):
    """A FaultProxy in front of the reset S3 server (s3); stopped after the test,
    which fails if the proxy itself raised."""
    with FaultProxy(s3.url) as proxy:
        yield proxy
        assert not proxy.errors, "fault proxy errors:\n" + "\n".join(proxy.errors)
