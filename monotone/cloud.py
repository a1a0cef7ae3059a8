"""Clouds: where partition files go past local disk, through fsspec.

A cloud is one of
  s3      an S3-compatible endpoint (url: `http://host:9000` or `host:9000`),
          through s3fs; each storage's objects live in a bucket of its own,
          named by the storage's uuid (the original's layout)
  mock    a local directory every process sees: <storage directory>/mock
          (the original's test cloud)
  <proto> any other fsspec protocol by name (file, gcs, az, sftp, ...): url
          is the root, a storage's objects are under <url>/<uuid>, and the
          cloud's other options go to the filesystem as they are
`memory` is refused: other processes cannot see it.

Objects is one storage's objects in its cloud: put a whole file, get one,
read a byte range (one ranged GET), remove. Every call goes through _call:
failures become CloudError with secrets scrubbed, and with the cloud's
`debug` on each request is logged (never a secret). CloudFile reads a
partition whose file lives only in the cloud: footer and index from the local
stub (<min>.cloud), regions by ranged GETs, with read-ahead in threads.

fsspec and the protocols' packages are imported only when a cloud is used,
so `import monotone` stays light.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time

from . import redact
from .errors import CorruptionError, MonotoneError
from .partition import fileformat as partition
from .shm import private
from .store import ReadHandle

log = logging.getLogger("monotone")

TIMEOUT = 20   # seconds to connect or to wait for a reply, per request
RETRIES = 3    # attempts in all, on errors worth retrying
AHEAD = 4      # regions a cold read fetches ahead of the one it stands on
_THREADS = 8


class CloudError(MonotoneError):
    """A cloud request failed (server down, refused, timeout, object missing)."""


class ObjectMissing(CloudError):
    """The object asked for is not in the cloud (dropped, or never uploaded)."""


def secret_option(name: str) -> bool:
    """Whether a filesystem option looks like a secret (shown as "(secret)")."""
    return redact.secret_name(name)


def _fsspec():
    try:
        import fsspec
    except ImportError:
        raise MonotoneError("clouds need the fsspec package: pip install fsspec") from None
    return fsspec


def check(spec: dict) -> None:
    """A cloud's options make sense, and what it needs is installed."""
    kind, name = spec["type"], spec["name"]
    if not kind:
        raise MonotoneError(f"cloud '{name}': unknown cloud type")
    if kind == "memory":
        raise MonotoneError(f"cloud '{name}': type 'memory' lives in one process; the "
                            "coordinator, workers and readers are several: use 'mock' or "
                            "'file' for a local cloud")
    if kind == "mock":
        return
    fsspec = _fsspec()
    if kind not in fsspec.available_protocols():
        raise MonotoneError(f"cloud '{name}': unknown cloud type '{kind}' (s3, mock, or an "
                            "fsspec protocol: file, gcs, az, sftp, ...)")
    try:
        fsspec.get_filesystem_class(kind)
    except ImportError as e:
        raise MonotoneError(f"cloud '{name}': type '{kind}' needs a package that is not "
                            f"installed: {e}") from None
    if not spec["url"] and kind == "s3":
        raise MonotoneError(f"cloud '{name}': s3: url is not defined")


_filesystems: dict[tuple, object] = {}
_lock = threading.Lock()


def _endpoint(url: str) -> str:
    return url if "://" in url else f"http://{url}"


def filesystem(spec: dict):
    """The fsspec filesystem of a cloud, one per process and spec."""
    key = (spec["type"], spec["url"], spec["login"], spec["password"],
           tuple(sorted(spec["options"].items())), os.getpid())
    with _lock:
        fs = _filesystems.get(key)
        if fs is None:
            fs = _filesystems[key] = _make(spec)
        return fs


def _make(spec: dict):
    fsspec = _fsspec()
    kind = spec["type"]
    if kind == "mock":
        return fsspec.filesystem("file")
    if kind == "s3":
        try:
            import s3fs
        except ImportError:
            raise MonotoneError(f"cloud '{spec['name']}': type 's3' needs the s3fs package: "
                                "pip install s3fs") from None
        # the region comes from AWS_DEFAULT_REGION (bucket creation fails when
        # it is given through client_kwargs instead); listings are never cached,
        # other processes change the bucket
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        fs = s3fs.S3FileSystem(
            key=spec["login"] or None, secret=spec["password"] or None,
            endpoint_url=_endpoint(spec["url"]), use_listings_cache=False,
            skip_instance_cache=True,
            config_kwargs={"connect_timeout": TIMEOUT, "read_timeout": TIMEOUT,
                           "retries": {"max_attempts": 2}})
        # botocore retries a 5xx or a refused connection once; s3fs retries
        # connection errors too, with its shorter backoff (more of botocore's
        # would add seconds to every request made while the server is away)
        fs.retries = RETRIES
        return fs
    options = dict(spec["options"])
    return fsspec.filesystem(kind, skip_instance_cache=True, **options)


