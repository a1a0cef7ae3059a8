"""monotone bench --cloud: the cloud tier against an S3 server, next to s3fs and pyarrow.

Against moto's S3 server on loopback (started here, unless --url names another
endpoint), through a LatencyProxy that holds each answer back --latency
milliseconds, as a far-away object store does, and counts the requests and
bytes of each measurement. It measures the upload, UPLOAD PARTITIONS against
s3fs put_file of the same files, then reads the same events six ways:
  bare s3fs        cat of every partition object at once (s3fs fetches them
                   concurrently) into memory: what the other reads are held to
  pyarrow Parquet  read_table of the same events as uncompressed Parquet files,
                   one per partition, in the same bucket: through pyarrow's own S3
                   client, and through s3fs
  cold scan        Cursor.batches() of a fresh handle, the partitions only in the
                   cloud and no cache of cold regions
  range            10,000 events in the middle, from a fresh handle
  warm scan        the full scan again, in the handle of the last cold scan
  local scan       the full scan of the local partition files, before they were
                   dropped: what the warm scan is held to
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

import monotone
from monotone.scripts.latency_proxy import LatencyProxy
from monotone.scripts.measure import MiB
from monotone.scripts.s3_server import S3Server

BUCKET = "monotone-bench-bare"
RANGE = 10_000   # events of the bounded range
CACHE = "cache"  # <repository>/cache: the cache of cold regions (partition/region_cache.py)
KEY, SECRET = "bench", "bench-secret"
ALL = f"BETWEEN 0 AND {2**64 - 1}"  # every partition, the last one too when it is not full


@dataclass
class Figure:
    """The best and median of repeat runs, and the requests and bytes of a run."""
    seconds: float
    median: float
    events: int
    requests: float | None = None
    bytes_up: float | None = None
    bytes_down: float | None = None

    def as_dict(self, payload: int) -> dict:
        return {"seconds": self.seconds, "median_seconds": self.median, "events": self.events,
                "mib_s": payload / MiB / self.seconds, "events_s": self.events / self.seconds,
                "requests": self.requests, "bytes_up": self.bytes_up,
                "bytes_down": self.bytes_down}


def measure(run, repeat: int, proxy: LatencyProxy | None, prepare=lambda: None) -> Figure:
    """run(prepare()) repeat times, each timed and its traffic counted; run returns
    the events it read. prepare is neither timed nor counted."""
    times, moved, events = [], [], 0
    for _ in range(repeat):
        arg = prepare()
        before = proxy.counts() if proxy else None
        t = time.perf_counter()
        events = run(arg) or 0
        times.append(time.perf_counter() - t)
        if proxy:
            after = proxy.counts()
            moved.append({k: after[k] - before[k] for k in after})
    per_run = {k: sum(m[k] for m in moved) / repeat for k in moved[0]} if moved else {}
    return Figure(min(times), statistics.median(times), events, **per_run)


def cloud_bench(root: str, n: int, batch: int, value_size: int, url: str | None = None,
                interval: int = 100_000, region_size: int = 128 * 1024,
                repeat: int = 3, latency: float = 0.0) -> dict:
    """The figures above, printed and returned; latency in milliseconds. The proxy
    stands in front of the server whenever the server is ours, or latency > 0."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    moto = S3Server() if url is None else None
    proxy = None
    try:
        if moto is not None or latency > 0:
            proxy = LatencyProxy(url or moto.url, latency / 1000)
        bench = _Bench(root, n, batch, value_size, proxy.url if proxy else url, proxy,
                       interval, region_size, repeat)
        print(f"monotone bench --cloud: {n:,} events of {value_size} bytes, partitions of "
              f"{interval:,} events, regions of {region_size // 1024} KiB, S3 at "
              f"{url or moto.url}, {latency:g} ms added per request; each figure the best "
              f"of {repeat}", flush=True)
        return bench.run()
    finally:
        if proxy is not None:
            proxy.stop()
        if moto is not None:
            moto.stop()


