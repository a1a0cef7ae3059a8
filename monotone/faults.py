"""The one fault-injection switch: named points in risky protocols.

Code that changes files or shared state in steps calls `point(name)` between
them. A point does nothing unless it is armed, in one of two ways:

- by configuration: `SET error_refresh_1 TO true` (and the original's other
  error_* switches) arms its point to raise InjectedError, in the process that
  runs the step (a worker gets the switches with its job);
- by the environment, for crash tests across processes:
      MONOTONE_FAULTS="write.logged:kill@3,gc.listed:delay=0.01"
  arms `write.logged` to kill the process (SIGKILL, no cleanup) the third
  time it is reached, and makes `gc.listed` wait 10 ms every time (to widen
  a race window). MONOTONE_FAULTS_ONCE=<path> makes a kill or error fire only
  once among all processes sharing the path (the first creates the file).

Every point is listed in POINTS, so a typo in a test arms nothing silently.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from .errors import InjectedError, MonotoneError

POINTS = {
    # a writer appending a batch (see writer.py)
    "write.locked": "partitions locked, nothing written",
    "write.lsn": "lsn taken, nothing written",
    "write.appended": "rows appended past the published count, WAL not written",
    "write.logged": "WAL record written, not yet marked as logged",
    "write.marked": "marked as logged, not published",
    "write.publishing": "a batch across partitions published in part",
    "write.published": "published, not cleaned up",
    # WAL files
    "wal.created": "a new WAL file created and locked, not yet under its name",
    "wal": "a WAL write (error_wal)",
    "gc.listed": "WAL gc listed the files it may delete",
    # refresh (refresh.py, partition/merger.py): the original's crash points 1..3
    "refresh.frozen": "memtable frozen, merge not started",
    "refresh_1": "new file written as <min>.incomplete (error_refresh_1)",
    "refresh_2": "renamed to <min>.complete (error_refresh_2)",
    "refresh_3": "switched over the old file, memtable not dropped (error_refresh_3)",
    "append.marked": "an append's marker <min>.append written, nothing appended",
    "append.written": "regions and index appended, not yet the footer",
    "append.footer": "an append's footer written, blocks allocated past the end not freed",
    # drop
    "drop.logged": "drop record in the WAL, partition still there",
    # recovery
    "recovery.files": "partition files recovered, WAL not replayed",
    # clouds (partition/files.py, transfer.py)
    "upload": "stub written as <min>.cloud.incomplete, object not sent (error_upload)",
    "upload.sent": "object sent, stub not yet renamed to <min>.cloud",
    "upload.done": "uploaded, the partition not yet marked as on cloud",
    "download": "object fetched as <min>.incomplete, not renamed (error_download)",
    "download.done": "downloaded, the partition not yet marked as on storage",
    "cloud.dropping": "the stub renamed to <object>.cloud.drop (retired), manifest not rewritten",
    "local.dropping": "the partition marked as cloud only, local file not removed",
}
# config switches of the original and the points they arm
SWITCHES = {"error_refresh_1": "refresh_1", "error_refresh_2": "refresh_2",
            "error_refresh_3": "refresh_3", "error_wal": "wal",
            "error_upload": "upload", "error_download": "download"}
# the original's words when an error_* switch fires
_MESSAGES = {point: f"error injection: {switch}" for switch, point in SWITCHES.items()}
ENV = "MONOTONE_FAULTS"
ONCE = "MONOTONE_FAULTS_ONCE"


@dataclass
class Armed:
    action: str          # kill | error | delay
    after: int = 1       # fires on this hit and (kill, error) only then
    seconds: float = 0.0
    hits: int = 0


def parse(text: str) -> dict[str, Armed]:
    """MONOTONE_FAULTS text -> {point: Armed}."""
    armed = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            name, how = item.split(":", 1)
            count = 1
            if "@" in how:
                how, at = how.split("@", 1)
                count = int(at)
            seconds = 0.0
            if how.startswith("delay="):
                how, seconds = "delay", float(how[len("delay="):])
        except ValueError:
            raise MonotoneError(f"{ENV}: cannot read {item!r} (expected point:kill@N, "
                                "point:error@N or point:delay=SECONDS)") from None
        if name not in POINTS:
            raise MonotoneError(f"{ENV}: unknown fault point {name!r}")
        if how not in ("kill", "error", "delay") or count < 1:
            raise MonotoneError(f"{ENV}: unknown action in {item!r}")
        armed[name] = Armed(how, count, seconds)
    return armed


_armed = parse(os.environ.get(ENV, ""))


def point(name: str, switches=()) -> None:
    """A named step boundary: fail or die here when armed.

    switches: the config switches set for the running step (names of POINTS
    armed to raise InjectedError)."""
    if name in switches:
        raise InjectedError(_MESSAGES[name])
    armed = _armed.get(name)
    if armed is None:
        return
    armed.hits += 1
    if armed.action == "delay":
        time.sleep(armed.seconds)
        return
    if armed.hits != armed.after or not _first(name):
        return
    if armed.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedError(f"fault point {name} ({ENV})")


def _first(name: str) -> bool:
    """With MONOTONE_FAULTS_ONCE, whether this process is the first to fire."""
    marker = os.environ.get(ONCE)
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


def switched(values: dict) -> frozenset[str]:
    """The points armed by the error_* switches in a config's values."""
    return frozenset(p for switch, p in SWITCHES.items() if values.get(switch))
