"""kill -9 campaigns: writers, the coordinator, workers, or all of them, at random
moments or at named points, while others write, read and refresh; and clean
closes in a loop. Every acknowledged batch must be whole and present, nothing
else, every value as written."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field

import workload
from procs import (
    ALL,
    WAIT,
    Failed,
    coordinators,
    env,
    kill9,
    leaks,
    open_repo,
    pump,
    reader,
    wait_gone,
    workers_of,
    writer,
)

from monotone import faults

# the points a kill campaign arms, and which processes reach them
WRITER_POINTS = ("write.locked", "write.lsn", "write.appended", "write.logged",
                 "write.marked", "write.publishing", "write.published", "wal.created")
SERVICE_POINTS = ("refresh.frozen", "refresh_1", "refresh_2", "refresh_3", "append.marked",
                  "append.written", "append.footer", "gc.listed", "recovery.files")
assert set(WRITER_POINTS + SERVICE_POINTS) <= set(faults.POINTS)


# kill -9 ------------------------------------------------------------------------------------


@dataclass
class Trial:
    seed: int
    kind: str                     # writer | coordinator | worker | all | point | none
    writers: int = 2
    settings: dict = field(default_factory=dict)
    refresh_wm: int = 256 * 1024
    limit: int = 150              # batches each writer writes at most
    kill_after: int = 40          # acknowledged batches (all writers) before the kill
    point: str = ""               # kind 'point': armed to kill at its n-th hit
    hit: int = 1
    spin: int = 0                 # busy loop after the trigger, to land inside a write
    reader: bool = True
    refreshes: float = 0.1        # share of batches a writer follows with a REFRESH
    refresh_after: bool = True    # refresh half the partitions some batches after the kill

    def describe(self) -> str:
        what = f"{self.point}@{self.hit}" if self.point else self.kind
        return (f"seed={self.seed} kill={what} writers={self.writers} limit={self.limit} "
                f"kill_after={self.kill_after} refresh_wm={self.refresh_wm} "
                f"refreshes={self.refreshes} {self.settings}")


KINDS = ("writer", "coordinator", "worker", "all", "point")


def make_trial(seed: int, kinds=KINDS, points=WRITER_POINTS + SERVICE_POINTS) -> Trial:
    rng = random.Random(seed)
    kind = rng.choice(kinds)
    settings = {"interval": workload.INTERVAL, "workers": rng.choice([0, 1, 2]),
                "wal_rotate_wm": rng.choice([64 * 1024, 256 * 1024, 4 << 20]),
                "wal_crc": rng.choice(["true", "false"])}
    trial = Trial(seed, kind, writers=rng.choice([1, 2, 3]), settings=settings,
                  refresh_wm=rng.choice([64 * 1024, 256 * 1024, 1 << 20]),
                  limit=rng.randint(40, 160), kill_after=rng.randint(1, 40),
                  spin=rng.choice([0, 0, rng.randint(1, 200_000)]),
                  reader=rng.random() < 0.5, refreshes=rng.choice([0.0, 0.05, 0.2]),
                  refresh_after=rng.random() < 0.7)
    if kind == "worker":
        settings["workers"] = rng.choice([1, 2])
    if kind == "point":
        trial.point = rng.choice(points)
        trial.hit = rng.randint(1, 30 if trial.point.startswith(("write", "wal")) else 4)
        if trial.point in SERVICE_POINTS:
            trial.refresh_wm = 64 * 1024  # refreshes come often
            if trial.point.startswith(("refresh_", "append.")) and not settings["workers"]:
                settings["workers"] = 1  # merges run in a worker: kill one there
    return trial


def prepare(repo: str, trial: Trial) -> None:
    db = open_repo(repo, **trial.settings)
    db.execute(f"ALTER STORAGE main SET (refresh_wm {trial.refresh_wm})")
    db.close()


def fault_env(trial: Trial, w: int, marker: str) -> dict | None:
    """MONOTONE_FAULTS for writer w: a writer's point only in writer 0; a service's
    point in every writer (whichever starts the coordinator passes it on), firing
    once among all of them."""
    if not trial.point:
        return None
    if trial.point in WRITER_POINTS and w != 0:
        return None
    return {faults.ENV: f"{trial.point}:kill@{trial.hit}", faults.ONCE: marker}


def verify(repo: str, seed: int, acked: dict[int, int], max_events: int = workload.MAX_EVENTS,
           deletes: bool = True) -> dict:
    """Open, check; refresh everything, check again; close; reopen, check (workers off)."""
    stats = None
    for step in range(2):
        db = open_repo(repo, workers=0)
        try:
            stats = workload.check(db, seed, acked, max_events)
            if step == 0:
                db.execute(ALL)
                again = workload.check(db, seed, acked, max_events)
                if again != stats:
                    raise Failed(f"a refresh changed what is read: {stats} -> {again}")
        finally:
            db.close()
    return stats


REFRESH_SOME = """
import random, sys
import monotone
repo, seed, span, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
db = monotone.Monotone()
db.open(repo)
for min_ in range(0, span, interval):
    if rng.random() < 0.5:
        try:
            db.execute(f"REFRESH PARTITION IF EXISTS {min_}")
        except monotone.MonotoneError as e:  # a worker killed under it, say
            print(e, file=sys.stderr)
