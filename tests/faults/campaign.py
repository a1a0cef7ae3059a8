"""Fault campaigns: kill -9 at random moments and at named points, clean closes
in a loop, damaged files, fuzzed commands and arguments. Each trial checks what
a storage engine promises: every acknowledged batch whole and present, nothing
else, every value as written, no lock wedged, nothing leaked.

The tests beside this file run bounded, seeded campaigns; a long one runs with
    python tests/faults/campaign.py kill --trials 200 --seed 7
(kill | close | corrupt | ddl | args; --help for the rest).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for _path in (ROOT, HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402

import monotone  # noqa: E402
import workload  # noqa: E402
from monotone import faults  # noqa: E402
from monotone.protocol import repo_id  # noqa: E402
from monotone.shm.segment import list_segments, unlink  # noqa: E402

WAIT = 120.0  # seconds before a process that should have finished counts as wedged
ALL = "REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615"
# the points a kill campaign arms, and which processes reach them
WRITER_POINTS = ("write.locked", "write.lsn", "write.appended", "write.logged",
                 "write.marked", "write.publishing", "write.published", "wal.created")
SERVICE_POINTS = ("refresh.frozen", "refresh_1", "refresh_2", "refresh_3", "gc.listed",
                  "recovery.files")
assert set(WRITER_POINTS + SERVICE_POINTS) <= set(faults.POINTS)


class Failed(AssertionError):
    """A trial found a broken promise (or could not finish)."""


class deadline:
    """`with deadline(s):` fails the block (as wedged) if it runs longer than s seconds,
    also when it waits inside this process (a call to the repository that never returns)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        def expired(*_):
            raise Failed(f"the trial did not finish in {self.seconds:.0f} s (wedged?)")
        self.previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


def env(extra: dict | None = None) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.pop(faults.ENV, None)
    e.update(extra or {})
    return e


# processes of a repository ----------------------------------------------------------------


def _proc_info(pid: str):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return args, fields[0], int(fields[1])  # cmdline, state, ppid


def coordinators(base: str) -> list[int]:
    real = os.path.realpath(base).encode()
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        info = _proc_info(pid)
        if info and info[1] != "Z" and b"monotone.workers.coordinator" in info[0] and real in info[0]:
            out.append(int(pid))
    return out


def workers_of(coordinator: int) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        info = _proc_info(pid)
        if info and info[2] == coordinator and info[1] != "Z":
            out.append(int(pid))
    return out


