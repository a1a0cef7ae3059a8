"""The monotone prompt on a pseudo-terminal, for tests that type at it."""
from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time

from conftest import ROOT


class Terminal:
    """`monotone REPO` on a pseudo-terminal. front: folders put first on its
    PYTHONPATH (a stand-in package, say); env: more of its environment."""

    def __init__(self, repo: str, front: list[str] = (), **env: str) -> None:
        environ = dict(os.environ, TERM="xterm", COLUMNS="120", LINES="40",
                       PROMPT_TOOLKIT_NO_CPR="1",
                       PYTHONPATH=os.pathsep.join([*front, ROOT,
                                                   os.environ.get("PYTHONPATH", "")]))
        environ.update(env)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(sys.executable, [sys.executable, "-m", "monotone.scripts.cli", repo],
                      environ)
        self.seen = b""

    def until(self, text: bytes, timeout: float = 60) -> None:
        """Read until the terminal shows text (AssertionError past the deadline)."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"waited for {text!r}; the terminal shows {self.seen[-600:]!r}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    self.seen += os.read(self.fd, 65536)
                except OSError:
                    break

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def quit(self) -> None:
        """Type quit; the prompt must exit with status 0."""
        self.type(b"quit\r")
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        assert os.waitstatus_to_exitcode(status) == 0, self.seen[-600:]

    def close(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        os.close(self.fd)

    def __enter__(self) -> "Terminal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