class _Bench:
    """One run of the bench: the repository, the events, and the figures so far."""

    def __init__(self, root, n, batch, value_size, endpoint, proxy, interval, region_size,
                 repeat) -> None:
        import s3fs
        self.path = os.path.join(root, "cloud")
        self.n, self.batch, self.interval, self.repeat = n, batch, interval, repeat
        self.region_size, self.endpoint, self.proxy = region_size, endpoint, proxy
        self.values = np.frombuffer(np.random.default_rng(7).bytes(n * value_size),
                                    np.uint8).reshape(n, value_size)
        self.fs = s3fs.S3FileSystem(key=KEY, secret=SECRET, endpoint_url=endpoint,
                                    use_listings_cache=False, skip_instance_cache=True)
        self.db = None
        self.results: dict = {}

    def run(self) -> dict:
        shutil.rmtree(self.path, ignore_errors=True)
        self.db = self._open()
        try:
            files = self._write()
            local = self._measure_scan(3 * self.repeat)  # short: more runs against noise
            self._upload(files)
            self.db.execute(f"DROP PARTITIONS {ALL} ON STORAGE")
        finally:
            self.db.close()
        self.db = None
        try:
            bare, (parquet, parquet_s3fs) = self._bare(files), self._parquet()
            cold = self._measure_scan(self.repeat, self._fresh)
            warm = self._measure_scan(3 * self.repeat)  # right after the cold scans, same handle
            rows = [("bare s3fs cat, all at once", "bare", bare),
                    ("pyarrow Parquet, its own S3", "parquet", parquet),
                    ("pyarrow Parquet over s3fs", "parquet_s3fs", parquet_s3fs),
                    ("cold scan, Cursor.batches()", "cold_scan", cold),
                    (f"range of {RANGE:,}, fresh handle", "range", self._range()),
                    ("warm scan, same handle", "warm_scan", warm),
                    ("local scan, before the drop", "local_scan", local)]
        finally:
            if self.db is not None:
                self.db.close()
        self._print_reads([row for row in rows if row[2] is not None], bare, local)
        return self.results

    def _open(self):
        db = monotone.Monotone()
        for setting in ("workers TO 0", "workers_upload TO 0", f"interval TO {self.interval}"):
            db.execute(f"SET {setting}")
        db.open(self.path)
        return db

    def _fresh(self):
        """A handle that has read nothing yet: the last one closed, the cache of cold
        regions emptied, the repository opened again."""
        if self.db is not None:
            self.db.close()
            self.db = None
        shutil.rmtree(os.path.join(self.path, CACHE), ignore_errors=True)
        self.db = self._open()
        return self.db

    def _write(self) -> list[str]:
        """The events, in partitions in the cloud and on local disk: their local files."""
        db = self.db
        db.execute(f"CREATE CLOUD s3 (type 's3', url '{self.endpoint}', access_key '{KEY}', "
                   f"secret_key '{SECRET}')")
        db.execute(f"CREATE STORAGE cold (cloud 's3', cloud_drop_local false, sync false, "
                   f"compression 'none', region_size {self.region_size})")
        db.execute("ALTER PIPELINE SET cold")
        for start in range(0, self.n, self.batch):
            stop = min(start + self.batch, self.n)
            db.write_batch(np.arange(start, stop, dtype=np.uint64), self.values[start:stop])
        db.execute(f"REFRESH PARTITIONS {ALL}")
        parts = json.loads(db.execute("SHOW PARTITIONS"))
        uuid = json.loads(db.execute("SHOW STORAGE cold"))["config"]["uuid"]
        files = [os.path.join(self.path, uuid, f"{p['min']:020d}") for p in parts]
        self.total = sum(os.path.getsize(f) for f in files)
        print(f"  {len(parts)} partitions, {sum(p['regions'] for p in parts)} regions, "
              f"{self.total / MiB:.1f} MiB", flush=True)
        return files

    def _upload(self, files: list[str]) -> None:
        """UPLOAD PARTITIONS of the local files, against s3fs put_file of each."""
        if not self.fs.exists(BUCKET):
            self.fs.mkdir(BUCKET)

        def put(_):
            for f in files:
                self.fs.put_file(f, f"{BUCKET}/{os.path.basename(f)}")
        put = measure(put, self.repeat, self.proxy)

        def upload(_):
            self.db.execute(f"UPLOAD PARTITIONS {ALL}")
        upload = measure(upload, self.repeat, self.proxy,
                         lambda: self.db.execute(f"DROP PARTITIONS {ALL} ON CLOUD"))
        print(f"  {'':<30} {'best':>8} {'median':>8} {'MiB/s':>7} {'requests':>8} "
              f"{'MiB up':>8}", flush=True)
        for label, fig in (("bare s3fs put_file, one by one", put),
                           ("UPLOAD PARTITIONS", upload)):
            print(f"  {label:<30} {fig.seconds:>6.3f} s {fig.median:>6.3f} s "
                  f"{self.total / MiB / fig.seconds:>7.1f} {_count(fig.requests):>8} "
                  f"{_mib(fig.bytes_up):>8}   {put.seconds / fig.seconds:.2f}x of put_file",
                  flush=True)
        self.results["upload"] = {**upload.as_dict(self.total),
                                  "bare_put_file": put.as_dict(self.total)}

    def _bare(self, files: list[str]) -> Figure:
        """s3fs cat of every object at once (the put_file copies: the same bytes)."""
        paths = [f"{BUCKET}/{os.path.basename(f)}" for f in files]

        def cat(_):
            got = self.fs.cat(paths)
            if sum(len(v) for v in got.values()) != self.total:
                raise SystemExit("bench: s3fs cat read other bytes than were put")
            return self.n
        return measure(cat, self.repeat, self.proxy)

    def _parquet(self) -> tuple[Figure | None, Figure | None]:
        """The events as one Parquet file per partition (id, value; uncompressed,
        default row groups) in the bucket, read whole by pyarrow through its own S3
        client, and through s3fs. None without pyarrow."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
            from pyarrow.fs import FSSpecHandler, PyFileSystem, S3FileSystem
        except ImportError:
            print("  (no pyarrow: no Parquet figures; pip install pyarrow)", flush=True)
            return None, None
        over_s3fs = PyFileSystem(FSSpecHandler(self.fs))
        endpoint = urlsplit(self.endpoint)
        arrow_s3 = S3FileSystem(access_key=KEY, secret_key=SECRET, scheme=endpoint.scheme,
                                endpoint_override=endpoint.netloc,
                                region=os.environ["AWS_DEFAULT_REGION"])
        paths = []
        for start in range(0, self.n, self.interval):
            stop = min(start + self.interval, self.n)
            paths.append(f"{BUCKET}/parquet/{start:020d}.parquet")
            pq.write_table(_arrow_table(pa, start, self.values[start:stop]), paths[-1],
                           filesystem=over_s3fs, compression="none")
        return tuple(measure(lambda _: pq.read_table(paths, filesystem=fs).num_rows,
                             self.repeat, self.proxy) for fs in (arrow_s3, over_s3fs))

    def _measure_scan(self, repeat: int, prepare=lambda: None) -> Figure:
        def scan(_):
            return _count_events(self.db.cursor(), self.n, "a full scan")
        return measure(scan, repeat, self.proxy, prepare)

    def _range(self) -> Figure:
        start = max(0, self.n // 2 - RANGE // 2)
        want = min(RANGE, self.n - start)

        def read(db):
            return _count_events(db.cursor(start, max_id=start + RANGE - 1), want,
                                 f"the range {start}..{start + RANGE - 1}")
        return measure(read, self.repeat, self.proxy, self._fresh)

    def _print_reads(self, rows, bare: Figure, local: Figure) -> None:
        print(f"  {'':<30} {'best':>8} {'median':>8} {'MiB/s':>7} {'M ev/s':>7} "
              f"{'requests':>8} {'MiB down':>8}", flush=True)
        for label, key, fig in rows:
            payload = self.total * fig.events // self.n  # the bytes of the events read
            line = (f"  {label:<30} {fig.seconds:>6.3f} s {fig.median:>6.3f} s "
                    f"{payload / MiB / fig.seconds:>7.1f} {fig.events / 1e6 / fig.seconds:>7.2f} "
                    f"{_count(fig.requests):>8} {_mib(fig.bytes_down):>8}")
            self.results[key] = fig.as_dict(payload)
            if fig.events == self.n:
                self.results[key]["vs_bare"] = bare.seconds / fig.seconds
                line += f"   {bare.seconds / fig.seconds:.2f}x of bare"
            if key == "warm_scan":
                self.results[key]["vs_local"] = local.seconds / fig.seconds
                line += f", {local.seconds / fig.seconds:.2f}x of local"
            print(line, flush=True)


def _arrow_table(pa, first_id: int, values: np.ndarray):
    """id (uint64) and value (binary) of events first_id.. as a pyarrow Table."""
    count, size = values.shape
    offsets = np.arange(0, (count + 1) * size, size, dtype=np.int32)
    value = pa.Array.from_buffers(pa.binary(), count,
                                  [None, pa.py_buffer(offsets), pa.py_buffer(values)])
    ids = np.arange(first_id, first_id + count, dtype=np.uint64)
    return pa.table({"id": ids, "value": value})


def _count_events(cursor, want: int, what: str) -> int:
    events = 0
    with cursor as cur:
        for b in cur.batches():
            events += len(b)
    if events != want:
        raise SystemExit(f"bench: {what} read {events} events, not {want}")
    return events


def _count(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}" if x == int(x) else f"{x:.1f}"


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x / MiB:.1f}"
