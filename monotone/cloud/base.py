"""The cloud interface: one storage's objects in one cloud, through the
original's verbs.

  attach / detach   make the storage's place in the cloud / remove it if empty
  put / get         a whole object from / into a local file (upload, download)
  read              a byte range of an object (one ranged GET), or all of it
  write             a small object written whole (the manifest's pointer)
  create            a small object written only if there is none of its name
                    (a manifest version: conditional where the store has it)
  remove, exists, size, list, url

Cloud does what every backend shares: each request goes through _call, which
logs it when the cloud's `debug` is on (never a secret), scrubs secrets from
failures and turns them into CloudError (ObjectMissing for an object that is
not there), with what the failure says of the request in words: no
credentials (and where to give them), credentials refused, no such bucket, the
endpoint unreachable. A backend (registry.py names them) gives the primitives
behind the verbs, and declares what it can do:
  ranged_reads     read() of a range fetches only that range
  local_directory  its objects live in a directory inside the storage's own,
                   removed with the storage
  takes_options    options besides type, login, password, url and debug go to
                   its filesystem
  owns_root        its root (a bucket) is the storage's own, made by attach: a
                   request that finds it gone finds no object (ObjectMissing).
                   A cloud at a URL a reader was given does not own it: a
                   missing bucket is a wrong URL, and its error says so
"""
from __future__ import annotations

import logging
import os
import random
import time
from abc import ABC, abstractmethod
from typing import Iterable

from .. import redact
from ..errors import MonotoneError
from ..settings import CloudSettings

log = logging.getLogger("monotone")
SLOWEST = 256 << 10   # bytes a second: a transfer slower than this is taken as hung
BACKOFF = 0.25        # seconds before the first retry, doubled before each next one
BACKOFF_MAX = 8.0
# failures worth another attempt: the network's, and a server's that says so
_TRANSIENT_NAMES = {
    "ReadTimeoutError", "ConnectTimeoutError", "EndpointConnectionError",
    "ConnectionClosedError", "ResponseStreamingError", "IncompleteReadError",
    "IncompleteRead", "ProtocolError", "ClientPayloadError", "ServerDisconnectedError",
    "ClientConnectionError", "ClientConnectorError", "ClientOSError", "ServerTimeoutError",
    "FSTimeoutError", "ContentLengthError", "TransferEncodingError"}
_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                    "InternalError", "ServiceUnavailable",
                    "RequestLimitExceeded", "TooManyRequests", "BadDigest"}
# failures that say what is wrong with the request, for its message: botocore's
# (no credentials were found; the endpoint was not reached) and S3's codes
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError"}
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"}
_REFUSALS = {
    "InvalidAccessKeyId": "the credentials were refused: the endpoint knows no such "
                          "access key",
    "SignatureDoesNotMatch": "the credentials were refused: the secret is not the "
                             "access key's",
    "ExpiredToken": "the credentials were refused: the session token has expired",
    "InvalidToken": "the credentials were refused: the session token is not valid",
    "AccessDenied": "access denied: the credentials do not allow this request",
}
AWS_CREDENTIALS = ("or the usual AWS environment variables (AWS_ACCESS_KEY_ID and "
                   "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) or config files "
                   "(~/.aws/credentials)")


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def retryable(e: BaseException) -> bool:
    """Whether a failure may pass if tried again: a timeout, a connection refused,
    reset or cut short, a 5xx, or throttling (503 SlowDown); never a missing
    object or a refusal."""
    for err in _chain(e):
        if isinstance(err, (FileNotFoundError, PermissionError)):
            return False
        if isinstance(err, (TimeoutError, ConnectionError)):
            return True
        if any(cls.__name__ in _TRANSIENT_NAMES for cls in type(err).__mro__):
            return True
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = response.get("Error", {}).get("Code", "")
            return status >= 500 or status == 429 or code in _TRANSIENT_CODES
        if any(code in str(err) for code in ("SlowDown", "reduce your request rate",
                                             "ServiceUnavailable", "InternalError")):
            return True
    return False


def error_code(e: BaseException) -> str:
    """The S3 error code a failure carries in its chain ("": none)."""
    for err in _chain(e):
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
    return ""


def _bucket(path: str) -> str:
    return path.split("://", 1)[-1].split("/", 1)[0]


