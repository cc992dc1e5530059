"""EarthView: the index search, the mosaic of 384 m tiles, TOA scaling, VISUAL, S3, and errors."""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio

from flywheel_core.geo.s2 import cell_from_lonlat, cell_polygon
from flywheel_core.imagery.sources.earthview import EarthViewSource
from flywheel_core.imagery.sources.registry import make_source
from flywheel_core.imagery.sources.types import Scene, SourceError, TargetGrid
from flywheel_core.imagery.sources.window import window_grid
from flywheel_tests.fixtures.earthview import (
    EarthViewFixture,
    toa_dn,
    upload_tree,
    visual_dn,
    write_earthview_fixture,
)

CELL = cell_from_lonlat(11.575, 48.137, 15)  # Munich, UTM 32N
DAY = date(2022, 8, 20)
OTHER_DAY = date(2022, 9, 3)
ONE = timedelta(days=1)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> EarthViewFixture:
    return write_earthview_fixture(
        tmp_path_factory.mktemp("earthview"), CELL, DAY, other_day=OTHER_DAY
    )


def _mosaic(root: Path | str, **options: object) -> tuple[EarthViewSource, Scene]:
    source = EarthViewSource("vhr", str(root), options)
    [scene] = source.search(CELL, DAY, DAY + ONE)
    return source, scene


def _cell_grid(scene: Scene) -> TargetGrid:
    return TargetGrid.around(cell_polygon(CELL), scene.crs, 1.0)


def _centres(grid: TargetGrid) -> tuple[np.ndarray, np.ndarray]:
    cols = grid.transform.c + np.arange(grid.width) + 0.5
    rows = grid.transform.f - np.arange(grid.height) - 0.5
    e, n = np.meshgrid(cols, rows)
    return e, n


def _expected_dn8(grid: TargetGrid, full_scale: float = 0.4) -> np.ndarray:
    e, n = _centres(grid)
    dn = np.stack([toa_dn(b, e, n) for b in range(4)])
    return np.clip(np.floor(255 * (dn / 10000) / full_scale + 0.5), 0, 255).astype(np.uint8)


def test_search_finds_the_mosaic_of_the_date(tree: EarthViewFixture) -> None:
    source, scene = _mosaic(tree.root)
    assert len(tree.tiles) >= 2
    assert scene.scene_id.startswith("earthview-2022-08-20-")
    assert {p.properties["region"] for p in scene.parts} == {t.region for t in tree.tiles}
    assert tree.others[0].region not in {p.properties["region"] for p in scene.parts}
    assert len({p.scene_id for p in scene.parts}) == len(scene.parts)
    assert scene.crs == "EPSG:32632" and scene.gsd_m == 1.0 and scene.cloud_cover is None
    assert scene.coverage == pytest.approx(1.0)
    assert all(p.coverage < 0.99 for p in scene.parts)
    assert scene.acquired == datetime(2022, 8, 20, 10, 30, 15, tzinfo=UTC)
    assert scene.assets == {}
    assert source.search(CELL, DAY + ONE, OTHER_DAY) == []
    assert source.search(CELL, DAY - ONE, DAY) == []  # the end is exclusive


def test_search_gives_one_scene_per_date(tree: EarthViewFixture) -> None:
    scenes = make_source("earthview", "vhr", str(tree.root)).search(CELL, DAY, OTHER_DAY + ONE)
    assert [s.acquired.date() for s in scenes] == [DAY, OTHER_DAY]
    single = scenes[1]
    assert single.parts == ()
    assert single.scene_id == f"earthview-2022-09-03-{tree.tiles[0].region}"
    assert Path(single.assets["TOA"]).is_file() and Path(single.assets["VISUAL"]).is_file()
    assert 0 < single.coverage < 0.99


def test_search_reads_a_geoparquet_index(tmp_path: Path) -> None:
    fixture = write_earthview_fixture(tmp_path, CELL, DAY, geoparquet=True)
    _, scene = _mosaic(tmp_path)
    assert {p.properties["region"] for p in scene.parts} == {t.region for t in fixture.tiles}


def test_read_scales_toa_to_dn8_and_the_mosaic_fills_the_cell(tree: EarthViewFixture) -> None:
    source, scene = _mosaic(tree.root)
    grid = _cell_grid(scene)
    window = source.read(scene, grid)
    assert window.data.dtype == np.uint8 and window.radiometry == "dn8"
    assert window.band_names == ("red", "green", "blue", "nir")
    assert window.data.shape == (4, grid.height, grid.width)
    assert window.valid.all()
    # Grid pixel (0, 0) centre is (691499.5, 5334762.5): red DN 200 + 499 + 762 // 2 = 1080,
    # reflectance 0.108, 255 * 0.108 / 0.4 = 68.85 -> 69; NIR DN 2880 -> 183.6 -> 184.
    assert (grid.transform.c, grid.transform.f) == (691499.0, 5334763.0)
    assert window.data[0, 0, 0] == 69 and window.data[3, 0, 0] == 184
    np.testing.assert_array_equal(window.data, _expected_dn8(grid))
    assert (window.data == 255).all(axis=0).any()  # the bright rectangle saturates
    assert set(window.scene_ids) <= {p.scene_id for p in scene.parts}

    alone = source.read(scene.parts[0], grid)
    assert 0 < alone.valid.mean() < 1
    assert alone.scene_ids == (scene.parts[0].scene_id,)