db.close()
"""


def refresh_some(repo: str, seed: int) -> None:
    """Refresh a random half of the partitions, from another process: a batch's
    partitions then hold files of different ages, which is when a replay that is
    not all-or-nothing shows."""
    try:
        done = subprocess.run([sys.executable, "-c", REFRESH_SOME, repo, str(seed),
                               str(workload.SPAN), str(workload.INTERVAL)],
                              env=env(), capture_output=True, timeout=WAIT)
    except subprocess.TimeoutExpired:
        raise Failed("a REFRESH did not finish (wedged?)") from None
    if done.returncode != 0:
        raise Failed(f"refreshing failed: {done.stderr.decode(errors='replace')[-1500:]}")


def run_kill(repo: str, trial: Trial) -> dict:
    prepare(repo, trial)
    marker = os.path.join(os.path.dirname(repo), "fault-fired")
    writers = [writer(repo, w, trial.seed, trial.settings, trial.limit,
                      fault_env=fault_env(trial, w, marker), refreshes=trial.refreshes)
               for w in range(trial.writers)]
    scan = reader(repo, trial.seed) if trial.reader else None
    everyone = writers + ([scan] if scan else [])
    try:
        pump(writers, lambda: sum(w.acked for w in writers) >= trial.kill_after)
        for _ in range(trial.spin):
            pass
        coord = coordinators(repo)
        pool = [p for c in coord for p in workers_of(c)]
        if trial.kind == "writer":
            kill9([writers[0].proc.pid])
        elif trial.kind == "coordinator":
            kill9(coord)
        elif trial.kind == "worker":
            kill9(pool[:1] or coord)
        elif trial.kind == "all":
            kill9([c.proc.pid for c in everyone] + coord + pool)
        if trial.refresh_after:
            # while the others write on, files of a dead writer's partitions age apart
            pump(writers, lambda: sum(w.acked for w in writers) >= trial.kill_after + 10)
            refresh_some(repo, trial.seed)
        pump(writers, lambda: False)  # the others go on to their end
    except BaseException:
        for c in everyone:
            c.proc.kill()
        raise
    finally:
        for c in everyone:  # the reader last: closing its stdin stops it
            c.finish()
    for w in writers:
        if w.proc.returncode not in (0, -signal.SIGKILL):
            raise Failed(f"a writer failed ({w.proc.returncode}): {w.stderr[-2000:]}")
    if scan is not None and scan.proc.returncode not in (0, -signal.SIGKILL):
        raise Failed(f"the reader failed ({scan.proc.returncode}): {scan.stderr[-2000:]}")
    wait_gone(coordinators(repo))  # the last client is gone: the coordinator stops
    acked = {w_: c.acked for w_, c in enumerate(writers)}
    stats = verify(repo, trial.seed, acked)
    stats["acked"] = sum(acked.values())
    stats["scans"] = scan.scans if scan else 0
    stats["fired"] = os.path.exists(marker)
    left = leaks(repo)
    if left:
        raise Failed(f"left behind: {left}")
    return stats


# clean closes ------------------------------------------------------------------------------


def run_clean_close(repo: str, seed: int, rounds: int, batches: int = 300,
                    max_events: int = 2000, races: bool = True) -> dict:
    """One writer, default workers, refresh_wm and wal_rotate_wm of 256 KiB: write,
    close, reopen and count, round after round. With races, WAL file creation and
    WAL gc are slowed at their named points, widening the windows between them."""
    settings = {"interval": workload.INTERVAL * 10, "wal_rotate_wm": 256 * 1024}
    prepare(repo, Trial(seed, "none", settings=settings, refresh_wm=256 * 1024))
    slow = {faults.ENV: "wal.created:delay=0.002,gc.listed:delay=0.002"} if races else None
    acked: dict[int, int] = {}
    for r in range(rounds):
        w = writer(repo, r, seed, {"wal_rotate_wm": 256 * 1024}, batches, max_events, slow)
        status = w.finish()
        if status != 0 or not w.closed:
            raise Failed(f"round {r}: the writer failed ({status}): {w.stderr[-2000:]}")
        wait_gone(coordinators(repo))
        acked[r] = w.acked
        db = open_repo(repo, workers=0)
        try:
            workload.check(db, seed, acked, max_events)
        except workload.Broken as e:
            raise Failed(f"round {r}: {e}") from None
        finally:
            db.close()
    left = leaks(repo)
    if left:
        raise Failed(f"left behind: {left}")
    return {"rounds": rounds, "acked": sum(acked.values())}
