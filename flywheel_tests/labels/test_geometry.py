"""Geometry repair, rejects, metric areas and point prompts."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import (
    LineString,
    MultiPoint,
    MultiPolygon,
    Point,
    Polygon,
)

from flywheel_core.geo.projection import reproject, utm_epsg
from flywheel_core.labels.geometry import clean_geometry
from flywheel_core.labels.importer import read_label_file
from flywheel_tests.labels.samples import H3_RES, LAT, LON, S2_LEVEL, offset, rect

GEOD = Geod(ellps="WGS84")


def _read(path: Path, **kwargs):
    return read_label_file(path, s2_level=S2_LEVEL, h3_resolution=H3_RES, **kwargs)


def _bowtie(lon: float, lat: float) -> Polygon:
    x1, y1 = offset(lon, lat, 20, 20)
    return Polygon([(lon, lat), (x1, y1), (x1, lat), (lon, y1), (lon, lat)])


def test_bad_rows_are_repaired_or_rejected_with_reasons(tmp_path: Path) -> None:
    bowtie = _bowtie(LON, LAT)
    assert not bowtie.is_valid
    geoms = [
        rect(LON, LAT, 10, 10),
        bowtie,
        LineString([(LON, LAT), offset(LON, LAT, 30, 0)]),
        Polygon(),
        None,
        MultiPoint([offset(LON, LAT, 5, 5), offset(LON, LAT, 50, 50)]),
    ]
    frame = gpd.GeoDataFrame({"id": range(6)}, geometry=geoms, crs=4326)
    path = tmp_path / "messy.gpkg"
    frame.to_file(path)
    batch = _read(path)
    assert batch.n_read == 6
    reasons = {r.row: r.reason for r in batch.rejects}
    assert set(reasons) == {2, 3, 4}
    assert "LineString" in reasons[2] and "line" in reasons[2]
    assert reasons[3] == "empty geometry"
    assert reasons[4] == "missing geometry"
    ids = batch.table["source_id"].to_pylist()
    assert ids == ["0", "1", "5"]
    repaired = shapely.from_wkb(batch.table["geometry"][1].as_py())
    assert repaired.is_valid and isinstance(repaired, MultiPolygon) and len(repaired.geoms) == 2
    assert batch.table["area_m2"][1].as_py() == pytest.approx(200.0, rel=0.01)  # two triangles
    first_point = shapely.from_wkb(batch.table["geometry"][2].as_py())
    assert first_point.equals_exact(Point(offset(LON, LAT, 5, 5)), 1e-9)
    assert batch.table["geometry_type"].to_pylist() == ["polygon", "polygon", "point"]
    assert any("repaired Polygon" in w for w in batch.warnings)
    assert any("MultiPoint" in w for w in batch.warnings)


@pytest.mark.parametrize(
    ("geometry", "reason"),
    [
        (Point(float("nan"), 1.0), "non-finite"),
        (Point(200.0, 10.0), "outside longitude"),
        (Point(10.0, -91.0), "outside longitude"),
        (Polygon([(0, 0), (1, 1), (2, 2), (0, 0)]), "no usable polygon"),
        (shapely.GeometryCollection([LineString([(0, 0), (1, 1)])]), "no usable polygon"),
    ],
)
def test_unusable_geometries(geometry, reason: str) -> None:
    cleaned = clean_geometry(geometry)
    assert cleaned.geometry is None
    assert reason in (cleaned.reason or "")


def test_z_coordinates_are_dropped() -> None:
    cleaned = clean_geometry(Point(1.0, 2.0, 3.0))
    assert cleaned.geometry is not None and not cleaned.geometry.has_z


def _utm_square(lon: float, lat: float, side_m: float) -> tuple[Polygon, int]:
    epsg = utm_epsg(lon, lat)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    return Polygon([(x, y), (x + side_m, y), (x + side_m, y + side_m), (x, y + side_m)]), epsg


@pytest.mark.parametrize(("lon", "lat"), [(27.2, 70.1), (9.1, 60.2), (13.4, 52.5)])
def test_areas_are_true_square_metres_at_high_latitude(
    tmp_path: Path, lon: float, lat: float
) -> None:
    square, epsg = _utm_square(lon, lat, 100.0)
    path = tmp_path / "square.gpkg"
    gpd.GeoDataFrame({"id": [1]}, geometry=[square], crs=epsg).to_file(path)
    batch = _read(path)
    area = batch.table["area_m2"][0].as_py()
    assert area == pytest.approx(10_000.0, rel=0.005)
    lonlat = shapely.from_wkb(batch.table["geometry"][0].as_py())
    geodesic = abs(GEOD.geometry_area_perimeter(lonlat)[0])
    assert area == pytest.approx(geodesic, rel=0.001)
    # Web Mercator would inflate it by sec²(lat): about 8.5x at 70°N.
    mercator = reproject(lonlat, 4326, 3857).area
    assert mercator / area == pytest.approx(1 / math.cos(math.radians(lat)) ** 2, rel=0.02)


@pytest.mark.parametrize("radius", [5.0, 12.5])
def test_point_becomes_a_metric_prompt_disc(tmp_path: Path, radius: float) -> None:
    lon, lat = 25.0, 69.9
    path = tmp_path / "points.geojson"
    gpd.GeoDataFrame({"id": [1]}, geometry=[Point(lon, lat)], crs=4326).to_file(path)
    row = _read(path, point_buffer_m=radius).table.to_pylist()[0]
    assert row["geometry_type"] == "point" and row["area_m2"] is None
    prompt = shapely.from_wkb(row["prompt_geometry"])
    assert isinstance(prompt, Polygon)
    fwd = [
        GEOD.inv(lon, lat, x, y)[2] for x, y in list(prompt.exterior.coords)[:-1]
    ]  # geodesic distance of each vertex from the point
    assert min(fwd) == pytest.approx(radius, rel=0.01)
    assert max(fwd) == pytest.approx(radius, rel=0.01)
    assert abs(GEOD.geometry_area_perimeter(prompt)[0]) == pytest.approx(
        math.pi * radius**2, rel=0.01
    )
    assert (row["bbox_xmin"], row["bbox_ymin"], row["bbox_xmax"], row["bbox_ymax"]) == (
        pytest.approx(prompt.bounds[0]),
        pytest.approx(prompt.bounds[1]),
        pytest.approx(prompt.bounds[2]),
        pytest.approx(prompt.bounds[3]),
    )
    assert (row["centroid_lon"], row["centroid_lat"]) == (lon, lat)
