"""Any fsspec protocol by name (file, gcs, az, sftp, http, ...) as a cloud: url
is the root, a storage's objects are under <url>/<uuid>, and the cloud's
other options go to the filesystem as they are. The S3 and mock backends are
this one with a filesystem and a few verbs of their own; so is the cloud at a
URL a reader was given (registry.at_url).

fsspec and the protocols' packages are imported only when a cloud is used,
so `import monotone` stays light. One filesystem per process and settings
(a fork makes its own: clients of the network libraries do not survive one).
"""
from __future__ import annotations

import json
import os
import threading
from typing import Iterable

from ..errors import MonotoneError
from ..settings import CloudSettings
from .base import Cloud, error_code

_filesystems: dict[tuple, object] = {}
_lock = threading.Lock()


def need_fsspec():
    try:
        import fsspec
    except ImportError:
        raise MonotoneError("clouds need the fsspec package: pip install fsspec") from None
    return fsspec


class FilesystemCloud(Cloud):
    """A storage's objects through an fsspec filesystem."""

    @classmethod
    def check(cls, settings: CloudSettings) -> None:
        kind, name = settings.type, settings.name
        fsspec = need_fsspec()
        if kind not in fsspec.available_protocols():
            raise MonotoneError(f"cloud '{name}': unknown cloud type '{kind}' (s3, mock, or "
                                "an fsspec protocol: file, gcs, az, sftp, ...)")
        try:
            fsspec.get_filesystem_class(kind)
        except ImportError as e:
            raise MonotoneError(f"cloud '{name}': type '{kind}' needs a package that is not "
                                f"installed: {e}") from None

    @classmethod
    def root_of(cls, settings: CloudSettings, uuid: str, directory: str) -> str:
        return f"{settings.url.rstrip('/')}/{uuid}"

    @classmethod
    def make_filesystem(cls, settings: CloudSettings):
        return need_fsspec().filesystem(settings.type, skip_instance_cache=True,
                                        **settings.options)

    @property
    def fs(self):
        """The cloud's filesystem, one per process and settings."""
        s = self.settings
        # options may hold lists or dicts (a reader's storage_options): keyed as text
        key = (type(self), s.type, s.url, s.login, s.password, s.connect_timeout,
               s.read_timeout, json.dumps(s.options, sort_keys=True, default=repr), os.getpid())
        with _lock:
            fs = _filesystems.get(key)
            if fs is None:
                fs = _filesystems[key] = self.make_filesystem(s)
            return fs

    def url(self, name: str) -> str:
        return self.fs.unstrip_protocol(self.path(name))

    def _within(self, timeout: float) -> dict:
        """What bounds a call of the filesystem to timeout seconds: an asynchronous
        one (s3, gcs, az, http, ...) cancels the request when it is up. A
        synchronous one (file, sftp, ...) is bounded only by its own options."""
        from fsspec.asyn import AsyncFileSystem
        return {"timeout": timeout} if isinstance(self.fs, AsyncFileSystem) else {}

    def _make_root(self, timeout: float) -> None:
        self.fs.makedirs(self.root, exist_ok=True, **self._within(timeout))

    def _remove_root(self, timeout: float) -> None:
        self.fs.rmdir(self.root, **self._within(timeout))

    def _put(self, local_path: str, path: str, timeout: float) -> None:
        self.fs.put_file(local_path, path, **self._within(timeout))

    def _get(self, path: str, local_path: str, timeout: float) -> None:
        self.fs.get_file(path, local_path, **self._within(timeout))

    def _read(self, path: str, offset: int, size: int, timeout: float) -> bytes:
        try:
            return self.fs.cat_file(path, start=offset, end=offset + size,
                                    **self._within(timeout))
        except OSError as e:
            # S3 answers any range of an empty object with 416 (InvalidRange): read
            # from its start, it is b"", as an empty file is
            if offset == 0 and error_code(e) == "InvalidRange":
                return b""
            raise

    def _read_all(self, path: str, timeout: float) -> bytes:
        return self.fs.cat_file(path, **self._within(timeout))

    def _write(self, path: str, data: bytes, timeout: float) -> None:
        self.fs.pipe_file(path, data, **self._within(timeout))

    def _create(self, path: str, data: bytes, timeout: float) -> bool:
        try:
            self.fs.pipe_file(path, data, mode="create", **self._within(timeout))
        except FileExistsError:
            return False
        except OSError as e:
            if error_code(e) == "PreconditionFailed":  # If-None-Match: there is one
                return False
            raise
        return True

    def _remove(self, path: str, timeout: float) -> None:
        self.fs.rm_file(path, **self._within(timeout))

    def _exists(self, path: str, timeout: float) -> bool:
        return self.fs.exists(path, **self._within(timeout))

    def _size(self, path: str, timeout: float) -> int:
        return self.fs.size(path, **self._within(timeout))

    def _list(self, path: str, timeout: float) -> Iterable[str]:
        return self.fs.ls(path, detail=False, **self._within(timeout))