def test_toa_full_scale_option(tree: EarthViewFixture) -> None:
    source, scene = _mosaic(tree.root, toa_full_scale=0.2)
    grid = _cell_grid(scene)
    window = source.read(scene, grid, bands=["red"])
    assert window.band_names == ("red",)
    assert window.data[0, 0, 0] == 138  # 255 * 0.108 / 0.2 = 137.7
    np.testing.assert_array_equal(window.data[0], _expected_dn8(grid, 0.2)[0])


def test_visual_asset_gives_three_bands(tree: EarthViewFixture) -> None:
    source, scene = _mosaic(tree.root, asset="VISUAL")
    assert source.bands == ("red", "green", "blue")
    grid = _cell_grid(scene)
    window = source.read(scene, grid)
    assert window.band_names == ("red", "green", "blue")
    assert window.data.shape == (3, grid.height, grid.width) and window.data.dtype == np.uint8
    assert window.data[0, 0, 0] == 1080 // 14
    e, n = _centres(grid)
    expected = np.stack([visual_dn(b, e, n) for b in range(3)]).astype(np.uint8)
    np.testing.assert_array_equal(window.data, expected)
    with pytest.raises(SourceError, match=r"earthview.*no band.*nir"):
        source.read(scene, grid, bands=["red", "nir"])


def test_rasters_writes_the_window_as_one_8bit_image(
    tree: EarthViewFixture, tmp_path: Path
) -> None:
    source, scene = _mosaic(tree.root)
    files = source.rasters(scene, CELL, DAY, tmp_path)
    with rasterio.open(files["image"]) as src:
        assert src.count == 4 and src.dtypes[0] == "uint8" and src.crs.to_epsg() == 32632
        image = src.read()
    np.testing.assert_array_equal(image, source.read(scene, window_grid(source, scene, CELL)).data)


def test_the_same_through_s3(tree: EarthViewFixture, s3_server, s3_env: str) -> None:
    prefix = s3_env.removeprefix(f"s3://{s3_server.bucket}/").strip("/")
    keys = upload_tree(tree.root, s3_server.client(), s3_server.bucket, prefix)
    assert f"{prefix}/colab/satellogic-earthview-items.parquet" in keys
    source, scene = _mosaic(s3_env)
    assert all(p.assets["TOA"].startswith(f"{s3_env}data/tif/") for p in scene.parts)
    grid = _cell_grid(scene)
    window = source.read(scene, grid)
    _, local_scene = _mosaic(tree.root)
    assert window.valid.all()
    np.testing.assert_array_equal(window.data, _expected_dn8(grid))
    assert scene.scene_id == local_scene.scene_id

    with pytest.raises(SourceError, match=r"^earthview: .*no such object"):
        EarthViewSource("vhr", f"s3://{s3_server.bucket}/nothing-here").search(CELL, DAY, DAY + ONE)


def test_unreachable_s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("FLYWHEEL_S3_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("FLYWHEEL_S3_USE_SSL", "false")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(SourceError, match=r"^earthview: .*index: cannot download") as err:
        EarthViewSource("vhr", "s3://bucket/prefix").search(CELL, DAY, DAY + ONE)
    assert "\n" not in str(err.value)


def test_missing_index_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(
        SourceError, match=r"^earthview: cell .*2022-08-20.*no such file .*items"
    ) as err:
        EarthViewSource("vhr", str(tmp_path)).search(CELL, DAY, DAY + ONE)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("kind", "options", "problem"),
    [
        ("vhr", {"colour": "red"}, "unknown option"),
        ("vhr", {"asset": "SWIR"}, "asset must be"),
        ("vhr", {"toa_full_scale": 0}, "toa_full_scale"),
        ("vhr", {"toa_full_scale": "0.4"}, "toa_full_scale"),
        ("vhr", {"index": ""}, "option index"),
        ("msi", {}, "not msi"),
    ],
)
def test_bad_settings_are_source_errors(kind: str, options: dict, problem: str) -> None:
    with pytest.raises(SourceError, match=f"^earthview: .*{problem}"):
        make_source("earthview", kind, "/nowhere", options)


def test_missing_toa_file_names_the_scene_and_date(tmp_path: Path) -> None:
    fixture = write_earthview_fixture(tmp_path, CELL, DAY)
    fixture.tiles[1].toa.unlink()
    source, scene = _mosaic(tmp_path)
    part = next(p for p in scene.parts if p.properties["region"] == fixture.tiles[1].region)
    with pytest.raises(
        SourceError, match=f"^earthview: 2022-08-20: scene {part.scene_id}: no such"
    ):
        source.read(scene, _cell_grid(scene))
    # The VISUAL asset of the same tile is still there.
    visual, _ = _mosaic(tmp_path, asset="VISUAL")
    assert visual.read(scene, _cell_grid(scene)).valid.all()


def test_raster_without_crs_is_a_source_error(tmp_path: Path) -> None:
    fixture = write_earthview_fixture(tmp_path, CELL, DAY)
    path = fixture.tiles[0].toa
    with rasterio.open(path) as src:
        data, profile = src.read(), src.profile
    profile.update(driver="GTiff", crs=None)
    for key in ("blockxsize", "blockysize", "tiled", "compress", "interleave"):
        profile.pop(key, None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    source, scene = _mosaic(tmp_path)
    with pytest.raises(SourceError, match=r"^earthview: 2022-08-20: scene .* has no CRS"):
        source.read(scene, _cell_grid(scene))
