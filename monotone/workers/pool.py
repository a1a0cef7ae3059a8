"""The coordinator's pool of worker processes.

Workers are separate processes (real parallelism past the GIL), each with a
socket pair to the coordinator. The coordinator keeps two pools of the same
program: `workers` for merges, `workers_upload` for cloud transfers. One
starts with the coordinator; more start on demand, up to `workers`, when jobs
wait behind the busy ones (a job waits for a worker that is busy; a second
waiting job starts a new one). Starting a worker costs about 0.15 s of CPU
(imports), which a machine busy writing feels, and one partition refreshed at
a time needs one worker. The transfer pool starts none before its first job,
and then one for every job that would wait: a transfer may wait on a slow cloud
for as long as its deadline, and the next should not wait behind it. A job's
result comes back through the coordinator's event loop. A worker that dies
fails its job (the partition keeps its frozen memtable and is refreshed again
later) and is replaced. At a close, transfers still running after a grace are
cut short (cut_short): their steps are crash-safe, and the next open resumes
them.
"""
from __future__ import annotations

import logging
import socket
import subprocess
from collections import deque
from typing import Callable

from monotone import process, protocol
from monotone.partition.merger import MergeJob
from monotone.repository import Layout

from .transfer import TransferJob

Job = MergeJob | TransferJob

log = logging.getLogger("monotone")

# called with {"ok": True, "meta": ...} or {"ok": False, "error": ...}
Done = Callable[[dict], None]


class Worker:
    def __init__(self, layout: Layout) -> None:
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            process.command("monotone.workers.worker", layout.base, str(theirs.fileno())),
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=process.environment())
        theirs.close()
        self.conn = ours
        # the segment names' token and key go this way: a command line is public
        protocol.send(ours, {"token": layout.token, "key": layout.key.hex()})
        self.job: tuple[Job, Done] | None = None

    def kill(self) -> None:
        """End it now, whatever it is doing (its job's steps are crash-safe)."""
        self.conn.close()
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.conn.close()  # the worker sees EOF and exits
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Pool:
    def __init__(self, layout: Layout, size: int, selector, eager: bool = True) -> None:
        self.layout = layout
        self.selector = selector
        self.size = size
        self.eager = eager
        self.workers: list[Worker] = [self._start()] if size and eager else []
        self.queue: deque[tuple[Job, Done]] = deque()
        self.done = 0
        self.cut: str = ""  # once set: the reason every job fails from now on

    def _start(self) -> Worker:
        worker = Worker(self.layout)
        self.selector.register(worker.conn, 1, (self, worker))
        log.info("worker %d started", worker.proc.pid)
        return worker

    def submit(self, job: Job, done: Done) -> None:
        if self.cut:
            done({"ok": False, "error": self.cut, "type": "MonotoneError"})
            return
        self.queue.append((job, done))
        self._dispatch()

    def cut_short(self, why: str) -> None:
        """Fail every job, queued or running, with why: the workers running one are
        killed (a transfer cut short is resumed at the next open, as after a crash),
        and jobs submitted from now on fail at once."""
        self.cut = why
        failed = list(self.queue)
        self.queue.clear()
        for worker in [w for w in self.workers if w.job is not None]:
            failed.append(worker.job)
            worker.job = None
            self.selector.unregister(worker.conn)
            worker.kill()
            self.workers.remove(worker)
            log.warning("worker %d killed: %s", worker.proc.pid, why)
        for _, done in failed:
            done({"ok": False, "error": why, "type": "MonotoneError"})

    def _dispatch(self) -> None:
        waiting = len(self.queue) - sum(w.job is None for w in self.workers)
        # merges: a second job waiting starts a worker (a start costs CPU); transfers:
        # the first, as one may wait on a slow cloud for as long as its deadline
        more = waiting - 1 if self.workers and self.eager else waiting
        for _ in range(min(more, self.size - len(self.workers))):
            self.workers.append(self._start())
        for worker in self.workers:
            if not self.queue:
                return
            if worker.job is None:
                job, done = self.queue.popleft()
                worker.job = (job, done)
                try:
                    protocol.send(worker.conn, {"job": job.to_json(),
                                                "kind": type(job).__name__})
                except OSError:
                    pass  # it died: its EOF comes through the selector

    def readable(self, worker: Worker) -> None:
        """A worker answered, or died."""
        reply = protocol.recv(worker.conn)
        job = worker.job
        worker.job = None
        if reply is None:
            log.error("worker %d died%s", worker.proc.pid, " during a job" if job else "")
            self.selector.unregister(worker.conn)
            worker.stop()
            self.workers.remove(worker)
            if not self.workers:
                self.workers.append(self._start())
            reply = {"ok": False, "error": "the worker running the job died",
                     "type": "MonotoneError"}
        if job is not None:
            self.done += 1
            job[1](reply)
        self._dispatch()

    def busy(self) -> int:
        return sum(w.job is not None for w in self.workers)

    def stats(self) -> dict:
        return {"workers": self.size, "started": len(self.workers), "busy": self.busy(),
                "queue": len(self.queue),
                "done": self.done, "pids": [w.proc.pid for w in self.workers]}

    def close(self) -> None:
        for worker in self.workers:
            self.selector.unregister(worker.conn)
            worker.stop()
            log.info("worker %d stopped (exit status %s)", worker.proc.pid, worker.proc.returncode)
        self.workers = []
