"""monotone bench --compare: monotone and its peers on one workload, in one run.

Prints live progress, then a table of absolute figures and monotone's ratio to
lmdb for each goal. Peers that are not installed (pip install '.[bench]') are
left out of the table with a note.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from functools import partial

import monotone
from monotone.scripts import peers, refresh_cost
from monotone.scripts.c_peer import ENV as C_ENV
from monotone.scripts.c_peer import run_c_monotone
from monotone.scripts.measure import Meter, run_writers
from monotone.scripts.peers import RANGE, Workload, count_events, median_time, write_all

MiB = 1024 * 1024

C = "C monotone"
# (row, key, higher is better, goals as ratios to the peers named). The reference workload
# runs with workers 0: nothing refreshes behind the writes, so a write figure is the write
# path's own; the default (3 workers refreshing on the machine's cores) follows it.
ROWS = [
    ("write_batch, workers 0", "write_ref", True, {"lmdb": 1.3, C: 1.5}),
    ("write + refresh, workers 0", "durable_ref", True, {"lmdb": 1.0, C: 1.5}),
    ("write_batch, workers 3", "write", True, {"lmdb": 1.3}),
    ("write + refresh, workers 3", "durable", True, {"lmdb": 1.0}),
    ("scan, batches()", "scan", True, {"lmdb": 2.5}),
    ("scan after writes, worst", "fresh_worst", True, {"lmdb": 3.0}),
    ("scan after writes, best", "fresh_best", True, {"lmdb": 6.0}),
    ("per event, memtable", "events_memtable", True, {"lmdb": 1.5}),
    ("per event, files", "events", True, {"lmdb": 1.5}),
    (f"range read of {RANGE:,}", "range", False, {"lmdb": 1.0}),
]
# what a peer without a figure of its own is held to (lmdb has no workers and no memtable)
BASE_KEY = {"fresh_worst": "scan", "fresh_best": "scan", "events_memtable": "events",
            "write_ref": "write", "durable_ref": "durable"}


def _status() -> dict:
    """Sizes from /proc/self/status, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                out[name] = int(rest.split()[0]) * 1024
    return out


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def run_monotone(w: Workload, path: str, progress) -> dict:
    db = monotone.Monotone()
    db.execute(f"SET wal TO {'true' if w.wal else 'false'}")
    anon_before = _status()["RssAnon"]
    db.open(path)
    try:
        start = time.perf_counter()
        clock = write_all(w, progress, lambda ids, values: (ids, values),
                          lambda batch: db.write_batch(*batch))
        result = {"write": w.n / clock.total}
        status = _status()
        memory = json.loads(db.execute("SHOW MEMORY"))
        result["memory"] = {"anon_growth": status["RssAnon"] - anon_before,
                            "shmem": status["RssShmem"],
                            "memtables": memory["pages_used"] * memory["page_size"]}
        # what was just written, read at once: background refreshes run meanwhile
        t = time.perf_counter()
        with db.cursor() as cur:
            n = sum(len(batch) for batch in cur.batches())
        fresh = time.perf_counter() - t
        if n != w.n:
            raise SystemExit(f"bench: monotone scanned {n} events just written, wrote {w.n}")
        result["fresh"] = [n / fresh]
        db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {2**64 - 1}")  # waits, unlike CHECKPOINT
        result["durable"] = w.n / (time.perf_counter() - start - fresh)

        rss = _status()["VmRSS"]
        peak_known = _reset_peak()
        t = time.perf_counter()
        with db.cursor() as cur:
            n = 0
            for batch in cur.batches():
                n += len(batch)
                progress(n)
        result["scan"] = n / (time.perf_counter() - t)
        if n != w.n:
            raise SystemExit(f"bench: monotone scanned {n} events, wrote {w.n}")
        if peak_known:
            result["memory"]["scan_peak"] = _status()["VmHWM"] - rss

        t = time.perf_counter()
        with db.cursor() as cur:
            n = count_events(cur, progress)
        result["events"] = n / (time.perf_counter() - t)

        def read_range(start: int) -> int:
            got = 0
            with db.cursor(id=start) as cur:
                for batch in cur.batches():
                    got += len(batch)
                    if got >= RANGE:
                        return RANGE
            return got

        result["range"] = median_time(read_range, w.range_starts)
        result["file_size"] = sum(os.path.getsize(os.path.join(d, f))
                                  for d, _, names in os.walk(path) for f in names if f.isdigit())
    finally:
        db.close()
    shutil.rmtree(path, ignore_errors=True)
    result.update(_reference(w, path, progress))
    return result