def describe(e: BaseException) -> str:
    """A failure as a line: its type and text (a timeout without text says so)."""
    text = str(e) or ("timed out" if isinstance(e, TimeoutError) or
                      "Timeout" in type(e).__name__ else "")
    return f"{type(e).__name__}: {text}"


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt n: exponential, with jitter (half of it
    random) so that processes failing together do not come back together."""
    pause = min(BACKOFF_MAX, BACKOFF * 2 ** (attempt - 1))
    return pause / 2 + random.uniform(0, pause / 2)


class CloudError(MonotoneError):
    """A cloud request failed (server down, refused, timeout, object missing)."""


class ObjectMissing(CloudError):
    """The object asked for is not in the cloud (dropped, or never uploaded)."""


def secret_option(name: str) -> bool:
    """Whether a filesystem option looks like a secret (shown as "(secret)")."""
    return redact.secret_name(name)


class Cloud(ABC):
    """One storage's objects in its cloud: under root, an object per name."""

    ranged_reads = True
    local_directory = False
    takes_options = True
    owns_root = True
    credentials = "give the cloud its credentials"  # where, in a backend's words

    def __init__(self, settings: CloudSettings, root: str) -> None:
        self.settings = settings
        self.root = root
        # secrets to scrub from messages (a very short one would mangle the text
        # instead; the access key is no secret: SHOW prints it), the url's own
        # (a password or token in it) as written and percent-decoded
        self._secrets = [s for s in (settings.password, *redact.secrets(settings.url or ""),
                                     *(str(v) for k, v in settings.options.items()
                                       if secret_option(k))) if len(s) >= 4]

    @classmethod
    def check(cls, settings: CloudSettings) -> None:
        """The cloud's options make sense, and what it needs is installed."""

    @classmethod
    @abstractmethod
    def root_of(cls, settings: CloudSettings, uuid: str, directory: str) -> str:
        """Where a storage's objects are (uuid, directory: the storage's)."""

    def where(self, name: str = "") -> str:
        """An object's place, for messages: cloud name, type and path."""
        return f"cloud '{self.settings.name}' ({self.settings.type}) " \
               f"{redact.url(self.path(name))}"

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def deadline(self, moves: int = 0) -> float:
        """Seconds one attempt of a request moving `moves` bytes may take: to connect,
        to wait for the first byte, and for the bytes at the slowest rate taken as
        a live transfer."""
        s = self.settings
        return s.connect_timeout + s.read_timeout + moves / SLOWEST

    def _call(self, op: str, name: str, fn, *args, moves: int = 0):
        """fn(*args, timeout=seconds): one request, tried again on a failure worth
        retrying (retryable()) up to the cloud's `retries` times, each attempt
        within its deadline and each failure logged; then a CloudError naming the
        cloud, the object and the attempts (ObjectMissing: the object is not there)."""
        attempts = 1 + self.settings.retries
        for attempt in range(1, attempts + 1):
            start = time.perf_counter()
            try:
                result = fn(*args, timeout=self.deadline(moves))
            except FileNotFoundError as e:
                self._log(op, name, start, "not found")
                if self.owns_root or error_code(e) != "NoSuchBucket":
                    raise ObjectMissing(f"{self.where(name)}: {op}: no such object") from None
                bucket = self._scrub(_bucket(self.path(name)))
                raise CloudError(f"{self.where(name)}: {op} failed: bucket '{bucket}' does "
                                 "not exist") from None
            except MonotoneError:
                raise
            except Exception as e:  # noqa: BLE001 - every failure of a cloud library
                text = self._scrub(describe(e))
                self._log(op, name, start, text)
                if attempt == attempts or not retryable(e):
                    tried = f" (after {attempts} attempts)" if attempt > 1 else ""
                    why = self._diagnose(e)
                    raise CloudError(f"{self.where(name)}: {op} failed{tried}: "
                                     + (f"{why} ({text})" if why else text)) from None
                pause = backoff(attempt)
                log.warning("cloud %s: %s %s: attempt %d of %d failed: %s; trying again "
                            "in %.1f s", self.settings.name, op, redact.url(self.path(name)),
                            attempt, attempts, text, pause)
                time.sleep(pause)
                continue
            self._log(op, name, start, "ok")
            return result
        raise AssertionError("unreachable")

    def _diagnose(self, e: BaseException) -> str:
        """What a failure says of the request, in words ("": its own text says it)."""
        names = {cls.__name__ for err in _chain(e) for cls in type(err).__mro__}
        if names & _NO_CREDENTIALS:
            return f"no credentials: {self.credentials}, {AWS_CREDENTIALS}"
        code = error_code(e)
        if code in _REFUSALS:
            return _REFUSALS[code]
        if any(isinstance(err, PermissionError) for err in _chain(e)):
            return "access denied"
        if names & _UNREACHABLE:
            return "the endpoint cannot be reached"
        return ""

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, redact.SECRET)
        return text

    def _log(self, op: str, name: str, start: float, outcome: str) -> None:
        if self.settings.debug:
            log.info("cloud %s: %s %s: %s (%.1f ms)", self.settings.name, op,
                     redact.url(self.path(name)), outcome, (time.perf_counter() - start) * 1e3)

    # the verbs
    def attach(self) -> None:
        """Make the storage's place in the cloud if it is not there."""
        self._call("MKDIR", "", self._make_root)

    def detach(self) -> None:
        """Remove the storage's place in the cloud if it is empty (best effort)."""
        try:
            if not self.list():
                self._call("REMOVE bucket", "", self._remove_root)
        except MonotoneError as e:
            log.warning("%s", e)

    def put(self, local_path: str, name: str) -> None:
        """Upload a local file as an object, whole."""
        self._call("PUT", name, self._put, local_path, self.path(name),
                   moves=os.path.getsize(local_path))

    def put_extending(self, local_path: str, name: str, source: str, prefix: int,
                      prefix_end: bytes) -> bool:
        """Upload a local file as the object `name`, sending only what follows its
        first `prefix` bytes: those are the object `source`, which must be `prefix`
        bytes long and end with `prefix_end`, and are copied within the cloud.
        False, with nothing changed, where that cannot be done (this backend copies
        nothing within its store, the source differs, or it is too short to be
        copied in parts): the caller puts the file whole."""
        return False

    def get(self, name: str, local_path: str) -> None:
        """Download an object into a local file (its size asked first: the download's
        deadline grows with it)."""
        self._call("GET", name, self._get, self.path(name), local_path, moves=self.size(name))

    def read(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        """Bytes [offset, offset + size) of an object, one ranged GET (size None:
        the whole object, one GET)."""
        if size is None:
            return self._call("GET", name, self._read_all, self.path(name),
                              moves=self.size(name))
        return self._call(f"GET {offset}+{size}", name, self._read, self.path(name),
                          offset, size, moves=size)

    def write(self, name: str, data: bytes) -> None:
        """A small object written whole (each object appears at once)."""
        self._call("PUT", name, self._write, self.path(name), data, moves=len(data))

    def create(self, name: str, data: bytes) -> bool:
        """A small object written whole if there is none of its name; False, with
        nothing written, when there is one. Conditional (If-None-Match) where the
        store has it; elsewhere asked first, which holds for one writer at a time."""
        return bool(self._call("PUT if absent", name, self._create, self.path(name), data,
                               moves=len(data)))

    def remove(self, name: str) -> bool:
        """Remove an object; False when it was not there."""
        try:
            self._call("DELETE", name, self._remove, self.path(name))
        except CloudError:
            if self.exists(name):
                raise
            return False
        return True

    def exists(self, name: str) -> bool:
        return bool(self._call("HEAD", name, self._exists, self.path(name)))

    def size(self, name: str) -> int:
        size = self._call("HEAD", name, self._size, self.path(name))
        if type(size) is not int or size < 0:
            raise CloudError(f"{self.where(name)}: HEAD gave no size ({size!r})")
        return size

    def list(self) -> list[str]:
        """Names of the storage's objects (a listing: only for checks and tools)."""
        try:
            found = self._call("LIST", "", self._list, self.root)
        except CloudError:
            if not self._call("HEAD", "", self._exists, self.root):
                return []
            raise
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in found)

    @abstractmethod
    def url(self, name: str) -> str:
        """An fsspec URL of an object, for readers elsewhere (with the cloud's options)."""

    # the primitives: one request each, on paths under root, given up after
    # `timeout` seconds where the backend can (a local directory needs none)
    @abstractmethod
    def _make_root(self, timeout: float) -> None: ...

    @abstractmethod
    def _remove_root(self, timeout: float) -> None: ...

    @abstractmethod
    def _put(self, local_path: str, path: str, timeout: float) -> None: ...

    @abstractmethod
    def _get(self, path: str, local_path: str, timeout: float) -> None: ...

    @abstractmethod
    def _read(self, path: str, offset: int, size: int, timeout: float) -> bytes: ...

    @abstractmethod
    def _read_all(self, path: str, timeout: float) -> bytes: ...

    @abstractmethod
    def _write(self, path: str, data: bytes, timeout: float) -> None: ...

    @abstractmethod
    def _create(self, path: str, data: bytes, timeout: float) -> bool: ...

    @abstractmethod
    def _remove(self, path: str, timeout: float) -> None: ...

    @abstractmethod
    def _exists(self, path: str, timeout: float) -> bool: ...

    @abstractmethod
    def _size(self, path: str, timeout: float) -> int: ...

    @abstractmethod
    def _list(self, path: str, timeout: float) -> Iterable[str]: ...
