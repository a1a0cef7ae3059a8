"""S3, or any S3-compatible endpoint, through s3fs: url is the endpoint
(`http://host:9000` or `host:9000`), login and password the access and secret
keys, and each storage's objects live in a bucket of its own, named by the
storage's uuid (the original's layout).

S3UrlCloud is what a reader given an s3:// URL reads through (registry.at_url):
s3fs with the reader's storage_options, each request bounded as S3Cloud's are."""
from __future__ import annotations

import dataclasses
import logging
import os

from ..errors import MonotoneError
from ..settings import CloudSettings
from .base import ObjectMissing
from .filesystem import FilesystemCloud

log = logging.getLogger("monotone")

MIN_PART = 5 << 20     # S3: every part of a multipart upload but the last is at least this
COPY_PART = 1 << 30    # bytes a part copies within the store (S3 allows up to 5 GiB)
SEND_PART = 16 << 20   # bytes a part sends


def _spans(start: int, end: int, step: int) -> list[tuple[int, int]]:
    """[start, end) in equal spans of at most step bytes: with step of twice MIN_PART
    or more, each is at least MIN_PART unless there is only one."""
    count = max(1, -(-(end - start) // step))
    cuts = [start + (end - start) * i // count for i in range(count + 1)]
    return list(zip(cuts, cuts[1:]))


def _endpoint(url: str) -> str:
    return url if "://" in url else f"http://{url}"


def _bounds(settings: CloudSettings) -> dict:
    """botocore's config for one attempt of a request within the cloud's deadlines:
    Cloud._call retries, with the cloud's own bound, backoff and a log line per
    attempt (botocore's and s3fs's own retries would multiply the attempts)."""
    return {"connect_timeout": settings.connect_timeout,
            "read_timeout": settings.read_timeout, "retries": {"total_max_attempts": 1}}


class S3Cloud(FilesystemCloud):
    takes_options = False
    credentials = "give the cloud its access_key and secret_key (ALTER CLOUD name SET (...))"

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
            skip_instance_cache=True, config_kwargs=_bounds(settings))
        fs.retries = 1  # one attempt in s3fs too (_bounds)
        return fs

    def attach(self) -> None:
        """The storage's bucket, made if it is not there."""
        if not self._call("HEAD bucket", "", self._exists, self.root):
            self._call("CREATE bucket", "", self._make_bucket)

    def _make_bucket(self, timeout: float) -> None:
        self.fs.mkdir(self.root, **self._within(timeout))

    def url(self, name: str) -> str:
        return f"s3://{self.path(name)}"

    def put_extending(self, local_path: str, name: str, source: str, prefix: int,
                      prefix_end: bytes) -> bool:
        """A multipart upload of `name` whose first parts are copies of the object
        `source` (UploadPartCopy, each part copied from the source as it was when
        its size and last bytes were checked: its ETag then) and whose last parts
        are the rest of the local file. Nothing of the prefix crosses the network;
        the object appears whole when the upload completes."""
        size = os.path.getsize(local_path)
        if not MIN_PART <= prefix < size:
            return False
        bucket, key = self.path(name).split("/", 1)
        where = {"Bucket": bucket, "Key": key}
        origin = {"Bucket": bucket, "Key": self.path(source).split("/", 1)[1]}
        try:
            head = self._s3("HEAD", source, "head_object", **origin)
            if head.get("ContentLength") != prefix or \
                    self.read(source, prefix - len(prefix_end), len(prefix_end)) != prefix_end:
                return False
            where["UploadId"] = self._s3("CREATE multipart", name, "create_multipart_upload",
                                         **where)["UploadId"]
        except MonotoneError as e:  # ObjectMissing among them
            log.info("%s: sent whole (%s)", self.where(name), e)
            return False
        try:
            parts = self._parts(local_path, name, origin, prefix, size, head["ETag"], where)
        except BaseException as e:
            self._abort(name, where)
            if not isinstance(e, MonotoneError):
                raise
            # an endpoint without part copies, or the source changed under the copy
            log.info("%s: sent whole (%s)", self.where(name), e)
            return False
        try:
            self._s3("COMPLETE multipart", name, "complete_multipart_upload", moves=size,
                     MultipartUpload={"Parts": parts}, **where)
        except BaseException:
            self._abort(name, where)
            raise
        return True

    def _parts(self, local_path: str, name: str, source: dict, prefix: int, size: int,
               etag: str, where: dict) -> list[dict]:
        """The parts of put_extending: copies of the source as it was when its prefix
        was checked (its ETag then: a copy of anything else fails), then the rest."""
        parts: list[dict] = []
        for a, b in _spans(0, prefix, COPY_PART):
            done = self._s3(f"COPY part {a}+{b - a}", name, "upload_part_copy", moves=b - a,
                            PartNumber=len(parts) + 1, CopySource=source,
                            CopySourceIfMatch=etag, CopySourceRange=f"bytes={a}-{b - 1}",
                            **where)
            parts.append({"PartNumber": len(parts) + 1, "ETag": done["CopyPartResult"]["ETag"]})
        with open(local_path, "rb") as f:
            for a, b in _spans(prefix, size, SEND_PART):
                f.seek(a)
                body = f.read(b - a)
                if len(body) != b - a:
                    raise MonotoneError(f"{local_path}: shorter than {size} bytes while "
                                        "uploading it")
                done = self._s3(f"PUT part {a}+{b - a}", name, "upload_part", moves=b - a,
                                PartNumber=len(parts) + 1, Body=body, **where)
                parts.append({"PartNumber": len(parts) + 1, "ETag": done["ETag"]})
        return parts

    def _abort(self, name: str, where: dict) -> None:
        try:
            self._s3("ABORT multipart", name, "abort_multipart_upload", **where)
        except MonotoneError as e:  # the object's next removal aborts it (remove())
            log.warning("%s: an unfinished multipart upload stays: %s", self.where(name), e)

    def remove(self, name: str) -> bool:
        """The object, and the parts of any upload of it a crash left unfinished (S3
        keeps those, and bills them, until they are aborted)."""
        gone = super().remove(name)
        bucket, key = self.path(name).split("/", 1)
        try:
            for upload in self._unfinished(name, bucket, key):
                self._s3("ABORT multipart", name, "abort_multipart_upload", Bucket=bucket,
                         Key=key, UploadId=upload)
        except ObjectMissing:  # no bucket, or the upload ended meanwhile
            pass
        except MonotoneError as e:  # an endpoint without them: the object is gone all the same
            log.warning("%s: unfinished multipart uploads not aborted: %s", self.where(name), e)
        return gone

    def _unfinished(self, name: str, bucket: str, key: str) -> list[str]:
        """Ids of the multipart uploads of key not completed nor aborted."""
        found, page = [], {}
        while True:
            listed = self._s3("LIST multipart", name, "list_multipart_uploads", Bucket=bucket,
                              Prefix=key, **page)
            found += [u["UploadId"] for u in listed.get("Uploads", []) if u.get("Key") == key]
            if not listed.get("IsTruncated"):
                return found
            page = {"KeyMarker": listed["NextKeyMarker"],
                    "UploadIdMarker": listed["NextUploadIdMarker"]}

    def _s3(self, op: str, name: str, method: str, moves: int = 0, **request) -> dict:
        """One S3 request by s3fs's client, within _call's deadline and retries."""
        return self._call(op, name, lambda timeout: self.fs.call_s3(method, timeout=timeout,
                                                                    **request), moves=moves)


class S3UrlCloud(FilesystemCloud):
    """The objects beside an s3:// URL a reader was given, through s3fs with the
    reader's storage_options (key, secret, endpoint_url, ...) as they are, but for
    each request's attempts and timeouts, S3Cloud's unless the options' own
    config_kwargs set them. The bucket is not the cloud's own (owns_root)."""
    owns_root = False
    credentials = "give key and secret in storage_options"

    @classmethod
    def make_filesystem(cls, settings: CloudSettings):
        options = dict(settings.options)
        given = options.get("config_kwargs") or {}
        if not isinstance(given, dict):
            raise MonotoneError(f"{settings.name}: storage_options config_kwargs is not a "
                                "dict of botocore's config")
        options["config_kwargs"] = {**_bounds(settings), **given}
        fs = super().make_filesystem(dataclasses.replace(settings, options=options))
        fs.retries = 1  # one attempt in s3fs too (_bounds)
        return fs
