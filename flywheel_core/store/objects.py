"""The object store: checkpoints, probability COGs and exports, in a local folder or on S3.

One small interface (put, get, exists, uri) over both, so assets never branch on where the bytes
go. S3 goes through a boto3 client the caller supplies (dagster-aws's S3Resource in production,
a moto server in tests); nothing here reads credentials.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class ObjectStore(Protocol):
    def put(self, local: Path, key: str) -> str: ...
    def get(self, key: str, local: Path) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def uri(self, key: str) -> str: ...


class LocalStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def uri(self, key: str) -> str:
        return str((self.root / key).resolve())

    def put(self, local: Path, key: str) -> str:
        dst = self.root / key
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".partial")
        shutil.copyfile(local, tmp)
        tmp.replace(dst)  # readers never see half a file
        return self.uri(key)

    def get(self, key: str, local: Path) -> Path:
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / key, local)
        return local

    def exists(self, key: str) -> bool:
        return (self.root / key).exists()


class S3Store:
    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put(self, local: Path, key: str) -> str:
        self.client.upload_file(str(local), self.bucket, self._key(key))
        return self.uri(key)

    def get(self, key: str, local: Path) -> Path:
        local.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, self._key(key), str(local))
        return local

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:  # botocore ClientError 404, without importing botocore here
            if "404" in str(exc) or "Not Found" in str(exc):
                return False
            raise
        return True


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} is not an s3://bucket/prefix URI")
    return bucket, prefix


@dataclass(frozen=True)
class S3Endpoint:
    """Where S3 is, from the environment: FLYWHEEL_S3_ENDPOINT (host:port or URL), _USE_SSL,
    AWS_REGION. Credentials are not read here: boto3 finds them itself, never logged."""

    url: str | None
    use_ssl: bool
    region: str

    @classmethod
    def from_env(cls) -> S3Endpoint:
        endpoint = os.environ.get("FLYWHEEL_S3_ENDPOINT")
        use_ssl = os.environ.get("FLYWHEEL_S3_USE_SSL", "true").lower() not in ("0", "false", "no")
        url = None
        if endpoint:
            url = (
                endpoint if "://" in endpoint else f"{'https' if use_ssl else 'http'}://{endpoint}"
            )
        return cls(url, use_ssl, os.environ.get("AWS_REGION", "us-east-1"))
