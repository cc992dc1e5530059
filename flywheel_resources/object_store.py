"""Object store resource: a local folder by default, S3 through dagster-aws when the root is s3://."""

from __future__ import annotations

import os

from dagster import ConfigurableResource
from pydantic import Field

from flywheel_core.settings import Settings
from flywheel_core.store.objects import LocalStore, ObjectStore, S3Endpoint, S3Store, split_s3


class ObjectStoreResource(ConfigurableResource):
    root: str = Field(
        default_factory=lambda: os.environ.get(
            "FLYWHEEL_OBJECT_STORE", str(Settings.from_env().data_dir / "objects")
        ),
        description="Local folder or s3://bucket/prefix for checkpoints and prediction COGs.",
    )

    def store(self) -> ObjectStore:
        if not self.root.startswith("s3://"):
            return LocalStore(self.root)
        from dagster_aws.s3 import S3Resource

        where = S3Endpoint.from_env()
        client = S3Resource(
            endpoint_url=where.url, use_ssl=where.use_ssl, region_name=where.region
        ).get_client()
        bucket, prefix = split_s3(self.root)
        return S3Store(bucket, prefix, client)
