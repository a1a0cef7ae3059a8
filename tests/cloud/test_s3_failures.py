"""S3 failing under the engine: server errors (5xx) from a proxy in front of the
real server, and the server gone. Each fails its command with a clear error
naming the cloud, loses nothing, and the same command works once S3 does."""
from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from readback import read_all

from cloud.clouds import ACCESS, SECRET, Backend
from cloud.test_cloud_crashes import settled, want
from cloud.test_conformance import STEP, events, open_db, places, setup_cloud
from monotone.errors import MonotoneError

_ERROR = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
          b"<Message>We encountered an internal error. Please try again.</Message></Error>")


class FaultyProxy(ThreadingHTTPServer):
    """Forwards every request to the S3 server, except that while `fail` names a
    method, requests of that method get a 500 InternalError."""
    daemon_threads = True

    def __init__(self, target: str) -> None:
        self.target = urllib.parse.urlsplit(target)
        self.fail: str | None = None
        self.failed = 0
        super().__init__(("127.0.0.1", 0), _Forward)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _any(self) -> None:
        proxy: FaultyProxy = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if proxy.fail == self.command:
            proxy.failed += 1
            self.send_response(500)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(_ERROR)))
            self.end_headers()
            self.wfile.write(_ERROR)
            return
        conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=30)
        try:
            conn.request(self.command, self.path, body, dict(self.headers))
            reply = conn.getresponse()
            data = reply.read()
        finally:
            conn.close()
        self.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                    "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any


@pytest.fixture
def proxy(s3):
    p = FaultyProxy(s3.url)
    yield p
    p.stop()


def test_server_errors_fail_the_command_and_a_retry_works(repo, s3, proxy):
    backend = Backend("s3", f"type 's3', url '{proxy.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}'", s3)
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.write(events(0, STEP))
    proxy.fail = "PUT"
    with pytest.raises(MonotoneError, match="cloud 'c'") as failed:
        db.execute("REFRESH PARTITION 0")
    assert proxy.failed and SECRET not in str(failed.value)
    assert places(db) == {0: (True, False)}
    settled(repo, backend, uuid, db)
    proxy.fail = None
    db.execute("UPLOAD PARTITION 0")
    db.execute("DROP PARTITION 0 ON STORAGE")
    assert places(db) == {0: (False, True)}
    proxy.fail = "GET"
    with pytest.raises(MonotoneError, match="cloud 'c'"):
        read_all(db)
    with pytest.raises(MonotoneError, match="cloud 'c'"):
        db.execute("DOWNLOAD PARTITION 0")
    settled(repo, backend, uuid, db)
    proxy.fail = None
    assert read_all(db) == want(events(0, STEP))
    db.execute("DOWNLOAD PARTITION 0")
    assert places(db) == {0: (True, True)}
    db.close()


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_s3_server_down(repo, s3):
    """Uploads and cold reads fail with a clear error while the server is away;
    nothing is lost, and the same commands work once it is back."""
    backend = Backend("s3", f"type 's3', url '{s3.url}', access_key 'k', secret_key "
                            "'hidden-secret'", s3)
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.write(events(0, 2 * STEP))
    db.execute(f"REFRESH PARTITION {STEP}")
    db.execute(f"ALTER CLOUD c SET (url 'http://127.0.0.1:{_closed_port()}')")
    with pytest.raises(MonotoneError, match="cloud 'c'") as failed:
        db.execute("REFRESH PARTITION 0")
    assert "hidden-secret" not in str(failed.value)
    with pytest.raises(MonotoneError, match="cloud 'c'"):
        read_all(db)  # partition STEP lives in the cloud only
    assert places(db) == {0: (True, False), STEP: (False, True)}
    db.execute(f"ALTER CLOUD c SET (url '{s3.url}')")
    db.execute("UPLOAD PARTITION 0")
    assert read_all(db) == want(events(0, 2 * STEP))
    settled(repo, backend, uuid, db)
    db.close()


def test_drop_on_cloud_while_the_cloud_is_away_is_finished_after_a_reopen(repo, s3):
    backend = Backend("s3", f"type 's3', url '{s3.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}'", s3)
    db = open_db(repo)
    uuid = setup_cloud(db, backend, "cloud_drop_local false")
    db.write(events(0, 10))
    db.execute("REFRESH PARTITION 0")
    db.execute(f"ALTER CLOUD c SET (url 'http://127.0.0.1:{_closed_port()}')")
    with pytest.raises(MonotoneError, match="cloud .c."):
        db.execute("DROP PARTITION 0 ON CLOUD")
    assert places(db) == {0: (True, False)}
    assert backend.objects(repo, uuid) == ["00000000000000000000"]  # reported, kept
    db.execute(f"ALTER CLOUD c SET (url '{s3.url}')")
    db.close()
    db = open_db(repo)
    settled(repo, backend, uuid, db)
    assert read_all(db) == want(events(0, 10))
    db.close()
