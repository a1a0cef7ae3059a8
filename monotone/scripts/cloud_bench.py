"""monotone bench --cloud: the cloud tier against an S3 server, next to bare s3fs.

Against moto's S3 server on loopback (started here, unless --url names
another endpoint), it measures
  upload      UPLOAD PARTITIONS of local files, against s3fs put_file of the
              same files
  cold scan   Cursor.batches() over partitions that live only in the cloud
              (a fresh handle), against s3fs get_file of the same objects, and
              against s3fs cat_file of the same regions one by one
  requests    GETs per region read (from the server's log, when it is ours)
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import numpy as np

import monotone
from monotone.scripts.measure import MiB
from monotone.scripts.s3_server import S3Server

BUCKET = "monotone-bench-bare"


def _rate(label: str, nbytes: int, seconds: float, extra: str = "") -> dict:
    print(f"  {label:<34} {nbytes / MiB:>8.1f} MiB {seconds:>8.2f} s {nbytes / MiB / seconds:>8.1f} "
          f"MiB/s{extra}", flush=True)
    return {"mib_s": nbytes / MiB / seconds, "seconds": seconds}


def best(fn, repeat: int) -> float:
    """The shortest of repeat runs of fn(), in seconds (loopback figures are noisy)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cloud_bench(root: str, n: int, batch: int, value_size: int, url: str | None = None,
                interval: int = 100_000, region_size: int = 128 * 1024,
                repeat: int = 3) -> dict:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    moto = S3Server() if url is None else None
    endpoint = url or moto.url
    try:
        return _run(root, n, batch, value_size, endpoint, moto, interval, region_size, repeat)
    finally:
        if moto is not None:
            moto.stop()


def _run(root, n, batch, value_size, endpoint, moto, interval, region_size, repeat) -> dict:
    import s3fs
    path = os.path.join(root, "cloud")
    shutil.rmtree(path, ignore_errors=True)
    print(f"monotone bench --cloud: {n:,} events of {value_size} bytes, partitions of "
          f"{interval:,} events, regions of {region_size // 1024} KiB, S3 at {endpoint}; "
          f"each figure the best of {repeat}", flush=True)
    db = monotone.Monotone()
    for setting in ("workers TO 0", "workers_upload TO 0", f"interval TO {interval}"):
        db.execute(f"SET {setting}")
    db.open(path)
    results = {}
    try:
        db.execute(f"CREATE CLOUD s3 (type 's3', url '{endpoint}', access_key 'bench', "
                   "secret_key 'bench-secret')")
        db.execute(f"CREATE STORAGE cold (cloud 's3', cloud_drop_local false, sync false, "
                   f"compression 'none', region_size {region_size})")
        db.execute("ALTER PIPELINE SET cold")
        rng = np.random.default_rng(7)
        values = rng.integers(0, 256, (batch, value_size), dtype=np.uint8)
        for start in range(0, n, batch):
            count = min(batch, n - start)
            db.write_batch(np.arange(start, start + count, dtype=np.uint64), values[:count])
        everything = f"BETWEEN 0 AND {n}"
        db.execute(f"REFRESH PARTITIONS {everything}")
        db.execute(f"DROP PARTITIONS {everything} ON CLOUD")
        parts = json.loads(db.execute("SHOW PARTITIONS"))
        uuid = json.loads(db.execute("SHOW STORAGE cold"))["config"]["uuid"]
        directory = os.path.join(path, uuid)
        files = [os.path.join(directory, f"{p['min']:020d}") for p in parts]
        total = sum(os.path.getsize(f) for f in files)
        regions = sum(p["regions"] for p in parts)
        print(f"  {len(parts)} partitions, {regions} regions, {total / MiB:.1f} MiB", flush=True)

        fs = s3fs.S3FileSystem(key="bench", secret="bench-secret", endpoint_url=endpoint,
                               use_listings_cache=False, skip_instance_cache=True)
        if not fs.exists(BUCKET):
            fs.mkdir(BUCKET)
        bare_put = _rate("bare s3fs put_file", total, best(
            lambda: [fs.put_file(f, f"{BUCKET}/{os.path.basename(f)}") for f in files], repeat))

        def upload():
            db.execute(f"DROP PARTITIONS {everything} ON CLOUD")
            t = time.perf_counter()
            db.execute(f"UPLOAD PARTITIONS {everything}")
            return time.perf_counter() - t
        dt = min(upload() for _ in range(repeat))
        up = _rate("UPLOAD PARTITIONS", total, dt,
                   f"   {bare_put['seconds'] / dt:.2f}x of put_file")
        results["upload"] = {**up, "bare_mib_s": bare_put["mib_s"]}
        db.execute(f"DROP PARTITIONS {everything} ON STORAGE")
    finally:
        db.close()

    scratch = tempfile.mkdtemp(prefix="monotone-bench-get-")
    try:
        bare_get = _rate("bare s3fs get_file", total, best(
            lambda: [fs.get_file(f"{BUCKET}/{os.path.basename(f)}", os.path.join(scratch, "x"))
                     for f in files], repeat))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    db = monotone.Monotone()
    db.execute("SET workers TO 0")
    db.open(path)
    try:
        ranges = []
        for p in parts:
            info = json.loads(db.execute(f"SHOW PARTITION {p['min']} DEBUG"))
            ranges.append((p["min"], info["index"]["size_regions"], p["regions"]))
        def ranged():
            for min_, size, count in ranges:  # the same bytes, a region's worth per GET
                step = -(-size // count)
                for offset in range(0, size, step):
                    fs.cat_file(f"{BUCKET}/{min_:020d}", start=offset,
                                end=min(size, offset + step))
        bare_ranged = _rate("bare s3fs cat_file, region by region", total, best(ranged, repeat))
        gets = moto.count("GET") if moto else 0

        def scan():
            events = 0
            with db.cursor() as cur:
                for b in cur.batches():
                    events += len(b)
            if events != n:
                raise SystemExit(f"bench: read {events} events back from the cloud, wrote {n}")
        dt = best(scan, repeat)
        cold = _rate("cold scan, Cursor.batches()", total, dt,
                     f"   {bare_get['seconds'] / dt:.2f}x of get_file, "
                     f"{bare_ranged['seconds'] / dt:.2f}x of region by region")
        results["cold_scan"] = {**cold, "bare_get_mib_s": bare_get["mib_s"],
                                "bare_ranged_mib_s": bare_ranged["mib_s"]}
        if moto is not None:
            per_region = (moto.count("GET") - gets) / regions / repeat
            print(f"  GET requests per region read: {per_region:.2f}", flush=True)
            results["gets_per_region"] = per_region
    finally:
        db.close()
    return results

