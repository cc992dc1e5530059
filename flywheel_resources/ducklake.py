"""The lake as a Dagster resource.

Only non-secret locations are resource config (they show up in the Dagster UI and run records);
the PostgreSQL password and S3 keys are read from the environment when a connection is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from dagster import ConfigurableResource
from pydantic import Field

from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection
from flywheel_core.settings import Settings


class DuckLakeResource(ConfigurableResource):
    """DuckLake catalog + data path; `connect()` yields a migrated connection per use."""

    catalog: str = Field(
        default_factory=lambda: Settings.from_env().lake_catalog,
        description="duckdb:<path>, sqlite:<path> or postgres:<libpq key=value, no password>.",
    )
    data_path: str = Field(
        default_factory=lambda: Settings.from_env().lake_data_path,
        description="Local folder or s3://bucket/prefix/ for the lake's Parquet files.",
    )
    inline_row_limit: int = Field(
        default=0, description="DuckLake data inlining row limit (0: always write Parquet)."
    )
    lock_timeout_s: float = Field(
        default=60.0, description="How long to wait for a DuckDB-file catalog held by another run."
    )

    def config(self) -> LakeConfig:
        return LakeConfig(
            catalog=self.catalog,
            data_path=self.data_path,
            inline_row_limit=self.inline_row_limit,
        )

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with lake_connection(self.config(), lock_timeout_s=self.lock_timeout_s) as con:
            yield con
