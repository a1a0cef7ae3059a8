"""monotone bench: write and scan throughput, printed once a second while it runs.

    python scripts/bench.py [--n 1000000] [--batch 1000] [--value-size 100] [--wal|--no-wal]

By default it runs the workload twice, WAL on and WAL off, each in a fresh
repository under a temporary directory (or --path).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

import monotone
from monotone.scripts import refresh_cost
from monotone.scripts.c_peer import find_library
from monotone.scripts.measure import Meter, MiB, run_writers


def _sizes(text: str) -> tuple[int, ...]:
    """--refresh-sizes: counts separated by commas; 0 alone for none."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not counts separated by commas: {text!r}") from None
    if sizes == (0,):
        return ()
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"partition sizes must be 1 or more: {text!r}")
    return sizes


def run(path: str, n: int, batch: int, value_size: int, wal: bool) -> dict:
    db = monotone.Monotone()
    db.execute(f"SET wal TO {'true' if wal else 'false'}")
    db.execute("SET workers TO 0")
    db.open(path)
    rng = np.random.default_rng(7)
    values = rng.integers(0, 256, (batch, value_size), dtype=np.uint8)
    results = {}
    tag = "wal" if wal else "no wal"
    try:
        meter = Meter(f"write ({tag})")
        for start in range(0, n, batch):
            count = min(batch, n - start)
            ids = np.arange(start, start + count, dtype=np.uint64)
            db.write_batch(ids, values[:count])
            meter.add(count, count * value_size)
        results["write"] = meter.done()

        meter = Meter(f"scan batches ({tag})")
        with db.cursor() as cur:
            for b in cur.batches():
                meter.add(len(b), len(b.value_data))
        results["scan"] = meter.done()

        meter = Meter(f"scan events ({tag})")
        with db.cursor() as cur:
            for ev in cur:  # progress every 65536 events: the meter is not what is measured
                meter.events += 1
                if not meter.events & 0xFFFF:
                    meter.tick()
        results["scan_events"] = meter.done()

        t = time.perf_counter()
        db.execute("CHECKPOINT")
        dt = time.perf_counter() - t
        print(f"{'refresh (' + tag + ')':<22} {n:>10,} events  {n / dt:>12,.0f} events/s"
              f"  {n * value_size / MiB / dt:>8.1f} MiB/s", flush=True)
        results["refresh"] = {"events_s": n / dt}

        meter = Meter(f"scan file ({tag})")
        with db.cursor() as cur:
            for b in cur.batches():
                meter.add(len(b), len(b.value_data))
        results["scan_file"] = meter.done()
        if meter.events != n:
            raise SystemExit(f"bench: read {meter.events} events back, wrote {n}")
    finally:
        db.close()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="monotone bench", description=__doc__.splitlines()[0])
    ap.add_argument("--compare", action="store_true",
                    help="run the workload on monotone, lmdb, sqlite3 and a raw numpy file, and "
                         "print a table of figures and ratios (peers: pip install '.[bench]')")
    ap.add_argument("--cloud", action="store_true",
                    help="the cloud tier against an S3 server (moto's on loopback, or --url): "
                         "upload, cold, ranged and warm reads next to bare s3fs and pyarrow")
    ap.add_argument("--url", help="with --cloud: an S3 endpoint to use instead of moto's")
    ap.add_argument("--latency", type=float, default=0.0, metavar="MS",
                    help="with --cloud: milliseconds a proxy in front of the S3 endpoint adds "
                         "before each answer, as a far-away store does (default 0)")
    ap.add_argument("--region-size", type=int, default=128 * 1024,
                    help="with --cloud: region_size of the cloud storage (default 128 KiB)")
    ap.add_argument("--n", type=int, help="events to write (default 1,000,000; 2,000,000 "
                                          "with --compare)")
    ap.add_argument("--batch", type=int, default=1000, help="events per write_batch")
    ap.add_argument("--value-size", type=int, default=100, help="bytes per value")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--wal", dest="wal", action="store_const", const=[True])
    group.add_argument("--no-wal", dest="wal", action="store_const", const=[False])
    ap.add_argument("--path", help="directory for the repositories (default: a temporary one)")
    ap.add_argument("--writers", type=int,
                    help="also measure 1..K writer processes, background refresh on "
                         "(default: none; 2 with --compare)")
    ap.add_argument("--c-monotone", metavar="PATH",
                    help="with --compare: the C original's libmonotone.so (or its build "
                         "directory) to measure beside monotone; default $MONOTONE_C_LIB")
    ap.add_argument("--refresh-sizes", type=_sizes, default=refresh_cost.SIZES, metavar="N,N,..",
                    help="with --compare: partition sizes that 10,000 new events are refreshed "
                         "into (default 1000000,5000000,20000000; 0 for none)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="with --compare or --cloud: rounds to run, each figure the best of them "
                         "(default 3)")
    args = ap.parse_args(argv)
    if args.latency and not args.cloud:
        ap.error("--latency goes with --cloud")
    if args.latency < 0:
        ap.error("--latency must be 0 or more milliseconds")
    root = args.path or tempfile.mkdtemp(prefix="monotone-bench-")
    if args.cloud:
        from monotone.scripts.cloud_bench import cloud_bench
        try:
            cloud_bench(root, args.n or 1_000_000, args.batch, args.value_size, args.url,
                        region_size=args.region_size, repeat=args.repeat, latency=args.latency)
        finally:
            if not args.path:
                shutil.rmtree(root, ignore_errors=True)
        return 0
    if args.compare:
        from monotone.scripts.compare import compare
        try:
            compare(root, args.n or 2_000_000, args.batch, args.value_size,
                    (args.wal or [True])[0], 2 if args.writers is None else args.writers,
                    args.repeat, find_library(args.c_monotone), args.refresh_sizes)
        finally:
            if not args.path:
                shutil.rmtree(root, ignore_errors=True)
        return 0
    args.n = args.n or 1_000_000
    modes = args.wal or [True, False]
    print(f"monotone bench: {args.n:,} events of {args.value_size} bytes, batches of "
          f"{args.batch}, in {root}", flush=True)
    try:
        for wal in modes:
            path = os.path.join(root, "wal" if wal else "nowal")
            shutil.rmtree(path, ignore_errors=True)
            run(path, args.n, args.batch, args.value_size, wal)
        if args.writers:
            run_writers(root, args.n, args.batch, args.value_size, args.writers)
    finally:
        if not args.path:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