def _reference(w: Workload, path: str, progress) -> dict:
    """The reference workload, workers 0: write_batch; a per-event scan of the events,
    all still in memtables; then write + refresh of every partition."""
    db = monotone.Monotone()
    db.execute("SET workers TO 0")
    db.execute(f"SET wal TO {'true' if w.wal else 'false'}")
    db.open(path)
    try:
        clock = write_all(w, progress, lambda ids, values: (ids, values),
                          lambda batch: db.write_batch(*batch))
        result = {"write_ref": w.n / clock.total}
        t = time.perf_counter()
        with db.cursor() as cur:
            n = count_events(cur, progress)
        result["events_memtable"] = n / (time.perf_counter() - t)
        if n != w.n:
            raise SystemExit(f"bench: monotone scanned {n} events from memtables, wrote {w.n}")
        with clock:
            db.execute(f"REFRESH PARTITIONS BETWEEN 0 AND {2**64 - 1}")
        result["durable_ref"] = w.n / clock.total
        return result
    finally:
        db.close()


RUNNERS = [("monotone", run_monotone), ("lmdb", peers.run_lmdb), ("sqlite3", peers.run_sqlite),
           ("numpy file", peers.run_numpy)]


def compare(root: str, n: int, batch: int, value_size: int, wal: bool, writers: int,
            repeat: int, c_lib: str | None = None,
            refresh_sizes=refresh_cost.SIZES) -> dict:
    """c_lib: a build of the C original's library, measured beside the others."""
    w = Workload(n, batch, value_size, wal)
    print(f"monotone bench --compare: {n:,} events of {value_size} bytes, batches of {batch}, "
          f"WAL {'on' if wal else 'off'}, best of {repeat} rounds, in {root}", flush=True)
    runners = RUNNERS[:1] + ([(C, partial(run_c_monotone, lib_path=c_lib))] if c_lib else []) + \
        RUNNERS[1:]
    results: dict[str, dict] = {}
    missing = []
    for round_ in range(1, repeat + 1):
        for name, runner in runners:
            if any(line.startswith(name) for line in missing):
                continue
            path = os.path.join(root, name.replace(" ", "_"))
            shutil.rmtree(path, ignore_errors=True)
            meter = Meter(f"{name} ({round_}/{repeat})")
            try:
                _keep_best(results.setdefault(name, {}), runner(w, path, meter.at))
                meter.close()
                print(f"{meter.label:<22} done in {time.perf_counter() - meter.start:.1f} s",
                      flush=True)
            except ImportError as e:
                results.pop(name, None)
                missing.append(f"{name} ({e.name} is not installed: pip install '.[bench]')")
            finally:
                meter.close()
                shutil.rmtree(path, ignore_errors=True)
    scaling = {}
    if writers > 1:
        for _ in range(repeat):
            for k, (rate, cpu, busy) in run_writers(root, n, batch, value_size,
                                                     writers).items():
                old = scaling.get(k, (0.0, float("inf"), busy))
                # the busy cores of the fastest round
                scaling[k] = (max(old[0], rate), min(old[1], cpu), busy if rate > old[0] else old[2])
    costs = refresh_cost.measure(root, w, refresh_sizes, c_lib) if refresh_sizes else None
    print()
    print(table(results, scaling))
    if costs:
        print()
        print(refresh_cost.table(costs))
    for line in missing:
        print(f"left out: {line}")
    if not c_lib:
        print(f"left out: {C} (build github.com/monotone-studio/monotone and give its "
              f"libmonotone.so: --c-monotone PATH or {C_ENV}=PATH)")
    return results


