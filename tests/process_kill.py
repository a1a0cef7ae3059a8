"""kill -9 of a process, and waiting until it is gone."""
from __future__ import annotations

import os
import select
import signal


def wait_dead(pid, timeout=60.0):
    """Block until process pid has exited (a pidfd becomes readable when it does)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"process {pid} did not exit"
    finally:
        os.close(fd)


def kill9(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_dead(pid)
