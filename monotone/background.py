"""A thread per process for work a writer need not wait for.

Backing and mapping the next memtable pages ahead of the writer, and syncing
and closing a rotated WAL file. Both are system calls that drop the GIL, so
they run on another core while the writer goes on with its next batches.
"""
from __future__ import annotations

import logging
import queue
import threading

log = logging.getLogger("monotone")


class Background:
    def __init__(self) -> None:
        self.jobs: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None

    def submit(self, fn, *args) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="monotone-background",
                                           daemon=True)
            self.thread.start()
        self.jobs.put((fn, args))

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                if job is None:
                    return
                fn, args = job
                fn(*args)
            except Exception:  # the job's owner checks its own outcome
                log.exception("background job failed")
            finally:
                job = fn = args = None  # hold nothing (a memtable mapping) while idle
                self.jobs.task_done()

    def close(self) -> None:
        if self.thread is not None:
            self.jobs.put(None)
            self.thread.join()
            self.thread = None
