"""The latency proxy of `monotone bench --cloud`, in front of a small HTTP server."""
from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monotone.scripts.latency_proxy import LatencyProxy

DELAY = 0.05


class _Handler(BaseHTTPRequestHandler):
    """GET /<n>: n bytes; POST: the body back; /close: answers, then closes."""

    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:
        if self.path == "/close":
            self.close_connection = True
            return self._answer(b"bye")
        n = int(self.path.lstrip("/"))
        self._answer(bytes(i % 251 for i in range(n)))

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers["Content-Length"])))

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("latency-proxy")]


def _get(conn: http.client.HTTPConnection, path: str, body: bytes | None = None):
    t = time.monotonic()
    conn.request("POST" if body is not None else "GET", path, body=body)
    data = conn.getresponse().read()
    return data, time.monotonic() - t


def test_keep_alive_requests_arrive_intact_and_late(server):
    with LatencyProxy(server, DELAY) as proxy:
        before = proxy.counts()
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        sizes = [10, 1 << 20, 0, 70_000]
        for n in sizes:
            data, seconds = _get(conn, f"/{n}")
            assert data == bytes(i % 251 for i in range(n))
            assert seconds >= DELAY
        sock = conn.sock  # one connection for every request: keep-alive went through
        body = bytes(range(256)) * 1000
        data, seconds = _get(conn, "/echo", body)
        assert data == body and seconds >= DELAY and conn.sock is sock
        after = proxy.counts()
        conn.close()
    assert after["requests"] - before["requests"] == len(sizes) + 1
    assert after["bytes_down"] - before["bytes_down"] > sum(sizes) + len(body)
    assert after["bytes_up"] - before["bytes_up"] > len(body)
    assert not _proxy_threads()


def test_upstream_closing_closes_the_client(server):
    with LatencyProxy(server) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):  # ends only when the proxy closes our side
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"bye")
        assert proxy.counts()["requests"] == 1


def test_many_connections_at_once_and_stop_with_idle_ones(server):
    proxy = LatencyProxy(server, DELAY)
    conns = [http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5) for _ in range(8)]
    failures = []

    def client(conn):
        try:
            for n in (1, 1000, 100_000):
                data, seconds = _get(conn, f"/{n}")
                assert data == bytes(i % 251 for i in range(n)) and seconds >= DELAY
        except Exception as e:
            failures.append(e)
    threads = [threading.Thread(target=client, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not failures
    assert proxy.counts()["requests"] == 3 * len(conns)
    proxy.stop()  # the client connections are still open, idle between requests
    assert not _proxy_threads()
    for conn in conns:
        conn.close()


def test_expect_100_continue_is_one_request(server):
    """botocore's PUTs wait for "100 Continue" before their body: two turnarounds,
    each answered late, of one request."""
    body = b"x" * 5000
    with LatencyProxy(server, DELAY) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            reader = sock.makefile("rb")
            t = time.monotonic()
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body))
            assert reader.readline().startswith(b"HTTP/1.1 100 ")
            assert reader.readline() == b"\r\n"
            assert time.monotonic() - t >= DELAY
            sock.sendall(body)
            assert reader.readline().startswith(b"HTTP/1.1 200 ")
            while reader.readline() != b"\r\n":
                pass
            assert reader.read(len(body)) == body
            assert time.monotonic() - t >= 2 * DELAY
            reader.close()
        assert proxy.counts()["requests"] == 1
