"""The mock cloud (the original's test cloud): a local directory every process
sees, <storage directory>/mock, each object a private file (0600) put in
place whole, as an object store shows an object."""
from __future__ import annotations

import os
import shutil

from ..settings import CloudSettings
from ..shm import private
from .filesystem import FilesystemCloud, need_fsspec


class MockCloud(FilesystemCloud):
    local_directory = True
    takes_options = False

    @classmethod
    def check(cls, settings: CloudSettings) -> None:
        """Nothing to install, nothing to reach."""

    @classmethod
    def root_of(cls, settings: CloudSettings, uuid: str, directory: str) -> str:
        return os.path.join(directory, "mock")

    @classmethod
    def make_filesystem(cls, settings: CloudSettings):
        return need_fsspec().filesystem("file")

    def url(self, name: str) -> str:
        return self.path(name)

    def _make_root(self, timeout: float) -> None:
        private.make_dir(self.root, True, False)

    def _put(self, local_path: str, path: str, timeout: float) -> None:
        with open(private.open_own(local_path), "rb") as src:
            self._replace(path, lambda out: shutil.copyfileobj(src, out, 1 << 20))

    def _write(self, path: str, data: bytes, timeout: float) -> None:
        self._replace(path, lambda out: out.write(data))

    def _create(self, path: str, data: bytes, timeout: float) -> bool:
        tmp = path + ".put"
        with open(private.create(tmp, os.O_WRONLY, replace=True), "wb") as out:
            out.write(data)
        try:
            os.link(tmp, path)  # fails when there is one: the object appears whole or not
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    @staticmethod
    def _replace(path: str, fill) -> None:
        tmp = path + ".put"
        with open(private.create(tmp, os.O_WRONLY, replace=True), "wb") as out:
            fill(out)
        os.replace(tmp, path)
