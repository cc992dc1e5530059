"""A DuckDB-file lake in tmp_path and a way to put seed labels in it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry.base import BaseGeometry

from flywheel_core.labels.ingest import import_label_file
from flywheel_core.lake.config import LakeConfig

S2_LEVEL = 15
H3_RES = 11


@pytest.fixture
def lake(tmp_path: Path) -> LakeConfig:
    return LakeConfig(
        catalog=f"duckdb:{tmp_path / 'c.ducklake'}", data_path=str(tmp_path / "files")
    )


def import_seeds(
    con,
    folder: Path,
    geometries: Sequence[BaseGeometry],
    install_dates: Sequence[date | None],
    name: str = "seeds",
):
    """Import the geometries as a seed label file; returns the ImportResult."""
    frame = gpd.GeoDataFrame(
        {
            "id": [f"{name}-{i}" for i in range(len(geometries))],
            "install_date": [d.isoformat() if d else None for d in install_dates],
        },
        geometry=list(geometries),
        crs=4326,
    )
    path = folder / f"{name}.geojson"
    frame.to_file(path)
    _, result = import_label_file(
        con, path, date_column="install_date", s2_level=S2_LEVEL, h3_resolution=H3_RES
    )
    return result
