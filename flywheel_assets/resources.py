"""Resources, built from the environment so the same definitions serve a laptop and production."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from flywheel_core.imagery.catalog import StacCatalog
from flywheel_core.settings import Settings
from flywheel_resources.ducklake import DuckLakeResource
from flywheel_resources.gpu import GPUResource
from flywheel_resources.lancedb_io import LanceDBIOManager, LanceDBResource
from flywheel_resources.object_store import ObjectStoreResource


class ImageryResource(ConfigurableResource):
    """Where scenes come from: a static STAC catalog (the synthetic world writes one)."""

    catalog_path: str = Field(
        default_factory=lambda: str(Settings.from_env().world_dir / "catalog.json"),
        description="Path of a static STAC catalog.json.",
    )
    vhr_collection: str = "synthetic-vhr"
    s2_collection: str = "synthetic-s2-l2a"
    previews_dir: str = Field(
        default_factory=lambda: str(Settings.from_env().data_dir / "previews"),
        description="Folder for PNG previews of materializations.",
    )

    def catalog(self) -> StacCatalog:
        return StacCatalog(Path(self.catalog_path))


def build_resources() -> dict[str, object]:
    lance_uri = Settings.from_env().lancedb_uri
    return {
        "ducklake": DuckLakeResource(),
        "lance_io": LanceDBIOManager(uri=lance_uri),
        "lancedb": LanceDBResource(uri=lance_uri),
        "objects": ObjectStoreResource(),
        "imagery": ImageryResource(),
        "gpu": GPUResource(),
    }