def objects_of(spec: dict) -> "Objects | None":
    """A storage's objects in its cloud, from its store spec (None: no cloud)."""
    if not spec.get("cloud"):
        return None
    return Objects(spec["cloud"], spec["uuid"], spec["directory"])


class Objects:
    """One storage's objects in its cloud (spec: the cloud's; uuid, directory: the
    storage's)."""

    def __init__(self, spec: dict, uuid: str, directory: str) -> None:
        self.spec = spec
        kind = spec["type"]
        if kind == "s3":
            self.root = uuid
        elif kind == "mock":
            self.root = os.path.join(directory, "mock")
        else:
            self.root = f"{spec['url'].rstrip('/')}/{uuid}"
        self.debug = bool(spec.get("debug"))
        # secrets to scrub from messages (a very short one would mangle the text
        # instead; the access key is no secret: SHOW prints it), the url's own
        # (a password or token in it) as written and percent-decoded
        self._secrets = [s for s in (spec["password"], *redact.secrets(spec["url"] or ""),
                                     *(str(v) for k, v in spec["options"].items()
                                       if secret_option(k))) if len(s) >= 4]

    @property
    def fs(self):
        return filesystem(self.spec)

    def where(self, name: str = "") -> str:
        """An object's place, for messages: cloud name, type and path."""
        return f"cloud '{self.spec['name']}' ({self.spec['type']}) {redact.url(self.path(name))}"

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def _call(self, op: str, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except FileNotFoundError:
            self._log(op, name, start, "not found")
            raise ObjectMissing(f"{self.where(name)}: {op}: no such object") from None
        except MonotoneError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure of a cloud library
            text = self._scrub(f"{type(e).__name__}: {e}")
            self._log(op, name, start, text)
            raise CloudError(f"{self.where(name)}: {op} failed: {text}") from None
        self._log(op, name, start, "ok")
        return result

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "(secret)")
        return text

    def _log(self, op: str, name: str, start: float, outcome: str) -> None:
        if self.debug:
            log.info("cloud %s: %s %s: %s (%.1f ms)", self.spec["name"], op,
                     redact.url(self.path(name)), outcome, (time.perf_counter() - start) * 1e3)

    # the verbs
    def attach(self) -> None:
        """Make the storage's place in the cloud (its bucket) if it is not there."""
        fs = self.fs
        if self.spec["type"] == "s3":
            if not self._call("HEAD bucket", "", fs.exists, self.root):
                self._call("CREATE bucket", "", fs.mkdir, self.root)
        elif self.spec["type"] == "mock":
            self._call("MKDIR", "", private.make_dir, self.root, True, False)
        else:
            self._call("MKDIR", "", fs.makedirs, self.root, exist_ok=True)

    def detach(self) -> None:
        """Remove the storage's place in the cloud if it is empty (best effort)."""
        try:
            if not self.list():
                self._call("REMOVE bucket", "", self.fs.rmdir, self.root)
        except MonotoneError as e:
            log.warning("%s", e)

    def put(self, local_path: str, name: str) -> None:
        if self.spec["type"] == "mock":
            self._call("PUT", name, self._mock_put, name, local_path, None)
            return
        self._call("PUT", name, self.fs.put_file, local_path, self.path(name))

    def _mock_put(self, name: str, local_path: str | None, data: bytes | None) -> None:
        """An object of the mock cloud: a private file (0600) in its directory, put
        in place whole, as an object store shows an object."""
        tmp = self.path(name) + ".put"
        with open(private.create(tmp, os.O_WRONLY, replace=True), "wb") as out:
            if data is not None:
                out.write(data)
            else:
                with open(private.open_own(local_path), "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, self.path(name))

    def get(self, name: str, local_path: str) -> None:
        self._call("GET", name, self.fs.get_file, self.path(name), local_path)

    def read(self, name: str, offset: int, size: int) -> bytes:
        """Bytes [offset, offset + size) of an object: one ranged GET."""
        if self.spec["type"] == "s3":
            return self._call(f"GET {offset}+{size}", name, self.fs.cat_file, self.path(name),
                              start=offset, end=offset + size)
        return self._call(f"GET {offset}+{size}", name, self.fs.read_block, self.path(name),
                          offset, size)

    def remove(self, name: str) -> bool:
        """Remove an object; False when it was not there."""
        try:
            self._call("DELETE", name, self.fs.rm_file, self.path(name))
        except CloudError:
            if self.exists(name):
                raise
            return False
        return True

    def write(self, name: str, data: bytes) -> None:
        """A small object written whole (each object appears at once)."""
        if self.spec["type"] == "mock":
            self._call("PUT", name, self._mock_put, name, None, data)
            return
        self._call("PUT", name, self.fs.pipe_file, self.path(name), data)

    def url(self, name: str) -> str:
        """An fsspec URL of an object, for readers elsewhere (with the cloud's options)."""
        kind = self.spec["type"]
        if kind == "mock":
            return self.path(name)
        if kind == "s3":
            return f"s3://{self.path(name)}"
        return self.fs.unstrip_protocol(self.path(name))

    def exists(self, name: str) -> bool:
        return bool(self._call("HEAD", name, self.fs.exists, self.path(name)))

    def size(self, name: str) -> int:
        return int(self._call("HEAD", name, self.fs.size, self.path(name)))

    def list(self) -> list[str]:
        """Names of the storage's objects (a listing: only for checks and tools)."""
        try:
            found = self._call("LIST", "", self.fs.ls, self.root, detail=False)
        except CloudError:
            if not self._call("HEAD", "", self.fs.exists, self.root):
                return []
            raise
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in found)


