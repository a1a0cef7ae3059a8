"""Transfers between a storage and its cloud: the network part of upload,
download and drop on cloud, run by an upload worker (or inline when
workers_upload = 0), never in the coordinator's request loop.

A job carries everything by value; the steps and their order (what a crash
between two of them leaves, what recovery makes of it) are
partition.files.PartitionFiles'. The coordinator does the short steps around a job:
marking where the partition's copies are, under PUBLISH.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from monotone.cloud import CloudError, manifest, objects_of
from monotone.partition.files import PartitionFiles
from monotone.settings import Place
from monotone.store import store_of

UPLOAD, DOWNLOAD, DROP, MANIFEST = "upload", "download", "drop", "manifest"
ATTACH, DETACH = "attach", "detach"  # a storage's place in its cloud made / removed


@dataclass
class TransferJob:
    kind: str                # UPLOAD, DOWNLOAD, DROP (the object of a .cloud.drop),
                             # MANIFEST, ATTACH (with its first manifest), DETACH
    min: int                 # the partition
    place: Place             # its storage: directory, uuid, cloud
    sync: bool
    switches: list = field(default_factory=list)  # fault points armed by error_* switches
    content: str = ""        # MANIFEST: the manifest to write

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TransferJob":
        return cls(**{**data, "place": Place.from_json(data["place"])})


def run(job: TransferJob) -> dict:
    files = PartitionFiles(store_of(job.place), job.sync, objects_of(job.place))
    if job.kind == UPLOAD:
        files.upload(job.min, job.switches)
    elif job.kind == DOWNLOAD:
        files.download(job.min, job.switches, place=job.place)
    elif job.kind == DROP:
        if not files.finish_drop(job.min):
            raise CloudError(f"partition '{job.min}': its object could not be removed from "
                             f"{files.objects.where()}; it is removed at the next open "
                             "(see the log)")
    elif job.kind == MANIFEST:
        files.objects.write(manifest.NAME, job.content.encode())
    elif job.kind == ATTACH:
        files.objects.attach()
        files.objects.write(manifest.NAME, job.content.encode())
    elif job.kind == DETACH:
        files.objects.detach()
    else:
        raise ValueError(f"unknown transfer {job.kind!r}")
    return {}
