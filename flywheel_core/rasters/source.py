"""Turn a path or URI into a local file GDAL can read.

An s3:// object is downloaded (streamed to disk) through the boto3 client the caller supplies
(dagster-aws's in production, moto's in tests) rather than read through GDAL's /vsis3: the
registration hashes every byte anyway, a local copy makes that one pass, and no GDAL-specific S3
configuration has to mirror the project's. Nothing here reads credentials.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flywheel_core.rasters.inspect import RasterError
from flywheel_core.store.objects import split_s3

log = logging.getLogger(__name__)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def canonical_uri(uri: str) -> str:
    """What the registry records: the s3:// URI as given, or the absolute local path."""
    if is_s3(uri):
        return uri
    return str(Path(uri.removeprefix("file://")).expanduser().resolve())


def local_file(uri: str, workdir: Path, s3_client: Any | None = None) -> Path:
    """A local path for `uri`: the file itself, or a download of the s3:// object into workdir."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        if not key or key.endswith("/"):
            raise RasterError(f"{uri}: an s3:// URI must name an object, not a bucket or prefix")
        if s3_client is None:
            raise RasterError(f"{uri}: no S3 client configured to read it")
        dst = workdir / Path(key).name
        log.info("downloading %s", uri)
        try:
            s3_client.download_file(bucket, key, str(dst))
        except Exception as exc:  # botocore errors, without importing botocore here
            text = str(exc)
            if "404" in text or "Not Found" in text or "NoSuchKey" in text:
                raise RasterError(f"{uri}: no such object") from None
            raise
        return dst
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        raise RasterError(f"{uri}: unsupported scheme {scheme!r}; give a local path or s3:// URI")
    path = Path(canonical_uri(uri))
    if not path.exists():
        raise RasterError(f"{uri}: no such file")
    return path
