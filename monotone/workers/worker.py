"""A worker process: runs the jobs the coordinator hands it (merges, cloud
transfers), one at a time.

It talks to the coordinator over one end of a socket pair (length-prefixed
JSON, as clients do) and exits when the coordinator closes it or dies.
"""
from __future__ import annotations

import faulthandler
import gc
import logging
import os
import socket
import sys

from monotone import protocol
from monotone.boundary import ShmError, translate
from monotone.errors import MonotoneError
from monotone.partition import merger
from monotone.repository import Layout
from monotone.shm.locks import ATTACHED, LockFile
from monotone.shm.memtable import MemtableCache

from . import transfer

# Merges are background work: they take the CPU writers leave over, so a busy
# machine keeps ingesting at full speed and memtables absorb the backlog
# (mm_limit bounds it).
NICE = 19


def main() -> int:
    faulthandler.enable()  # a crash leaves its traceback in the repository log (stderr)
    handler = logging.StreamHandler(sys.stderr)  # stderr is the repository log
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    logging.getLogger("monotone").addHandler(handler)
    logging.getLogger("monotone").setLevel(logging.INFO)
    base, fd = sys.argv[1], int(sys.argv[2])
    conn = socket.socket(fileno=fd)
    names = protocol.recv(conn)  # the segment names' token and key: first, from the pool
    if names is None:
        return 0
    layout = Layout(base, names["token"], bytes.fromhex(names["key"]))
    locks = LockFile(layout.lock)
    locks.lock(ATTACHED, exclusive=False)  # a later coordinator waits for us to finish
    os.nice(NICE)
    memtables = MemtableCache(layout.memtable)
    gc.collect()
    gc.freeze()  # what start-up made lives on: collections pass over what jobs make
    try:
        while True:
            message = protocol.recv(conn)
            if message is None:
                return 0
            merge = message.get("kind") == "MergeJob"
            job = merger.MergeJob.from_json(message["job"]) if merge else \
                transfer.TransferJob.from_json(message["job"])
            try:
                meta = merger.run(job, memtables) if merge else transfer.run(job)
                reply = {"ok": True, "meta": meta}
            except (MonotoneError, ShmError) as e:
                e = translate(e) if isinstance(e, ShmError) else e
                reply = {"ok": False, "error": str(e), "type": type(e).__name__}
            except OSError as e:
                reply = {"ok": False, "error": f"{e.strerror or e}: {e.filename or ''}",
                         "type": "MonotoneError"}
            finally:
                if merge:
                    memtables.forget(job.frozen)
            protocol.send(conn, reply)
    except (OSError, KeyboardInterrupt):
        return 0
    finally:
        memtables.close()


if __name__ == "__main__":
    sys.exit(main())