def wait_gone(pids: list[int], timeout: float = WAIT) -> None:
    """Block until the processes have exited (pidfds become readable when they do)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            sel = selectors.DefaultSelector()
            sel.register(fd, selectors.EVENT_READ)
            ready = sel.select(max(0.0, deadline - time.monotonic()))
            sel.close()
            if not ready:
                raise Failed(f"process {pid} did not stop (wedged?)")
        finally:
            os.close(fd)


def kill9(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(pids)


def leaks(base: str) -> list[str]:
    """Processes and segments of the repository still there (removed, and named)."""
    found = []
    pids = coordinators(base)
    for pid in pids:
        found.append(f"coordinator {pid}")
        found.extend(f"worker {w}" for w in workers_of(pid))
    kill9(pids)
    for name in list_segments(repo_id(base)):
        found.append(f"segment {name}")
        unlink(name)
    return found


def open_repo(repo: str, **settings) -> monotone.Monotone:
    db = monotone.Monotone()
    for name, value in settings.items():
        db.execute(f"SET {name} TO {value}")
    db.open(repo)
    return db


# writer and reader processes ----------------------------------------------------------------


class Child:
    """A workload process (writer or reader) and what it printed."""

    def __init__(self, args: list[str], extra_env: dict | None = None, stdin=None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "workload.py"), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL if stdin is None else stdin, env=env(extra_env))
        self.acked = 0
        self.closed = False
        self.scans = 0
        self.stderr = ""
        self._buf = b""

    def take(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            if line.startswith(b"ack "):
                if int(line[4:]) != self.acked:
                    raise Failed(f"acknowledgements out of order: {line!r}")
                self.acked += 1
            elif line == b"closed":
                self.closed = True
            elif line.startswith(b"scans "):
                self.scans = int(line[6:])

    def finish(self) -> int:
        """Wait for the process to end and read the rest of its output; its exit status."""
        try:
            out, err = self.proc.communicate(b"" if self.proc.stdin else None, timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            self.take(out)
            raise Failed(f"process {self.proc.pid} did not finish (wedged?): "
                         f"{err.decode(errors='replace')[-1500:]}") from None
        self.take(out)
        self.stderr = err.decode(errors="replace")
        return self.proc.returncode


def writer(repo: str, w: int, seed: int, settings: dict, limit: int,
           max_events: int = workload.MAX_EVENTS, fault_env: dict | None = None,
           refreshes: float = 0.0) -> Child:
    return Child([repo, str(w), str(seed), json.dumps(settings), str(limit), str(max_events),
                  str(refreshes)], fault_env)


def reader(repo: str, seed: int, max_events: int = workload.MAX_EVENTS) -> Child:
    return Child(["read", repo, str(seed), str(max_events)], stdin=subprocess.PIPE)


def pump(children: list[Child], until, timeout: float = WAIT) -> None:
    """Read what the children print until until() holds or every one has ended."""
    sel = selectors.DefaultSelector()
    for c in children:
        if not c.proc.stdout.closed:
            sel.register(c.proc.stdout, selectors.EVENT_READ, c)
    deadline = time.monotonic() + timeout
    try:
        while not until() and sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed("writers made no progress (wedged?)")
            for key, _ in sel.select(left):
                data = os.read(key.fileobj.fileno(), 65536)
                if data:
                    key.data.take(data)
                else:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()


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
            if trial.point.startswith("refresh_") and not settings["workers"]:
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


# damaged files ---------------------------------------------------------------------------


def read_state(repo: str):
    """(ids, keys, values) of everything, with a fresh open (workers off)."""
    db = open_repo(repo, workers=0)
    try:
        return workload.read_everything(db)
    finally:
        db.close()


def build_damage_base(repo: str, seed: int) -> dict:
    """A closed repository with partition files (some encrypted or zstd), several WAL
    files and config.json, holding batches of one writer without deletes. Checksums
    are on (the default): without them damage inside an event's value cannot be
    told from the value."""
    rng = random.Random(seed)
    db = open_repo(repo, workers=0, interval=workload.INTERVAL * 10,
                   wal_rotate_wm=rng.choice([32 * 1024, 128 * 1024]))
    db.execute(f"ALTER STORAGE main SET (compression '{rng.choice(['lz4', 'zstd', 'none'])}')")
    if rng.random() < 0.4:
        db.execute("CREATE STORAGE vault (encryption 'aes', compression 'zstd')")
        db.execute("ALTER PIPELINE SET vault, main")
    gen = workload.plan(seed, 0, 200, deletes=False)
    batches = [next(gen) for _ in range(rng.randint(40, 80))]
    for i, batch in enumerate(batches):
        workload.write(db, batch)
        if i == len(batches) // 2:
            db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {workload.SPAN // 2}")
    db.close()
    return {"batches": batches}


def targets(repo: str) -> list[str]:
    out = [os.path.join(repo, "config.json")]
    for dirpath, _, files in os.walk(repo):
        for name in files:
            path = os.path.join(dirpath, name)
            if name.endswith(".wal") or name.isdigit():
                out.append(path)
    return sorted(out)


def damage(path: str, rng: random.Random) -> tuple[str, int]:
    """Damage a file at random; return (what was done, offset of the first byte hit)."""
    data = bytearray(open(path, "rb").read())
    n = len(data)
    kind = rng.choice(["flip", "flip", "flip", "flips", "truncate", "zero", "zero-tail",
                       "garbage"] if n else ["garbage"])
    if kind == "flip":
        at = rng.randrange(n)
        data[at] ^= 1 << rng.randrange(8)
    elif kind == "flips":
        spots = sorted(rng.randrange(n) for _ in range(rng.randint(2, 6)))
        for spot in spots:
            data[spot] ^= rng.randrange(1, 256)
        at = spots[0]
    elif kind == "truncate":
        at = rng.randrange(n)
        del data[at:]
    elif kind == "zero":
        at = rng.randrange(n)
        length = rng.randint(1, 64)
        data[at:at + length] = bytes(len(data[at:at + length]))
    elif kind == "zero-tail":
        at = rng.randrange(n)
        data[at:] = bytes(n - at)
    else:
        at = n
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    with open(path, "wb") as f:
        f.write(data)
    return kind, at


def run_damage(base: str, work: str, seed: int, expected) -> str:
    """One damaged file in a copy of base: the open either reads exactly what was
    written, or fails with a MonotoneError (and restoring the file gives everything
    back), or, for a WAL file, loses only whole batches recorded at or after the
    damage (a torn tail). Anything else is a broken promise."""
    rng = random.Random(seed)
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work, symlinks=True)
    victim = rng.choice(targets(work))
    original = open(victim, "rb").read()
    kind, at = damage(victim, rng)
    where = f"{os.path.relpath(victim, work)} {kind}@{at}"
    may_lose = wal_records_after(original, at) if victim.endswith(".wal") else set()
    try:
        got = read_state(work)
    except monotone.MonotoneError as e:
        if str(e).startswith("internal error") or "internal error" in str(e):
            raise Failed(f"{where}: {e}") from None
        with open(victim, "wb") as f:
            f.write(original)
        if not same(read_state(work), expected):
            raise Failed(f"{where}: after a failed open and the file restored, the data "
                         "is not what was written") from None
        leftover = leaks(work)
        if leftover:
            raise Failed(f"{where}: left behind {leftover}")
        return f"{where}: error ({type(e).__name__})"
    if same(got, expected):
        outcome = "read whole"
    else:
        lost = lost_batches(got, expected)
        if lost is None:
            raise Failed(f"{where}: wrong data returned (not just whole batches missing)")
        if not lost <= may_lose:
            raise Failed(f"{where}: lost batches not at the damaged tail: "
                         f"{sorted(lost - may_lose)[:3]}")
        outcome = f"tail cut ({len(lost)} batches)"
    leftover = leaks(work)
    if leftover:
        raise Failed(f"{where}: left behind {leftover}")
    return f"{where}: {outcome}"


def wal_records_after(original: bytes, offset: int) -> set[bytes]:
    """Keys of the batches whose records, in the undamaged WAL file, end after offset."""
    from monotone.format import wal as walfmt
    buf, pos, keys = memoryview(original), 0, set()
    while pos < len(buf):
        rec = walfmt.decode_at(buf, pos, "wal")
        if rec is None:
            break
        if pos + rec.size > offset and rec.rows is not None and len(rec.rows):
            keys.add(rec.rows.key(0))
        pos += rec.size
    return keys


def same(a, b) -> bool:
    return np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]


def lost_batches(got, expected) -> set[bytes] | None:
    """Keys of the batches missing from got, when got is expected minus whole batches."""
    want = {(i, k): v for i, k, v in zip(expected[0].tolist(), expected[1], expected[2])}
    have = {(i, k): v for i, k, v in zip(got[0].tolist(), got[1], got[2])}
    if any(want.get(key) != value for key, value in have.items()):
        return None
    missing = set(want) - set(have)
    keys = {k for _, k in missing}
    if any((i, k) in have for i, k in want if k in keys):
        return None  # a batch in part
    return keys


def run_corruption(root: str, seed: int, trials: int) -> list[str]:
    base, work = os.path.join(root, "base"), os.path.join(root, "work")
    build_damage_base(base, seed)
    expected = read_state(base)
    if leaks(base):
        raise Failed("building the repository left something behind")
    out = []
    for i in range(trials):
        out.append(run_damage(base, work, seed * 1000 + i, expected))
    return out


# fuzzed commands ------------------------------------------------------------------------------

NAMES = ["main", "s1", "s2", "hot", "cold", "c1", "x", "'quoted'", "'a b'", "'\0'", "''",
         "'\udcff'", "'é'", "TABLE", "'" + "n" * 300 + "'", "123", "-"]
VALUES = ["0", "1", "-1", "7", "1000", "18446744073709551615", "18446744073709551616",
          "99999999999999999999999", "'x'", "''", "true", "false", "'lz4'", "'zstd'", "'none'",
          "'aes'", "10KiB", "1G", "5min", "1day", "'1kb'", "'/'", "'..'", "'monotone.lock'",
          "'config.json'", "'wal'", "'s3://bucket/x'", "'\0'", "'\udc80x'", "'sub/dir'",
          "'" + "p" * 5000 + "'", "null", "(", ")", ",", "'" + "0" * 64 + "'"]
OPTIONS = ["path", "compression", "compression_level", "crc", "sync", "refresh_wm",
           "region_size", "encryption", "encryption_key", "cloud", "cloud_drop_local", "uuid",
           "type", "url", "access_key", "secret_key", "login", "password", "debug",
           "partitions", "size", "events", "duration", "bogus"]
VARS = ["interval", "compression", "compression_level", "wal_rotate_wm", "ssn", "lsn",
        "serial", "wal", "workers", "uuid", "mm_limit", "error_refresh_1", "error_wal",
        "error_refresh_3", "log", "nope", "wal_crc", "wal_recover", "mm_limit_behaviour"]
TEMPLATES = [
    "SET {var} TO {value}", "SHOW {var}", "SHOW {var}, {var}", "SHOW CONFIG", "SHOW ALL",
    "SHOW STORAGES", "SHOW STORAGE {name}", "SHOW PARTITIONS", "SHOW PARTITIONS {name}",
    "SHOW PARTITION {value}", "SHOW PARTITION {value} DEBUG", "SHOW CLOUDS", "SHOW PIPELINE",
    "SHOW WAL", "SHOW MEMORY", "SHOW WORKERS",
    "CREATE STORAGE {name}", "CREATE STORAGE IF NOT EXISTS {name} ({opts})",
    "CREATE STORAGE {name} ({opts})", "ALTER STORAGE {name} SET ({opts})",
    "ALTER STORAGE IF EXISTS {name} RENAME TO {name}", "ALTER STORAGE {name} RENAME {name}",
    "DROP STORAGE {name}", "DROP STORAGE IF EXISTS {name}",
    "CREATE CLOUD {name} ({opts})", "ALTER CLOUD {name} SET ({opts})",
    "ALTER CLOUD {name} RENAME TO {name}", "DROP CLOUD IF EXISTS {name}",
    "CREATE PARTITION {value} {value}", "CREATE PARTITION {value}",
    "DROP PARTITION {value}", "DROP PARTITION IF EXISTS {value} ON STORAGE",
    "DROP PARTITIONS BETWEEN {value} AND {value}", "DROP PARTITIONS BETWEEN {value} AND {value} ON CLOUD",
    "REFRESH PARTITION {value}", "REFRESH PARTITION IF EXISTS {value}",
    "REFRESH PARTITIONS BETWEEN {value} AND {value}",
    "MOVE PARTITION {value} INTO {name}", "MOVE PARTITIONS BETWEEN {value} AND {value} INTO {name}",
    "UPLOAD PARTITION {value}", "UPLOAD PARTITIONS BETWEEN {value} AND {value} IF CLOUD",
    "DOWNLOAD PARTITION IF EXISTS {value} IF CLOUD",
    "ALTER PIPELINE SET {name}", "ALTER PIPELINE SET {name} ({opts}), {name}",
    "ALTER PIPELINE RESET", "REBALANCE", "CHECKPOINT",
]


def random_statement(rng: random.Random) -> str:
    text = rng.choice(TEMPLATES)
    while "{" in text:
        text = (text.replace("{var}", rng.choice(VARS), 1)
                .replace("{value}", rng.choice(VALUES), 1)
                .replace("{name}", rng.choice(NAMES), 1)
                .replace("{opts}", ", ".join(f"{rng.choice(OPTIONS)} {rng.choice(VALUES)}"
                                             for _ in range(rng.randint(0, 3))), 1))
    if rng.random() < 0.25:  # mutate: drop, repeat or swap words, or insert a character
        words = text.split(" ")
        i = rng.randrange(len(words))
        op = rng.randrange(4)
        if op == 0 and len(words) > 1:
            del words[i]
        elif op == 1:
            words.insert(i, words[i])
        elif op == 2:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        else:
            w = words[i]
            k = rng.randint(0, len(w))
            words[i] = w[:k] + rng.choice("();,'\"`\0\n*-=.") + w[k:]
        text = " ".join(words)
    return text


def run_ddl_fuzz(repo: str, seed: int, statements: int) -> dict:
    """Random and mutated commands against an open repository with data: each one
    succeeds or raises a MonotoneError (never another exception, never an internal
    error); the repository stays usable and reopens with what it showed."""
    rng = random.Random(seed)
    db = open_repo(repo, workers=0, interval=workload.INTERVAL)
    gen = workload.plan(seed, 0, 120, deletes=True)
    counts = {"ok": 0, "error": 0, "reopened": 0, "batches": 0}
    try:
        for i in range(statements):
            if rng.random() < 0.15:
                try:
                    workload.write(db, next(gen))
                    counts["batches"] += 1
                except monotone.MonotoneError as e:
                    _no_internal(e, "a write")
            text = random_statement(rng)
            try:
                db.execute(text)
                counts["ok"] += 1
            except monotone.MonotoneError as e:
                _no_internal(e, text)
                counts["error"] += 1
            except Exception as e:
                raise Failed(f"{text!r} raised {type(e).__name__}: {e}") from None
            if i % 40 == 39 or i == statements - 1:
                seen = workload.read_everything(db)
                db.close()
                db = open_repo(repo)
                if not same(workload.read_everything(db), seen):
                    raise Failed(f"after {text!r}: what was read changed across close and "
                                 "open")
                counts["reopened"] += 1
    finally:
        db.close()
    left = leaks(repo)
    if left:
        raise Failed(f"left behind: {left}")
    return counts


def _no_internal(e: Exception, what: str) -> None:
    if "internal error" in str(e):
        raise Failed(f"{what!r}: {e}") from None


# fuzzed write arguments -----------------------------------------------------------------------


BAD = -1  # the count of a column that must be refused


def odd_column(rng: random.Random, n: int, key: bool):
    """(a values or keys argument, how many events it holds or BAD); fine ones mostly."""
    pick = rng.randrange(20)
    if pick < 5:
        return None, None
    if pick < 11:
        return [bytes(rng.randrange(256) for _ in range(rng.randrange(8))) for _ in range(n)], n
    if pick == 11:
        return [b"x"] * (n + 1), n + 1
    if pick == 12:
        return np.zeros((n, rng.randrange(0, 5)), np.uint8), n
    if pick == 13:
        lens = [rng.randrange(4) for _ in range(n)]
        off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        return (off, np.arange(int(off[-1]), dtype=np.uint8)), n
    if pick == 14:
        return [b"k" * 300] * n, (BAD if key and n else n)
    if pick == 15:
        return [bytearray(b"ab"), memoryview(b"cd"), b""][:n], min(n, 3)
    return rng.choice([np.zeros((n, 3), np.int16), ([0, 5, 2], np.zeros(10, np.uint8)),
                       ([-3, 0], np.zeros(4, np.uint8)), ([[0, 1], [2]], np.zeros(4, np.uint8)),
                       ["text"] * max(n, 1), (np.arange(n + 1, dtype=np.float64),
                                              np.zeros(n, np.uint8)), 42]), BAD


def odd_ids(rng: random.Random, n: int):
    """(an ids argument, how many ids or BAD; None: serial ids)."""
    base = rng.randrange(0, 5000)
    pick = rng.randrange(20)
    if pick < 3:
        return None, None
    if pick < 10:
        return np.arange(base, base + n, dtype=np.uint64), n
    if pick < 12:
        return list(range(base, base + n)), n
    if pick == 12:
        return np.full(n, base, np.uint32), n
    if pick == 13:
        return [2**64 - 1] * n, n  # the serial marker: serial ids
    return rng.choice([np.array([1.5] * max(n, 1), dtype=object), np.arange(max(n, 1), dtype=np.float64),
                       [[1, 2], [3]], np.array([-1] * max(n, 1), np.int64), [2**64] * max(n, 1),
                       np.array([True] * max(n, 1)), "0,1,2"]), BAD


def odd_deletes(rng: random.Random, n: int):
    pick = rng.randrange(10)
    if pick < 5:
        return None, None
    if pick < 8:
        return rng.choice([np.zeros(n, bool), np.ones(n, bool), np.array([1, 0] * n)[:n]]), n
    return rng.choice([[[True], [False, True]], np.full(max(n, 1), 2), ["yes"] * max(n, 1),
                       np.array([0.5] * max(n, 1))]), BAD


def expect_ok(ids_n, values_n, keys_n, deletes_n) -> bool:
    """Whether write_batch must accept these columns (by what each holds)."""
    counts = [ids_n, values_n, keys_n, deletes_n]
    if BAD in counts:
        return False
    if ids_n is None and values_n is None:
        return False  # nothing says how many events
    given = {c for c in counts if c is not None}
    return len(given) <= 1


def run_args_fuzz(repo: str, seed: int, calls: int) -> dict:
    """Random arguments to write_batch (and bad ones to write and cursor): what must be
    refused raises a MonotoneError, what is fine is written, and everything written
    reads back exactly as a dict model of the successful calls says."""
    rng = random.Random(seed)
    model: dict[tuple[int, bytes], bytes] = {}
    counts = {"ok": 0, "refused": 0}
    db = open_repo(repo, workers=0, interval=workload.INTERVAL)
    try:
        for _ in range(calls):
            n = rng.randrange(0, 6)
            (ids, ni), (values, nv) = odd_ids(rng, n), odd_column(rng, n, False)
            (keys, nk), (deletes, nd) = odd_column(rng, n, True), odd_deletes(rng, n)
            kwargs = {"ids": ids, "values": values, "keys": keys, "deletes": deletes}
            ok = expect_ok(ni, nv, nk, nd)
            try:
                written = db.write_batch(**kwargs)
            except monotone.MonotoneError as e:
                _no_internal(e, kwargs)
                if ok:
                    raise Failed(f"write_batch({kwargs!r}) refused fine input: {e}") from None
                counts["refused"] += 1
                continue
            except Exception as e:
                raise Failed(f"write_batch({kwargs!r}) raised {type(e).__name__}: {e}") from None
            if not ok:
                raise Failed(f"write_batch({kwargs!r}) accepted bad input")
            counts["ok"] += 1
            apply_model(model, written, kwargs)
            if rng.random() < 0.1:
                db.execute(ALL)
        for bad in (lambda: db.cursor(id=-1), lambda: db.cursor(id=1.5),
                    lambda: db.cursor(key="s"), lambda: db.write([1]),
                    lambda: db.write(monotone.Event(id=1)), lambda: db.execute(b"SHOW ALL")):
            try:
                bad()
            except monotone.MonotoneError:
                continue
            raise Failed("a bad call was accepted")
        got = workload.read_everything(db)
    finally:
        db.close()
    want = sorted(model.items())
    have = list(zip(zip(got[0].tolist(), got[1]), got[2]))
    if have != want:
        raise Failed(f"read {len(have)} events, the model has {len(want)}; first difference "
                     f"{next(((h, w) for h, w in zip(have, want) if h != w), None)}")
    left = leaks(repo)
    if left:
        raise Failed(f"left behind: {left}")
    counts["events"] = len(want)
    return counts


def _column(col, n: int) -> list[bytes]:
    if col is None:
        return [b""] * n
    if isinstance(col, np.ndarray):
        return [bytes(r) for r in col]
    if isinstance(col, tuple):
        off, data = np.asarray(col[0]).astype(np.int64), np.asarray(col[1])
        return [bytes(data[off[i]:off[i + 1]]) for i in range(n)]
    return [bytes(x) for x in col]


def apply_model(model: dict, ids, kwargs) -> None:
    ids = [int(i) for i in ids]
    n = len(ids)
    values, keys = _column(kwargs["values"], n), _column(kwargs["keys"], n)
    deletes = kwargs["deletes"]
    deletes = [False] * n if deletes is None else [bool(d) for d in np.asarray(deletes)]
    batch = {}
    for id_, key, value, delete in zip(ids, keys, values, deletes):
        batch[(id_, key)] = None if delete else value  # the last of equal keys wins
    for pk, value in batch.items():
        if value is None:
            model.pop(pk, None)
        else:
            model[pk] = value


# command line ----------------------------------------------------------------------------


TRIAL_LIMIT = 600.0  # seconds a whole trial may take


def run_one(campaign: str, seed: int, tmp: str, args) -> tuple[str, object]:
    """One trial of a campaign in the directory tmp: (what it was, what it found)."""
    repo = os.path.join(tmp, "repo")
    if campaign == "kill":
        trial = make_trial(seed, tuple(args.kinds.split(",")), tuple(args.points.split(",")))
        return trial.describe(), run_kill(repo, trial)
    if campaign == "close":
        return f"seed={seed}", run_clean_close(repo, seed, rounds=3)
    if campaign == "corrupt":
        return f"seed={seed}", run_corruption(tmp, seed, trials=20)
    if campaign == "ddl":
        return f"seed={seed}", run_ddl_fuzz(repo, seed, statements=400)
    return f"seed={seed}", run_args_fuzz(repo, seed, calls=400)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("campaign", choices=["kill", "close", "corrupt", "ddl", "args"])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default=",".join(KINDS), help="kill campaign: what to kill")
    ap.add_argument("--points", default=",".join(WRITER_POINTS + SERVICE_POINTS),
                    help="kill campaign: the fault points kind 'point' arms")
    ap.add_argument("--keep", action="store_true", help="keep the directory of a failed trial")
    args = ap.parse_args(argv)
    failures = 0
    started = time.monotonic()
    for i in range(args.trials):
        seed = args.seed * 100_000 + i
        tmp = tempfile.mkdtemp(prefix="mtn-fault-")
        what = f"seed={seed}"
        try:
            with deadline(TRIAL_LIMIT):
                what, result = run_one(args.campaign, seed, tmp, args)
            print(f"ok   {what} {result}", flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
        except (Failed, workload.Broken, monotone.MonotoneError) as e:
            failures += 1
            print(f"FAIL {what}: {type(e).__name__}: {e}", flush=True)
            for name in ("repo", "base", "work"):
                leaks(os.path.join(tmp, name))
            if args.keep:
                print(f"     kept {tmp}", flush=True)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.campaign}: {args.trials} trials, {failures} failed, "
          f"{time.monotonic() - started:.0f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
