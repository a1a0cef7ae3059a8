"""A TCP proxy on loopback that answers each HTTP request late, by a fixed delay.

For `monotone bench --cloud --latency`: in front of an S3 endpoint, each request
waits as with a far-away object store (tens of milliseconds to the first byte,
then the body at full speed). Of HTTP it knows only that a client speaks, then
the server answers: the first bytes from upstream after the client sent some (a
turnaround) are held until `delay` seconds have passed since the request's first
bytes went through. One upstream connection and two threads per client connection,
so keep-alive connections and many at once need nothing more.
"""
from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

_CHUNK = 256 * 1024
_JOIN = 5.0  # seconds stop() waits for a pump once it has shut every socket down
_CONNECT = 10.0  # seconds to connect upstream: what stop() may wait for the accept loop


class _Connection:
    """A client's connection and its upstream one: what their two pumps share."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.asked_at: float | None = None  # when the unanswered request's first bytes passed
        self.continued = False  # the server said 100 Continue: the body is the same request
        self.pumps = 2

    def shutdown(self) -> None:
        """Wake both pumps: whatever blocks on either socket returns or fails."""
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected any more


class LatencyProxy:
    """http://127.0.0.1:<port> in front of url's host and port, delay seconds late.

    counts() gives the requests (turnarounds) and the bytes each way so far;
    diff two of them around what is measured. timeout bounds every wait on a
    socket: an idle or stuck connection is closed after it."""

    def __init__(self, url: str, delay: float = 0.0, timeout: float = 60.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"latency proxy: {url!r} is not an http:// endpoint (a TCP "
                             "proxy cannot stand in front of TLS)")
        self.target = (parts.hostname, parts.port or 80)
        self.delay, self.timeout = delay, timeout
        self._lock = threading.Lock()
        self._counts = {"requests": 0, "bytes_up": 0, "bytes_down": 0}
        self._connections: set[_Connection] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(1.0)  # how often the accept loop looks at _stopping
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, daemon=True,
                                          name=f"latency-proxy-{self.port}")
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, int]:
        """requests, bytes_up (client to server) and bytes_down so far."""
        with self._lock:
            return dict(self._counts)

    snapshot = counts

    def stop(self) -> None:
        """Close the listening socket and every connection, and join every thread."""
        self._stopping.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        self._acceptor.join()  # bounded by the accept timeout and _CONNECT
        self._listener.close()
        with self._lock:
            connections, threads = list(self._connections), list(self._threads)
        for conn in connections:
            conn.shutdown()
        for thread in threads:
            thread.join(_JOIN)

    def __enter__(self) -> LatencyProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was shut down by stop()
            try:
                upstream = socket.create_connection(self.target, timeout=_CONNECT)
            except OSError:
                client.close()  # the client sees its connection closed, as with no server
                continue
            for sock in (client, upstream):
                sock.settimeout(self.timeout)
                # the delay is the only one: no Nagle holding back small writes
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(client, upstream)
            with self._lock:
                self._connections.add(conn)
                # pumps that ended are let go here, not by themselves: one that took
                # itself out would still be running when stop() joins the others
                self._threads = {t for t in self._threads if t.is_alive()}
                for pump in (self._up, self._down):
                    thread = threading.Thread(target=pump, args=(conn,), daemon=True,
                                              name=f"latency-proxy-{self.port}-{pump.__name__}")
                    self._threads.add(thread)
                    thread.start()

    def _up(self, conn: _Connection) -> None:
        """Client to upstream; the first bytes after an answer begin a request."""
        try:
            while data := conn.client.recv(_CHUNK):
                with self._lock:
                    if conn.asked_at is None:
                        conn.asked_at = time.monotonic()
                        self._counts["requests"] += not conn.continued
                        conn.continued = False
                    self._counts["bytes_up"] += len(data)
                conn.upstream.sendall(data)
            conn.upstream.shutdown(socket.SHUT_WR)  # the client said all it will say
        except OSError:
            conn.shutdown()
        finally:
            self._done(conn)

    def _down(self, conn: _Connection) -> None:
        """Upstream to client; an answer's first bytes wait out the delay."""
        try:
            while data := conn.upstream.recv(_CHUNK):
                with self._lock:
                    asked_at, conn.asked_at = conn.asked_at, None
                    self._counts["bytes_down"] += len(data)
                    if asked_at is not None:
                        # a PUT with "Expect: 100-continue" (botocore's) turns around
                        # twice, each a round trip, but it is one request
                        conn.continued = data[8:13] == b" 100 "
                if asked_at is not None and self._stopping.wait(
                        self.delay - (time.monotonic() - asked_at)):
                    break
                conn.client.sendall(data)
        except OSError:
            pass
        finally:
            conn.shutdown()  # upstream closed (or failed): so does the client's side
            self._done(conn)

    def _done(self, conn: _Connection) -> None:
        with self._lock:
            conn.pumps -= 1
            if conn.pumps:
                return
            self._connections.discard(conn)
        for sock in (conn.client, conn.upstream):
            sock.close()