def _keep_best(best: dict, new: dict) -> None:
    """Each figure's best over the rounds (a shared machine only ever slows a run down)."""
    for key, value in new.items():
        if key == "fresh":  # every round's, for the worst and the best
            best["fresh"] = best.get("fresh", []) + value
            best["fresh_worst"], best["fresh_best"] = min(best["fresh"]), max(best["fresh"])
        elif key not in best or not isinstance(value, float):
            best[key] = value
        elif key == "range":
            best[key] = min(best[key], value)
        else:
            best[key] = max(best[key], value)


def _figure(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key == "range":
        return f"{value * 1000:.2f} ms"
    return f"{value / 1e6:.2f} M/s"


def table(results: dict, scaling: dict) -> str:
    names = list(results)
    peers_ = [p for p in ("lmdb", C) if p in results]
    head = f"{'':<26}" + "".join(f"{n:>13}" for n in names) + \
        "".join(f"{'vs ' + p:>16}{'goal':>9}" for p in peers_)
    lines = [head, "-" * len(head)]
    ours = results.get("monotone")
    for label, key, higher, goals in ROWS:
        line = f"{label:<26}" + "".join(f"{_figure(key, results[n].get(key)):>13}" for n in names)
        missed = False
        for peer in peers_:
            against = key if key in results[peer] else BASE_KEY.get(key, key)
            goal = goals.get(peer)
            if not ours or key not in ours or against not in results[peer]:
                line += f"{'':>25}"
                continue
            ratio = ours[key] / results[peer][against]
            if goal is None:
                line += f"{ratio:>15.2f}x{'':>9}"
                continue
            missed |= not (ratio >= goal if higher else ratio <= goal)
            line += f"{ratio:>15.2f}x{('>=' if higher else '<=') + f'{goal:.2f}x':>9}"
        lines.append(line.rstrip() + ("  (missed)" if missed else ""))
    if scaling:
        k = max(scaling)
        ratio = scaling[k][0] / scaling[1][0]
        lines.append(f"{f'{k} writer processes':<26}{scaling[k][0] / 1e6:>11.2f} M/s"
                     f"{ratio:>9.2f}x of one writer (goal >= 1.30x)"
                     + ("" if ratio >= 1.3 else "  (missed)"))
        cpu = scaling[k][1] / scaling[1][1]
        lines.append(f"{'writer CPU-s per M events':<26}{scaling[1][1]:>8.2f} (1){scaling[k][1]:>8.2f}"
                     f" ({k}){cpu:>9.2f}x of one writer (goal <= 1.15x)"
                     + ("" if cpu <= 1.15 else "  (missed)"))
        lines.append(f"{'cores busy while writing':<26}{scaling[1][2]:>8.1f} (1){scaling[k][2]:>8.1f}"
                     f" ({k})  of {os.cpu_count()}: writers, workers and the kernel")
    if ours and "memory" in ours:
        m = ours["memory"]
        lines.append(f"monotone memory: memtables held {m['memtables'] / MiB:.1f} MiB at the end of "
                     f"the writes; the writer's resident shared memory {m['shmem'] / MiB:.1f} MiB, "
                     f"its private memory grew {m['anon_growth'] / MiB:.1f} MiB")
        if "scan_peak" in m:
            lines.append(f"monotone memory: scanning {ours['file_size'] / MiB:.1f} MiB of partition "
                         f"files raised the reader's peak resident memory by "
                         f"{max(0, m['scan_peak']) / MiB:.1f} MiB")
    return "\n".join(lines)
