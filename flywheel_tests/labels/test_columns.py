"""Attribute columns: ids, dates, areas, DOI and the leftovers, however the source names them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Polygon

from flywheel_core.labels.columns import date_value, id_value
from flywheel_core.labels.errors import LabelFileError
from flywheel_core.labels.ids import label_uuid
from flywheel_core.labels.importer import read_label_file, source_name
from flywheel_tests.labels.samples import H3_RES, LAT, LON, S2_LEVEL, offset, rect


def _read(path: Path, **kwargs):
    return read_label_file(path, s2_level=S2_LEVEL, h3_resolution=H3_RES, **kwargs)


def _frame(columns: dict, n: int = 3) -> gpd.GeoDataFrame:
    geoms = [rect(*offset(LON, LAT, 40 * i, 0), 10, 10) for i in range(n)]
    return gpd.GeoDataFrame(columns, geometry=geoms, crs=4326)


def _write(frame: gpd.GeoDataFrame, tmp_path: Path, name: str = "ds.geojson") -> Path:
    path = tmp_path / name
    frame.to_file(path)
    return path


def test_km2_area_column_is_converted(tmp_path: Path) -> None:
    path = _write(_frame({"Area_KM2": [0.0001, 0.0025, None]}), tmp_path)
    assert _read(path).table["reported_area_m2"].to_pylist() == [
        pytest.approx(100.0),
        pytest.approx(2500.0),
        None,
    ]


@pytest.mark.parametrize(("column", "factor"), [("area_m2", 1.0), ("area", 1.0), ("area_ha", 1e4)])
def test_other_area_units(tmp_path: Path, column: str, factor: float) -> None:
    path = _write(_frame({column: [1.5, 2.0, 3.0]}), tmp_path)
    got = _read(path).table["reported_area_m2"].to_pylist()
    assert got == [pytest.approx(v * factor) for v in (1.5, 2.0, 3.0)]


def test_install_dates_from_dates_years_and_named_columns(tmp_path: Path) -> None:
    path = _write(_frame({"Installation_Date": ["2019-05-02", "2021", "garbage"]}), tmp_path)
    assert _read(path).table["install_date"].to_pylist() == [
        date(2019, 5, 2),
        date(2021, 1, 1),
        None,
    ]
    path = _write(
        _frame({"built": [2015, 2016, 2017], "date": ["x", "y", "z"]}), tmp_path, "b.gpkg"
    )
    got = _read(path, date_column="BUILT").table["install_date"].to_pylist()
    assert got == [date(2015, 1, 1), date(2016, 1, 1), date(2017, 1, 1)]
    assert date_value(2020.0) == date(2020, 1, 1) and date_value(12.5) is None


def test_source_ids_doi_properties_and_provenance(tmp_path: Path) -> None:
    path = _write(_frame({"OBJECTID": [7, 8, 9], "owner": ["x", None, "z"]}), tmp_path)
    table = _read(path, doi="10.5281/zenodo.123", source="uk_pv").table
    assert table["source_id"].to_pylist() == ["7", "8", "9"]
    assert table["label_id"].to_pylist()[0] == label_uuid("uk_pv", "7", Polygon())
    assert set(table["doi"].to_pylist()) == {"10.5281/zenodo.123"}
    assert set(table["source"].to_pylist()) == {"uk_pv"}
    assert set(table["source_kind"].to_pylist()) == {"seed"}
    assert set(table["status"].to_pylist()) == {"active"}
    assert set(table["round"].to_pylist()) == {0}
    assert set(table["confidence"].to_pylist()) == {1.0}
    assert [json.loads(p) for p in table["properties"].to_pylist()] == [
        {"owner": "x"},
        {"owner": None},
        {"owner": "z"},
    ]
    assert id_value(17.0) == "17" and id_value(float("nan")) is None and id_value(" a ") == "a"


def test_doi_column_is_used_when_no_doi_option(tmp_path: Path) -> None:
    path = _write(_frame({"DOI": ["10.1/a", "10.1/b", None]}), tmp_path)
    assert _read(path).table["doi"].to_pylist() == ["10.1/a", "10.1/b", None]


def _reordered(polygon: Polygon) -> Polygon:
    ring = list(polygon.exterior.coords)[:-1][::-1]
    return Polygon([(x + 1e-9, y) for x, y in [*ring[1:], *ring[:1]]])


def test_ids_without_id_column_are_stable_and_vertex_order_free(tmp_path: Path) -> None:
    frame = _frame({"name": ["a", "b", "c"]})
    first = _read(_write(frame, tmp_path, "one.geojson"), source="s").table["label_id"]
    # The same shapes with reversed rings and a shifted start vertex, well below 1e-7 deg.
    shuffled = frame.copy()
    shuffled["geometry"] = [_reordered(g) for g in frame.geometry]
    second = _read(_write(shuffled, tmp_path, "two.gpkg"), source="s").table["label_id"]
    assert first.to_pylist() == second.to_pylist()
    assert len(set(first.to_pylist())) == 3
    other = _read(_write(frame, tmp_path, "three.geojson"), source="other").table["label_id"]
    assert set(other.to_pylist()).isdisjoint(first.to_pylist())


@pytest.mark.filterwarnings("ignore:Several features with id")
def test_repeated_auto_id_column_falls_back_to_geometry(tmp_path: Path) -> None:
    path = _write(_frame({"id": [1, 1, 2]}), tmp_path)
    batch = _read(path)
    assert len(set(batch.table["label_id"].to_pylist())) == 3
    assert batch.table["source_id"].to_pylist() == [None, None, None]
    assert any("repeated values" in w for w in batch.warnings)


def test_missing_named_column_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(_frame({"id": [1, 2, 3]}), tmp_path)
    with pytest.raises(LabelFileError, match="--id-column 'uid' is not a column"):
        _read(path, id_column="uid")
    with pytest.raises(LabelFileError, match="--date-column"):
        _read(path, date_column="when")
    with pytest.raises(LabelFileError, match="point buffer"):
        _read(path, point_buffer_m=0)


def test_source_name_strips_dataset_suffixes() -> None:
    assert source_name(Path("/x/pv_uk.shp.zip")) == "pv_uk"
    assert source_name(Path("labels.v2.geojson")) == "labels.v2"
