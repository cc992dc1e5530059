"""STAC API source (Sentinel-2 L2A, Earth Search v1 layout) against a local recorded API.

pystac-client's real code path runs (landing page, conformance, POST /search with `next`
paging) and rasterio reads the COGs over HTTP range requests from `flywheel_tests.fixtures.
stac_api`, whose every pixel's reflectance is known (`fx.reflectance`).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pystac_client import Client

from flywheel_core.imagery.l2a import BANDS
from flywheel_core.imagery.sources.registry import make_source
from flywheel_core.imagery.sources.s2_radiometry import from_metadata
from flywheel_core.imagery.sources.stac_api import (
    ASSETS_KEY,
    EARTH_SEARCH_V1,
    StacApiSource,
)
from flywheel_core.imagery.sources.types import (
    MSI_READ_BANDS,
    ImagerySource,
    Scene,
    SourceError,
    TargetGrid,
)
from flywheel_core.imagery.sources.window import window_grid
from flywheel_tests.fixtures import stac_api as fx

JUNE = (date(2024, 6, 1), date(2024, 7, 1))
C1_JUNE = {
    "S2B_T32UPU_20240610T102559_L2A",
    "S2B_T32UQU_20240610T102602_L2A",
    "S2A_T32UPU_20240615T102601_L2A",
    "S2A_T32UQU_20240615T102604_L2A",
    "S2B_T32UPU_20240620T102558_L2A",
}
CLEAR = "S2B_T32UPU_20240610T102559_L2A+S2B_T32UQU_20240610T102602_L2A"
CLOUDY = "S2A_T32UPU_20240615T102601_L2A+S2A_T32UQU_20240615T102604_L2A"
WEST_ONLY = "S2B_T32UPU_20240620T102558_L2A"
OLD_BASELINE = "S2A_32UPU_20210705_0_L2A"
WRONG_FLAG = "S2A_32UPU_20220301_0_L2A"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fx.StacApi]:
    with fx.serve(tmp_path_factory.mktemp("stac-api")) as served:
        yield served


@pytest.fixture(scope="module")
def wrong_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fx.StacApi]:
    with fx.serve(tmp_path_factory.mktemp("stac-api-wrong"), wrong_flag=True) as served:
        yield served


@pytest.fixture(scope="module")
def june(api: fx.StacApi) -> list[Scene]:
    return StacApiSource("msi", api.url).search(fx.CELL, *JUNE)


def _by_id(scenes: list[Scene], scene_id: str) -> Scene:
    [scene] = [s for s in scenes if s.scene_id == scene_id]
    return scene


def _one_day(url: str, day: date, **options: object) -> Scene:
    [scene] = StacApiSource("msi", url, options).search(
        fx.CELL, day, date.fromordinal(day.toordinal() + 1)
    )
    return scene


def _centre(grid: TargetGrid, x: float, y: float) -> tuple[int, int, float, float]:
    """(row, col) of the grid pixel holding UTM (x, y), and that pixel's centre."""
    col = int((x - grid.transform.c) // grid.res)
    row = int((grid.transform.f - y) // grid.res)
    return (
        row,
        col,
        grid.transform.c + (col + 0.5) * grid.res,
        grid.transform.f - (row + 0.5) * grid.res,
    )


def _assert_reflectance(window, x: float, y: float, bands=("B04", "B02", "B11", "B8A")) -> None:
    row, col, cx, cy = _centre(window.grid, x, y)
    for band in bands:
        got = float(window.band(band)[row, col])
        assert got == pytest.approx(fx.reflectance(band, cx, cy), abs=1e-5), band


def test_search_finds_the_window_items_over_http(api: fx.StacApi) -> None:
    before = len(api.requests)
    june = StacApiSource("msi", api.url).search(fx.CELL, *JUNE)
    parts = {p.scene_id for s in june for p in (s.parts or (s,))}
    assert parts == C1_JUNE  # not July, not Berlin, not the older collection's duplicates
    assert all(JUNE[0] <= s.acquired.date() < JUNE[1] for s in june)
    assert [s.scene_id for s in june] == [CLEAR, CLOUDY, WEST_ONLY]
    searches = [r for r in api.requests[before:] if r[1].startswith("/search")]
    assert [r[0] for r in searches] == ["POST", "POST"]  # 7 hits, 4 a page: `next` followed


def test_the_first_collection_wins_a_duplicate_acquisition(api: fx.StacApi) -> None:
    day = date(2024, 6, 10)
    old_only = _one_day(api.url, day, collections=["sentinel-2-l2a"])
    assert {p.scene_id for p in old_only.parts} == {
        "S2B_32UPU_20240610_0_L2A",
        "S2B_32UQU_20240610_0_L2A",
    }
    old_first = _one_day(api.url, day, collections=["sentinel-2-l2a", "sentinel-2-c1-l2a"])
    assert {p.scene_id for p in old_first.parts} == {p.scene_id for p in old_only.parts}
    c1_first = _one_day(api.url, day)
    assert all(p.properties["collection"] == "sentinel-2-c1-l2a" for p in c1_first.parts)


def test_asset_keys_become_band_names_and_crs_comes_from_proj(
    api: fx.StacApi, june: list[Scene]
) -> None:
    west = _by_id(june, CLEAR).parts[0]
    assert set(west.assets) == {"B01", "B09", *MSI_READ_BANDS}
    assert west.assets["B04"].endswith("/S2B_T32UPU_20240610T102559_L2A/B04.tif")
    assert west.assets["SCL"].endswith("/SCL.tif")
    assert west.crs == "EPSG:32632"  # from proj:code
    assert west.sensor == "sentinel-2b" and west.cloud_cover == 20.0 and west.gsd_m == 10.0
    assert west.properties[ASSETS_KEY]["B04"]["raster:bands"][0]["offset"] == -0.1
    assert west.properties["s2:processing_baseline"] == "05.10"
    assert 0.5 < west.coverage < 0.7
    old = _one_day(api.url, date(2021, 7, 5))
    assert old.scene_id == OLD_BASELINE and old.crs == "EPSG:32632"  # from proj:epsg
    assert "B12" not in _by_id(june, WEST_ONLY).assets  # the item has no swir22


def test_reflectance_of_both_baselines(api: fx.StacApi, june: list[Scene]) -> None:
    source = StacApiSource("msi", api.url)
    west = _by_id(june, CLEAR).parts[0]
    grid = window_grid(source, west, fx.CELL)
    new = source.read(west, grid)
    assert new.band_names == MSI_READ_BANDS and new.radiometry == "boa_reflectance"
    _assert_reflectance(new, 691_555.0, 5_334_705.0)
    row, col, cx, cy = _centre(grid, 691_555.0, 5_334_705.0)
    assert float(new.band("B04")[row, col]) == pytest.approx((fx.surface_dn("B04", cx, cy)) / 1e4)
    assert any("raster:bands scale/offset" in n and "DN -1000" in n for n in new.notes)

    old_scene = _one_day(api.url, date(2021, 7, 5))
    old = source.read(old_scene, grid, ["B04", "B11", "SCL"])
    assert old.band_names == ("B04", "B11", "SCL")
    _assert_reflectance(old, 691_555.0, 5_334_705.0, ("B04", "B11"))
    assert any("s2:processing_baseline 03.01" in n and "DN +0" in n for n in old.notes)
    assert old.band("SCL")[row, col] == 4


def test_a_wrong_offset_flag_is_corrected_by_the_dark_pixels(
    api: fx.StacApi, wrong_api: fx.StacApi
) -> None:
    right = _one_day(api.url, date(2022, 3, 1))
    wrong = _one_day(wrong_api.url, date(2022, 3, 1))
    assert right.scene_id == wrong.scene_id == WRONG_FLAG
    # the metadata says -1000 for both; only the pixels tell the wrong item apart
    assert (
        from_metadata(wrong.properties, wrong.properties[ASSETS_KEY]["B04"], None).offset_dn
        == -1000
    )
    source = StacApiSource("msi", wrong_api.url)
    grid = window_grid(source, wrong, fx.CELL)
    fixed = source.read(wrong, grid, ["B02", "B04", "B11"])
    _assert_reflectance(fixed, 691_555.0, 5_334_705.0, ("B02", "B04", "B11"))
    assert any("pixel check" in n and "offset 0" in n for n in fixed.notes)
    kept = StacApiSource("msi", api.url).read(right, grid, ["B02", "B04", "B11"])
    _assert_reflectance(kept, 691_555.0, 5_334_705.0, ("B02", "B04", "B11"))
    assert not any("pixel check" in n for n in kept.notes)
    assert any("s2:processing_baseline 04.00" in n for n in kept.notes)
    water = _centre(grid, 691_555.0, 5_334_615.0)[:2]
    assert float(fixed.band("B04")[water]) == pytest.approx(0.012, abs=1e-5)


def test_the_clearest_scl_wins_over_lower_metadata_cloud_cover(
    api: fx.StacApi, june: list[Scene]
) -> None:
    assert _by_id(june, CLOUDY).cloud_cover < _by_id(june, CLEAR).cloud_cover
    by_metadata = ImagerySource.choose(StacApiSource("msi", api.url), june, fx.CELL, *JUNE)
    assert by_metadata is not None and by_metadata.scene.scene_id == CLOUDY
    choice = StacApiSource("msi", api.url).choose(june, fx.CELL, *JUNE)
    assert choice is not None and choice.scene.scene_id == CLEAR
    assert choice.scores[CLEAR] > 0.9 > choice.scores[WEST_ONLY] > 0.5 > 0.2 > choice.scores[CLOUDY]
    assert choice.scores[CLEAR] < 1.0  # the cloud and shadow patch count against it
    assert "SCL" in choice.reason
    capped = StacApiSource("msi", api.url, {"max_candidates": 1}).choose(june, fx.CELL, *JUNE)
    assert capped is not None and set(capped.scores) == {CLOUDY}  # lowest cloud cover only
    assert StacApiSource("msi", api.url).choose([], fx.CELL, *JUNE) is None


def test_a_cell_across_two_tiles_is_mosaicked(api: fx.StacApi, june: list[Scene]) -> None:
    source = StacApiSource("msi", api.url)
    mosaic = _by_id(june, CLEAR)
    assert len(mosaic.parts) == 2 and mosaic.coverage == pytest.approx(1.0)
    assert all(p.coverage < 0.7 for p in mosaic.parts)
    grid = window_grid(source, mosaic, fx.CELL)
    window = source.read(mosaic, grid)
    assert window.valid.all()
    assert set(np.unique(window.band("SCL")).tolist()) == {3.0, 4.0, 6.0, 8.0}  # codes, not blends
    assert set(window.scene_ids) == {p.scene_id for p in mosaic.parts}
    _assert_reflectance(window, 691_505.0, 5_334_705.0)  # from the west tile
    _assert_reflectance(window, 691_795.0, 5_334_505.0)  # from the east tile
    for part in mosaic.parts:
        alone = source.read(part, grid, ["B04", "SCL"])
        assert 0.2 < alone.valid.mean() < 0.9


def test_the_window_is_written_as_l2a_coded_rasters(
    api: fx.StacApi, june: list[Scene], tmp_path: Path
) -> None:
    source = make_source("stac-api", "msi", api.url)
    scene = _by_id(june, CLEAR)
    files = source.rasters(scene, fx.CELL, date(2024, 6, 10), tmp_path)
    assert set(files) == set(MSI_READ_BANDS)
    with rasterio.open(files["B04"]) as src:
        dn = src.read(1).astype(np.float64)
        offset = float(src.tags()["BOA_ADD_OFFSET"])
        x, y = src.xy(10, 10)
    assert (dn[10, 10] + offset) / 1e4 == pytest.approx(fx.reflectance("B04", x, y), abs=1.5e-4)


def test_the_cogs_are_read_with_range_requests(api: fx.StacApi, june: list[Scene]) -> None:
    source = StacApiSource("msi", api.url)
    scene = _by_id(june, WEST_ONLY)
    source.read(scene, window_grid(source, scene, fx.CELL), ["B03"])
    gets = [r for r in api.requests if r[0] == "GET" and r[1].endswith(f"{WEST_ONLY}/B03.tif")]
    assert gets and all(r[2] and r[2].startswith("bytes=") for r in gets)


def test_an_unreachable_endpoint_is_one_line_naming_source_cell_and_date(api: fx.StacApi) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        hanging = f"http://127.0.0.1:{silent.getsockname()[1]}"
        cases = [
            (fx.closed_port_url(), "unreachable"),
            (hanging, "unreachable"),
            (f"{api.url}/no-such-api", "HTTP 404"),
        ]
        for url, problem in cases:
            with pytest.raises(SourceError) as caught:
                StacApiSource("msi", url, {"timeout_s": 0.5}).search(fx.CELL, *JUNE)
            message = str(caught.value)
            assert message.startswith("stac-api: ") and "\n" not in message
            assert fx.CELL in message and "2024-06-01" in message and url in message
            assert problem in message


def test_a_missing_band_names_the_band_the_scene_and_the_cell(
    api: fx.StacApi, june: list[Scene]
) -> None:
    source = StacApiSource("msi", api.url)
    scene = _by_id(june, WEST_ONLY)
    with pytest.raises(SourceError) as caught:
        source.read(scene, window_grid(source, scene, fx.CELL))
    message = str(caught.value)
    assert "stac-api" in message and fx.CELL in message and "B12" in message
    assert WEST_ONLY in message and "2024-06-20" in message
    assert source.read(scene, window_grid(source, scene, fx.CELL), list(BANDS[:4])).valid.any()


def test_empty_searches_return_nothing(api: fx.StacApi) -> None:
    source = StacApiSource("msi", api.url)
    assert source.search(fx.CELL, date(2023, 1, 1), date(2023, 2, 1)) == []
    assert source.search(fx.CELL, date(2024, 6, 10), date(2024, 6, 10)) == []
    assert source.search(fx.CELL, date(2024, 6, 21), date(2024, 7, 2)) == []  # the end is out
    [july] = source.search(fx.CELL, date(2024, 6, 21), date(2024, 7, 3))
    assert july.acquired.date() == date(2024, 7, 2)
    assert StacApiSource("msi", api.url, {"max_cloud": 3}).search(fx.CELL, *JUNE) == []
    [scene] = StacApiSource("msi", api.url, {"max_cloud": 4}).search(fx.CELL, *JUNE)
    assert scene.scene_id == CLOUDY  # eo:cloud_cover 3 < 4 passes the query


def test_options_are_checked() -> None:
    assert StacApiSource("msi", "").url == EARTH_SEARCH_V1
    source = StacApiSource("msi", "")
    assert source.collections == ("sentinel-2-c1-l2a", "sentinel-2-l2a") and source.max_cloud == 60
    bad: list[dict[str, object]] = [
        {"cloud": 10},
        {"max_cloud": 0},
        {"max_cloud": "20"},
        {"collections": []},
        {"collections": [3]},
        {"timeout_s": -1},
        {"max_candidates": 0},
    ]
    for options in bad:
        with pytest.raises(SourceError, match=r"^stac-api: "):
            StacApiSource("msi", "", options)
    with pytest.raises(SourceError, match="gives msi imagery"):
        StacApiSource("vhr", "")
    with pytest.raises(SourceError, match="STAC API URL"):
        StacApiSource("msi", "/some/folder")


def test_the_fixture_answers_get_searches_too(api: fx.StacApi) -> None:
    client = Client.open(api.url)
    found = client.search(
        method="GET",
        collections=["sentinel-2-c1-l2a"],
        bbox=[11.0, 48.0, 12.0, 48.5],
        datetime="2024-06-01/2024-07-31",
        query={"eo:cloud_cover": {"lt": 15}},
    )
    ids = {item.id for item in found.items()}
    assert ids == {
        "S2A_T32UPU_20240615T102601_L2A",
        "S2A_T32UQU_20240615T102604_L2A",
        "S2B_T32UPU_20240620T102558_L2A",
        "S2A_T32UPU_20240702T102600_L2A",
        "S2A_T32UQU_20240702T102603_L2A",
    }
