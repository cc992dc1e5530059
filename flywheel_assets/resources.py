"""Resources, built from the environment so the same definitions serve a laptop and production."""

from __future__ import annotations

from flywheel_core.settings import Settings
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.gpu import GPUResource
from flywheel_resources.imagery import ImageryResource
from flywheel_resources.lancedb_io import LanceDBIOManager, LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource

__all__ = ["ImageryResource", "build_resources"]


def build_resources() -> dict[str, object]:
    lance_uri = Settings.from_env().lancedb_uri
    return {
        "ducklake": DuckLakeResource(),
        "lance_io": LanceDBIOManager(uri=lance_uri),
        "lancedb": LanceDBResource(uri=lance_uri),
        "objects": ObjectStoreResource(),
        "imagery": ImageryResource.from_env(),
        "gpu": GPUResource(),
    }
