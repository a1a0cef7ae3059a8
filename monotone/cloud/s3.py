"""S3, or any S3-compatible endpoint, through s3fs: url is the endpoint
(`http://host:9000` or `host:9000`), login and password the access and secret
keys, and each storage's objects live in a bucket of its own, named by the
storage's uuid (the original's layout)."""
from __future__ import annotations

import os

from ..errors import MonotoneError
from ..settings import CloudSettings
from .filesystem import FilesystemCloud


def _endpoint(url: str) -> str:
    return url if "://" in url else f"http://{url}"


class S3Cloud(FilesystemCloud):
    takes_options = False

    @classmethod
    def check(cls, settings: CloudSettings) -> None:
        super().check(settings)
        if not settings.url:
            raise MonotoneError(f"cloud '{settings.name}': s3: url is not defined")

    @classmethod
    def root_of(cls, settings: CloudSettings, uuid: str, directory: str) -> str:
        return uuid

    @classmethod
    def make_filesystem(cls, settings: CloudSettings):
        try:
            import s3fs
        except ImportError:
            raise MonotoneError(f"cloud '{settings.name}': type 's3' needs the s3fs package: "
                                "pip install s3fs") from None
        # the region comes from AWS_DEFAULT_REGION (bucket creation fails when
        # it is given through client_kwargs instead); listings are never cached,
        # other processes change the bucket
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        fs = s3fs.S3FileSystem(
            key=settings.login or None, secret=settings.password or None,
            endpoint_url=_endpoint(settings.url), use_listings_cache=False,
            skip_instance_cache=True,
            config_kwargs={"connect_timeout": settings.connect_timeout,
                           "read_timeout": settings.read_timeout,
                           "retries": {"total_max_attempts": 1}})
        # one attempt each in botocore and s3fs: Cloud._call retries, with the
        # cloud's own bound, backoff and a log line per attempt
        fs.retries = 1
        return fs

    def attach(self) -> None:
        """The storage's bucket, made if it is not there."""
        if not self._call("HEAD bucket", "", self._exists, self.root):
            self._call("CREATE bucket", "", self._make_bucket)

    def _make_bucket(self, timeout: float) -> None:
        self.fs.mkdir(self.root, **self._within(timeout))

    def url(self, name: str) -> str:
        return f"s3://{self.path(name)}"