_pool = None
_pool_pid = 0


def _threads():
    """The read-ahead threads of this process (a fork gets its own)."""
    global _pool, _pool_pid
    from concurrent.futures import ThreadPoolExecutor
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="monotone-cloud")
            _pool_pid = os.getpid()
        return _pool


class CloudFile(ReadHandle):
    """A partition file that lives in the cloud, read through its local stub.

    The stub holds the file's tail (index and footer) as it is in the object,
    so opening costs no request; each region is one ranged GET, and
    prefetch() starts the GETs of the next regions in background threads."""

    def __init__(self, stub: ReadHandle, objects: Objects, name: str) -> None:
        try:
            tail = stub.read(0, stub.size)
        finally:
            stub.close()
        if len(tail) < partition.FOOTER.size:
            raise CorruptionError(f"cloud stub {stub.name}: truncated")
        offset, length, _, _ = partition.decode_footer(tail[-partition.FOOTER.size:],
                                                       stub.name)
        if length + partition.FOOTER.size != len(tail):
            raise CorruptionError(f"cloud stub {stub.name}: does not hold the file's index")
        self.tail = tail
        self.start = offset          # where the tail begins in the object
        self.size = offset + len(tail)
        self.objects = objects
        self.object = name
        self.name = objects.where(name)
        self.ahead: dict = {}  # (offset, size) -> Future of its GET
        # when the object goes while this file is read (its partition's cloud
        # copy dropped): a local copy of the same file, or None (set by readers)
        self.fallback = None
        self.current = None  # whether the partition is still this file (set by readers)
        self.local: ReadHandle | None = None

    def read(self, offset: int, size: int) -> bytes:
        if offset >= self.start:
            return self.tail[offset - self.start:offset - self.start + size]
        if self.local is not None:
            return self.local.read(offset, size)
        future = self.ahead.pop((offset, size), None)
        try:
            if future is not None:
                return future.result()
            return self.objects.read(self.object, offset, size)
        except ObjectMissing:
            self.local = self.fallback() if self.fallback is not None else None
            if self.local is None:
                raise ObjectMissing(f"{self.name}: the partition was rewritten while this "
                                    "cursor read it from the cloud: open a new cursor") from None
            return self.local.read(offset, size)

    def rewritten(self) -> bool:
        """After a region failed its check: whether the partition was rewritten
        meanwhile (its object replaced under the same name), not damaged."""
        return self.current is not None and not self.current()

    def prefetch(self, ranges) -> None:
        """Start reading these (offset, size) ranges; read() takes them when asked."""
        if self.local is not None:
            return
        pool = _threads()
        for offset, size in ranges:
            if offset < self.start and (offset, size) not in self.ahead:
                self.ahead[(offset, size)] = pool.submit(self.objects.read, self.object,
                                                         offset, size)

    def close(self) -> None:
        for future in self.ahead.values():
            future.cancel()
        self.ahead.clear()
        if self.local is not None:
            self.local.close()
