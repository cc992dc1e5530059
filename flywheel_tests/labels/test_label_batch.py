"""The batch (vectorized) import gives what the one-label-at-a-time functions give.

A mixed file (valid polygons, multipolygons, points, a self-intersecting ring, a line, blanks and
NaNs in the attributes) is read once; every row is then recomputed with the scalar reference
functions (pyproj area, s2sphere cells and covering, h3, label_uuid, properties_json).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon

from flywheel_core.geo.h3index import h3_cell
from flywheel_core.geo.projection import area_m2, buffer_m
from flywheel_core.geo.s2 import cell_from_lonlat, covering
from flywheel_core.labels.columns import properties_column, properties_json
from flywheel_core.labels.geometry import clean_geometry
from flywheel_core.labels.ids import label_uuid
from flywheel_core.labels.importer import read_label_file
from flywheel_tests.labels.samples import H3_RES, LAT, LON, S2_LEVEL, offset, rect

N = 240


def _frame() -> gpd.GeoDataFrame:
    rng = np.random.default_rng(5)
    geoms: list = []
    for i in range(N):
        x, y = offset(LON, LAT, rng.uniform(0, 3000), rng.uniform(0, 3000))
        kind = i % 8
        if kind == 0:
            geoms.append(Point(x, y))
        elif kind == 1:
            geoms.append(MultiPolygon([rect(x, y, 8, 8), rect(*offset(x, y, 20, 0), 6, 9)]))
        elif kind == 2:
            x1, y1 = offset(x, y, 15, 15)
            geoms.append(Polygon([(x, y), (x1, y1), (x1, y), (x, y1)]))  # bowtie: repaired
        elif kind == 3 and i % 16 == 3:
            geoms.append(LineString([(x, y), offset(x, y, 10, 0)]))  # rejected
        else:
            geoms.append(rect(x, y, rng.uniform(5, 400), rng.uniform(5, 40)))
    return gpd.GeoDataFrame(
        {
            "id": [f"r{i}" if i % 5 else None for i in range(N)],
            "year": [2015 + i % 9 if i % 7 else None for i in range(N)],
            "name": ["" if i % 11 == 0 else f"site ü{i}" for i in range(N)],
            "capacity": [float(i) / 3 if i % 4 else np.nan for i in range(N)],
            "rooftop": [bool(i % 2) for i in range(N)],
        },
        geometry=geoms,
        crs=4326,
    )


def test_every_column_matches_the_scalar_reference(tmp_path: Path) -> None:
    frame = _frame()
    path = tmp_path / "mixed.gpkg"
    frame.to_file(path)
    read_back = gpd.read_file(path)
    batch = read_label_file(path, s2_level=S2_LEVEL, h3_resolution=H3_RES, id_column="id")
    assert batch.n_read == N
    rejected = {r.row for r in batch.rejects}
    assert rejected == {i for i in range(N) if i % 16 == 3}
    kept = [i for i in range(N) if i not in rejected]
    assert batch.table.num_rows == len(kept)
    table_rows = batch.table.to_pylist()
    for i, row in zip(kept, table_rows, strict=True):
        geometry = clean_geometry(read_back.geometry.iloc[i]).geometry
        assert geometry is not None
        sid = None if i % 5 == 0 else f"r{i}"
        assert row["source_id"] == sid
        assert row["label_id"] == label_uuid("mixed", sid, geometry)
        assert shapely.from_wkb(row["geometry"]).equals_exact(geometry, 0)
        point = isinstance(geometry, Point)
        centroid = geometry if point else geometry.centroid
        assert (row["centroid_lon"], row["centroid_lat"]) == pytest.approx(
            (centroid.x, centroid.y), abs=1e-12
        )
        assert row["s2_cell"] == cell_from_lonlat(centroid.x, centroid.y, S2_LEVEL)
        assert row["h3_cell"] == h3_cell(centroid.x, centroid.y, H3_RES)
        prompt = shapely.from_wkb(row["prompt_geometry"])
        if point:
            assert row["area_m2"] is None
            reference = buffer_m(geometry, 5.0)
            assert prompt.symmetric_difference(reference).area < 0.02 * reference.area
        else:
            assert row["area_m2"] == pytest.approx(area_m2(geometry), rel=1e-6)
            assert prompt.equals_exact(geometry, 0)
        assert row["s2_cells"] == covering(prompt, S2_LEVEL)
        assert (row["bbox_xmin"], row["bbox_ymin"], row["bbox_xmax"], row["bbox_ymax"]) == (
            prompt.bounds
        )
        attrs = read_back.drop(columns=["geometry"]).iloc[i].to_dict()
        expected = properties_json({k: v for k, v in attrs.items() if k not in ("id", "year")})
        assert row["properties"] == expected
        year = read_back["year"].iloc[i]
        assert row["install_date"] == (None if pd.isna(year) else date(int(year), 1, 1))


def test_properties_column_is_properties_json_row_by_row() -> None:
    frame = pd.DataFrame(
        {
            "b": [1, 2, 3],
            "a": ["x", "  ", 'é"q'],
            "f": [1.5, np.nan, float("inf")],
            "t": [True, False, True],
            "d": [date(2020, 1, 2), None, pd.Timestamp("2021-03-04 05:06:07")],
            "o": [[1, 2], {"k": np.int64(3)}, b"\x01"],
            "skip": [0, 0, 0],
        }
    )
    got = properties_column(frame, {"skip"})
    want = [
        properties_json({k: v for k, v in r.items() if k != "skip"})
        for r in frame.to_dict(orient="records")
    ]
    assert got == want
