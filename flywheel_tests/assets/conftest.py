"""A tiny world with its seeds in DuckLake and a Dagster instance that knows its cell."""

import pytest
from dagster import DagsterInstance

from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_assets.resources import ImageryResource
from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.labels.ingest import import_label_file
from flywheel_core.lake.connection import LakeConfig, lake_connection
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.gpu import GPUResource
from flywheel_resources.lancedb_io import LanceDBIOManager, LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource
from flywheel_tests.fixtures.world import TINY_CELL

NOWHERE = cell_from_lonlat(12.5, 47.5, 15)  # a registered cell the world has no imagery for


@pytest.fixture(scope="module")
def env(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest")
    lake = LakeConfig(catalog=f"duckdb:{root / 'catalog.ducklake'}", data_path=str(root / "lake"))
    with lake_connection(lake) as con:
        import_label_file(
            con, tiny_world.seed_labels_path, source="synthetic-seed", s2_level=15, h3_resolution=11
        )
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(S2_CELLS_NAME, [TINY_CELL, NOWHERE])
    resources = {
        "ducklake": DuckLakeResource(catalog=lake.catalog, data_path=lake.data_path),
        "lance_io": LanceDBIOManager(uri=str(root / "lancedb")),
        "imagery": ImageryResource.for_world(tiny_world.catalog_path.parent, root),
        "gpu": GPUResource(device="cpu", model_dir=str(root / "models")),
        "lancedb": LanceDBResource(uri=str(root / "lancedb")),
        "objects": ObjectStoreResource(root=str(root / "objects")),
    }
    return {"root": root, "instance": instance, "resources": resources, "world": tiny_world}
