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
    kind: str                # UPLOAD, DOWNLOAD, DROP (a retired object, its marker),
                             # MANIFEST, ATTACH (with its first manifest), DETACH
    min: int                 # the partition
    place: Place             # its storage: directory, uuid, cloud
    sync: bool
    switches: list = field(default_factory=list)  # fault points armed by error_* switches
    content: str = ""        # MANIFEST: the manifest to write; DROP: the object
    previous: bool = False   # MANIFEST: tell what the version it replaces named
    generation: int = 0      # MANIFEST: the last one made (0: not known)

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
        if not files.finish_drop(job.content):
            raise CloudError(f"partition '{job.min}': its retired object {job.content} could "
                             f"not be removed from {files.objects.where()}; its removal is "
                             "tried again later (see the log)")
    elif job.kind == MANIFEST:
        gen, named = manifest.publish(files.objects, job.content.encode(), job.previous,
                                      job.generation)
        return {"named": named, "generation": gen}
    elif job.kind == ATTACH:
        files.objects.attach()
        manifest.publish(files.objects, job.content.encode())
    elif job.kind == DETACH:
        _detach(files)
    else:
        raise ValueError(f"unknown transfer {job.kind!r}")
    return {}


def _detach(files: PartitionFiles) -> None:
    """The storage leaves its cloud (nothing of it is there but what it retired):
    its retired objects and its manifests go at once, then its place if empty."""
    for object_, _ in files.retired():
        files.finish_drop(object_)
    for name in files.objects.list():
        if manifest.is_manifest(name):
            files.objects.remove(name)
    files.objects.detach()
