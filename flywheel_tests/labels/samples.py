"""Small label sets written into tmp_path by the tests (no binary fixtures in the repo)."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
from shapely.geometry import Point, Polygon

from flywheel_core.settings import Settings

# Berlin rooftops: UTM zone 33N (EPSG:32633).
LON, LAT = 13.4050, 52.5200
S2_LEVEL = Settings().s2_level
H3_RES = Settings().h3_resolution


def offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """Approximate lon/lat of a point moved by metres (enough to lay out test features)."""
    dlat = north_m / 111_320.0
    dlon = east_m / (111_320.0 * math.cos(math.radians(lat)))
    return lon + dlon, lat + dlat


def rect(lon: float, lat: float, width_m: float, height_m: float) -> Polygon:
    x1, y1 = offset(lon, lat, width_m, height_m)
    return Polygon([(lon, lat), (x1, lat), (x1, y1), (lon, y1)])


def sample_frame(with_point: bool = True) -> gpd.GeoDataFrame:
    """Three rooftop polygons and one point, spread over a few hundred metres.

    Shapefiles hold one geometry type, so they get the polygons only (`with_point=False`).
    """
    geoms = [
        rect(*offset(LON, LAT, 0, 0), 12, 20),
        rect(*offset(LON, LAT, 150, 40), 30, 15),
        rect(*offset(LON, LAT, 420, 310), 25, 25),
        Point(*offset(LON, LAT, 60, 260)),
    ]
    frame = gpd.GeoDataFrame(
        {
            "id": [101, 102, 103, 104],
            "year": [2018, 2020, 2023, 2019],
            "area_km2": [0.00024, 0.00045, 0.000625, None],
            "name": ["a", "b", "c", "d"],
        },
        geometry=geoms,
        crs=4326,
    )
    return frame if with_point else frame.iloc[:3].copy()


def write(frame: gpd.GeoDataFrame, path: Path, **kwargs: object) -> Path:
    if path.suffix in (".parquet", ".geoparquet"):
        frame.to_parquet(path)
    else:
        frame.to_file(path, **kwargs)
    return path


def sample_file(tmp_path: Path, name: str = "rooftops.geojson") -> Path:
    return write(sample_frame(), tmp_path / name)
