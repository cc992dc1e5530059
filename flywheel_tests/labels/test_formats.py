"""Every file format and CRS users bring ends up as the same lon/lat labels."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from flywheel_core.labels.errors import LabelFileError
from flywheel_core.labels.importer import read_label_file
from flywheel_tests.labels.samples import H3_RES, S2_LEVEL, sample_frame, write


def _read(path: Path, **kwargs):
    return read_label_file(path, s2_level=S2_LEVEL, h3_resolution=H3_RES, **kwargs)


def _geoms(batch) -> list:
    return [shapely.normalize(g) for g in shapely.from_wkb(batch.table["geometry"].to_pylist())]


def _same_geometries(a, b, tolerance: float) -> bool:
    """Same shapes within `tolerance` degrees, whatever the ring start or orientation."""
    return len(a) == len(b) and all(
        x.geom_type == y.geom_type and shapely.hausdorff_distance(x, y) <= tolerance
        for x, y in zip(a, b, strict=True)
    )


def _zip_shapefile(shp: Path) -> Path:
    target = shp.with_name(shp.stem + ".shp.zip")
    with zipfile.ZipFile(target, "w") as z:
        for part in shp.parent.glob(shp.stem + ".*"):
            if part.suffix in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
                z.write(part, part.name)
    return target


@pytest.mark.parametrize("name", ["pv.geojson", "pv.gpkg", "pv.shp", "pv.shp.zip", "pv.parquet"])
def test_formats_agree(tmp_path: Path, name: str) -> None:
    polygons_only = "shp" in name  # a shapefile holds one geometry type
    reference = _read(write(sample_frame(not polygons_only), tmp_path / "ref.geojson"))
    if name.endswith(".zip"):
        path = _zip_shapefile(write(sample_frame(False), tmp_path / "pv.shp"))
    else:
        path = write(sample_frame(not polygons_only), tmp_path / name)
    batch = _read(path)
    n = 3 if polygons_only else 4
    assert batch.n_read == n and batch.table.num_rows == n and batch.rejects == []
    assert batch.table["source"].to_pylist() == ["pv"] * n
    assert batch.table["source_id"].to_pylist() == ["101", "102", "103", "104"][:n]
    assert batch.table["install_date"].to_pylist()[0].isoformat() == "2018-01-01"
    # Ids come from (source, id): the same across formats once the source name agrees.
    renamed = _read(path, source="ref")
    assert renamed.table["label_id"].to_pylist() == reference.table["label_id"].to_pylist()[:n]
    assert _same_geometries(_geoms(batch), _geoms(reference)[:n], 1e-9)


def test_multi_layer_geopackage_needs_a_layer(tmp_path: Path) -> None:
    path = tmp_path / "two.gpkg"
    sample_frame().to_file(path, layer="roofs")
    sample_frame().iloc[:2].to_file(path, layer="parks")
    with pytest.raises(LabelFileError, match="--layer") as info:
        _read(path)
    assert "roofs" in str(info.value) and "parks" in str(info.value)
    assert _read(path, layer="parks").table.num_rows == 2


@pytest.mark.parametrize("epsg", [4269, 32633, 3035])  # NAD83, UTM 33N, ETRS89-LAEA
def test_any_crs_gives_the_same_lonlat(tmp_path: Path, epsg: int) -> None:
    frame = sample_frame()
    reference = _read(write(frame, tmp_path / "wgs84.gpkg"))
    projected = _read(write(frame.to_crs(epsg), tmp_path / f"epsg{epsg}.gpkg"), source="wgs84")
    assert _same_geometries(_geoms(projected), _geoms(reference), 1e-6)
    if epsg != 4269:  # projected coordinates do round-trip ids only through the id column
        assert projected.table["label_id"].to_pylist() == reference.table["label_id"].to_pylist()


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_crs_less_lonlat_file_is_assumed_wgs84(tmp_path: Path, caplog) -> None:
    frame = sample_frame(False).set_crs(None, allow_override=True)
    path = write(frame, tmp_path / "noprj.shp")
    assert not path.with_suffix(".prj").exists()
    caplog.set_level(logging.WARNING)
    batch = _read(path)
    assert batch.table.num_rows == 3
    assert any("assuming EPSG:4326" in w for w in batch.warnings)
    assert any("assuming EPSG:4326" in r.getMessage() for r in caplog.records)


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_crs_less_projected_file_is_a_clear_error(tmp_path: Path) -> None:
    frame = sample_frame(False).to_crs(32633).set_crs(None, allow_override=True)
    path = write(frame, tmp_path / "utm_noprj.shp")
    with pytest.raises(LabelFileError, match="has no CRS"):
        _read(path)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text("this is not json")
    with pytest.raises(LabelFileError, match=r"bad\.geojson"):
        _read(bad)
    with pytest.raises(LabelFileError, match="no such file"):
        _read(tmp_path / "missing.gpkg")
    plain = tmp_path / "plain.parquet"
    gpd.pd.DataFrame({"a": [1]}).to_parquet(plain)
    with pytest.raises(LabelFileError, match=r"plain\.parquet"):
        _read(plain)
