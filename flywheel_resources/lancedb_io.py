"""Dagster IO manager that stores each asset as one LanceDB table, one partition per write.

lancedb (imported by flywheel_core.store.lance_tables) takes a second or more to import, so it is
imported inside the methods that use it: loading the code location does not pay for it.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from dagster import (
    AssetKey,
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    MultiPartitionKey,
    OutputContext,
)
from pydantic import Field

from flywheel_core.settings import Settings


def table_name(asset_key: AssetKey) -> str:
    return "__".join(asset_key.path)


def partition_columns(partition_key: str) -> dict[str, str]:
    """Column filter for a Dagster partition key (multi-dimensional keys map one column each)."""
    if isinstance(partition_key, MultiPartitionKey):
        return dict(partition_key.keys_by_dimension)
    cell, sep, day = str(partition_key).partition("|")
    return {"cell": cell, "date": day} if sep else {"partition": str(partition_key)}


class LanceDBIOManager(ConfigurableIOManager):
    """Writes pyarrow Tables (or RecordBatchReaders, streamed) to `<uri>/<asset>.lance`.

    A partitioned output replaces exactly that partition's rows in one commit; an unpartitioned
    output replaces the table. Inputs come back as pyarrow Tables of the requested partitions.
    """

    uri: str = Field(
        default_factory=lambda: Settings.from_env().lancedb_uri,
        description="Local folder or s3:// URI of the LanceDB database.",
    )

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if not isinstance(obj, pa.Table | pa.RecordBatchReader):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; the LanceDB "
                "IO manager stores pyarrow Tables or RecordBatchReaders"
            )
        partition = (
            partition_columns(context.asset_partition_key) if context.has_asset_partitions else {}
        )
        from flywheel_core.store import lance_tables  # lancedb: see the module docstring

        db = lance_tables.connect(self.uri)
        result = lance_tables.replace_partition(db, table_name(context.asset_key), obj, partition)
        context.add_output_metadata(
            {
                "lance_table": result.table,
                "lance_version": result.version,
                "rows_in_partition": result.rows,
                "rows_inserted": result.inserted,
                "rows_updated": result.updated,
                "rows_deleted": result.deleted,
            }
        )

    def load_input(self, context: InputContext) -> pa.Table:
        from flywheel_core.store import lance_tables

        db = lance_tables.connect(self.uri)
        name = table_name(context.asset_key)
        partitions = (
            [partition_columns(k) for k in context.asset_partition_keys]
            if context.has_asset_partitions
            else []
        )
        if name not in db.table_names():
            raise FileNotFoundError(
                f"Lance table {name!r} does not exist under {self.uri}: materialize "
                f"{context.asset_key.to_user_string()} first"
            )
        return lance_tables.read_partitions(db, name, partitions)


class LanceDBResource(ConfigurableResource):
    """Direct LanceDB access for assets that stream a table (training) rather than load it."""

    uri: str = Field(
        default_factory=lambda: Settings.from_env().lancedb_uri,
        description="Same database as the LanceDB IO manager.",
    )

    def connect(self) -> Any:
        from flywheel_core.store import lance_tables

        return lance_tables.connect(self.uri)
