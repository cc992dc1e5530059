"""Labels across the antimeridian: one shape, right centroid and cell, split storage, no band.

Taveuni (Fiji) lies on lon 180: a 40 m × 30 m roof there, written the RFC 7946 way (a ring from
179.9998 to -179.9998) and the pre-split way (a MultiPolygon either side of the line), and a
point label whose 5 m prompt reaches over the line.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon, box

from flywheel_core.geo import s2
from flywheel_core.labels.importer import read_label_file
from flywheel_core.labels.ingest import import_label_file
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import labels_for_cell
from flywheel_tests.labels.samples import H3_RES, S2_LEVEL

GEOD = Geod(ellps="WGS84")
LAT = -16.79
HALF_W = 20.0 / (111_320.0 * np.cos(np.radians(LAT)))  # 20 m in degrees of longitude
HALF_H = 15.0 / 110_574.0
ROOF_AREA = 40.0 * 30.0


@pytest.fixture
def lake(tmp_path: Path) -> LakeConfig:
    return LakeConfig(
        catalog=f"duckdb:{tmp_path / 'lake' / 'catalog.ducklake'}",
        data_path=str(tmp_path / "lake" / "files"),
    )


def _ring_roof() -> Polygon:
    west, east = 180.0 - HALF_W, -180.0 + HALF_W
    return Polygon(
        [(west, LAT - HALF_H), (east, LAT - HALF_H), (east, LAT + HALF_H), (west, LAT + HALF_H)]
    )


def _split_roof() -> MultiPolygon:
    return MultiPolygon(
        [
            box(180.0 - HALF_W, LAT - HALF_H + 0.001, 180.0, LAT + HALF_H + 0.001),
            box(-180.0, LAT - HALF_H + 0.001, -180.0 + HALF_W, LAT + HALF_H + 0.001),
        ]
    )


def _file(tmp_path: Path) -> Path:
    near = box(179.5, LAT, 179.5002, LAT + 0.0002)  # close to the line, not across it
    frame = gpd.GeoDataFrame(
        {"id": ["ring", "split", "point", "near"]},
        geometry=[_ring_roof(), _split_roof(), Point(179.99999, LAT + 0.002), near],
        crs=4326,
    )
    path = tmp_path / "taveuni.geojson"
    frame.to_file(path)
    return path


def _rows(tmp_path: Path) -> dict[str, dict]:
    batch = read_label_file(_file(tmp_path), s2_level=S2_LEVEL, h3_resolution=H3_RES)
    assert batch.rejects == []
    return {r["source_id"]: r for r in batch.table.to_pylist()}


def test_the_split_is_reported(tmp_path: Path) -> None:
    batch = read_label_file(_file(tmp_path), s2_level=S2_LEVEL, h3_resolution=H3_RES)
    assert "2 × crosses the antimeridian: stored split at ±180" in batch.warnings


@pytest.mark.parametrize("name", ["ring", "split"])
def test_a_roof_across_the_line_gets_its_real_place_and_size(tmp_path: Path, name: str) -> None:
    row = _rows(tmp_path)[name]
    assert abs(abs(row["centroid_lon"]) - 180.0) < 1e-6  # not lon 0
    assert row["centroid_lat"] == pytest.approx(LAT + (0.001 if name == "split" else 0), abs=1e-5)
    assert row["area_m2"] == pytest.approx(ROOF_AREA, rel=0.01)
    cell_lon, cell_lat = s2.cell_center(row["s2_cell"])
    assert abs(abs(cell_lon) - 180.0) < 0.01 and abs(cell_lat - LAT) < 0.01  # Fiji, not Africa
    # bbox: the short way round, xmin > xmax.
    assert row["bbox_xmin"] == pytest.approx(180.0 - HALF_W)
    assert row["bbox_xmax"] == pytest.approx(-180.0 + HALF_W)
    stored = shapely.from_wkb(row["geometry"])
    assert isinstance(stored, MultiPolygon) and len(stored.geoms) == 2
    lons = shapely.get_coordinates(stored)[:, 0]
    assert (np.abs(lons) <= 180.0).all()
    assert 1 <= len(row["s2_cells"]) <= 4
    for token in row["s2_cells"]:
        assert abs(abs(s2.cell_center(token)[0]) - 180.0) < 0.01


def test_a_point_whose_prompt_reaches_over_the_line(tmp_path: Path) -> None:
    row = _rows(tmp_path)["point"]
    assert row["centroid_lon"] == pytest.approx(179.99999)
    prompt = shapely.from_wkb(row["prompt_geometry"])
    assert isinstance(prompt, MultiPolygon)
    assert row["bbox_xmin"] > row["bbox_xmax"]
    # The bbox spans 10 m on the ground, not the globe.
    _, _, width = GEOD.inv(
        row["bbox_xmin"], row["centroid_lat"], row["bbox_xmax"], row["centroid_lat"]
    )
    assert width == pytest.approx(10.0, rel=0.02)


def test_a_roof_near_but_not_across_the_line_is_unchanged(tmp_path: Path) -> None:
    row = _rows(tmp_path)["near"]
    assert row["bbox_xmin"] < row["bbox_xmax"]
    assert shapely.from_wkb(row["geometry"]).geom_type == "Polygon"


def test_it_seeds_only_cells_on_the_line_not_along_its_latitude(
    lake: LakeConfig, tmp_path: Path
) -> None:
    (tmp_path / "read").mkdir()
    rows = _rows(tmp_path / "read")
    with lake_connection(lake) as con:
        import_label_file(con, _file(tmp_path), s2_level=S2_LEVEL, h3_resolution=H3_RES)
        far = date(2100, 1, 1)
        for lon in (0.0, 90.0, -90.0, 179.0, -179.0):
            cell = s2.cell_from_lonlat(lon, LAT, S2_LEVEL)
            assert labels_for_cell(con, cell, far).num_rows == 0, lon
        ring = rows["ring"]
        for token in ring["s2_cells"]:
            found = labels_for_cell(con, token, far)["source_id"].to_pylist()
            assert "ring" in found
        # Both sides of the line see the roof.
        for lon in (179.99999, -179.99999):
            cell = s2.cell_from_lonlat(lon, LAT, S2_LEVEL)
            assert "ring" in labels_for_cell(con, cell, far)["source_id"].to_pylist()
        all_cells = con.execute("SELECT DISTINCT unnest(s2_cells) FROM labels").fetchall()
        assert len(all_cells) < 20  # not a ring of cells around the Earth
