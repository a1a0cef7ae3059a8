"""Clouds: where partition files go past local disk, the one door every byte to
or from a cloud passes through.

  base.py        the interface (Cloud: the verbs, the capabilities a backend
                 declares) and its errors; logging, secrets scrubbed from
                 messages and errors translated, for every backend alike
  registry.py    cloud type -> backend, the only place that knows the names;
                 at_url: the object at a URL a reader was given
  manifest.py    a storage's manifest: which partition files are in its cloud
  s3.py, filesystem.py, mock.py
                 the backends: S3 through s3fs, any fsspec protocol, the
                 directory mock

fsspec and the protocols' packages are imported only when a cloud is used,
so `import monotone` stays light.
"""
from .base import Cloud, CloudError, ObjectMissing, secret_option
from .registry import at_url, backend, check, objects_of, open_cloud

__all__ = ["Cloud", "CloudError", "ObjectMissing", "at_url", "backend",
           "check", "objects_of", "open_cloud", "secret_option"]
