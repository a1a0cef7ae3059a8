"""moto's S3 server as a subprocess on 127.0.0.1, with its request log.

For the tests and `monotone bench --cloud`: a real S3 endpoint on loopback.
Its request log (werkzeug's access lines on its stderr) is read by a thread
into S3Server.requests, so a caller can count the requests something made;
sync() makes a marker request and waits for its line, after which every
earlier request is in the list. reset() empties the server.
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid as uuidlib

_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/[0-9.]+')


class S3Server:
    def __init__(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str]] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if not self.ready.wait(60):
            self.stop()
            raise RuntimeError("moto's S3 server did not start (pip install 'moto[server]')")

    def _read(self) -> None:
        for line in self.proc.stderr:
            if "Running on" in line:
                self.ready.set()
            m = _LINE.search(line)
            if m:
                with self.cond:
                    self.requests.append((m.group(1), m.group(2)))
                    self.cond.notify_all()
        self.ready.set()

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset",
                                                      method="POST")).read()
        self.sync()
        with self.cond:
            self.requests.clear()

    def sync(self) -> None:
        """Wait until every request made so far is in self.requests."""
        marker = f"/moto-api/marker-{uuidlib.uuid4().hex}"
        try:
            urllib.request.urlopen(f"{self.url}{marker}").read()
        except urllib.error.HTTPError:
            pass  # an unknown path: what matters is its line in the log
        with self.cond:
            if not self.cond.wait_for(lambda: any(p == marker for _, p in self.requests), 30):
                raise RuntimeError("moto server log did not show the marker request")
            self.requests[:] = [r for r in self.requests if r[1] != marker]

    def count(self, method: str, prefix: str = "") -> int:
        self.sync()
        with self.cond:
            return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
