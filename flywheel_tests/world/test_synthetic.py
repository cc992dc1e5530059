"""The synthetic world: determinism, file formats, and that it looks like what it claims."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pystac
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.features import rasterize
from scipy.ndimage import binary_erosion

from flywheel_core.geo.projection import reproject, utm_epsg
from flywheel_core.geo.s2 import cell_center, cell_from_lonlat, cell_polygon
from flywheel_core.world.grid import VHR_GSD_M
from flywheel_core.world.sentinel2 import SCL_CLOUDS
from flywheel_core.world.spectra import S2_BANDS
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES, TINY_PARAMS

EARLY, LATE = TINY_DATES
SMALL_CELL = cell_from_lonlat(11.58, 48.14, 16)  # level 16: a scene of ~200 m, fast


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read(path: Path, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(band)


def _reflectance(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        tags = src.tags()
        dn = src.read(1).astype(np.float64)
    assert int(tags["BOA_QUANTIFICATION_VALUE"]) == 10_000
    return (dn + int(tags["BOA_ADD_OFFSET"])) / 10_000


def _utm_mask(geom_utm, path: Path, erode: int = 0) -> np.ndarray:
    """Pixels of the raster at `path` whose centres lie in a UTM geometry."""
    with rasterio.open(path) as src:
        mask = rasterize(
            [(geom_utm, 1)], out_shape=src.shape, transform=src.transform, fill=0, dtype="uint8"
        ).astype(bool)
    return binary_erosion(mask, iterations=erode) if erode else mask


def _epsg() -> int:
    return utm_epsg(*cell_center(TINY_CELL))


# --- determinism -----------------------------------------------------------------------------


# Non-default values of every setting, so that each one's keyed randomness is exercised.
VARIED = {
    "seed": 3,
    "gsd_m": 0.5,
    "panel_mix": {"poly": 1.0, "thin_film": 1.0},
    "install_density": 2.0,
    "distractor_density": 1.5,
    "scene_variation": 1.5,
    "cloudy_dates_fraction": 0.5,
}


def test_same_settings_give_identical_files_across_processes(tmp_path):
    """A fresh interpreter with another hash salt must write the very same bytes."""
    from flywheel_core.world.synthetic import generate_world
    from flywheel_core.world.world_settings import WorldSettings

    settings = WorldSettings(**VARIED)
    args = f"[{SMALL_CELL!r}], [__import__('datetime').date(2024, 6, 1)]"
    code = (
        "from pathlib import Path; from flywheel_core.world.synthetic import generate_world; "
        "from flywheel_core.world.world_settings import WorldSettings; "
        f"generate_world(Path({str(tmp_path / 'a')!r}), {args}, "
        f"WorldSettings.from_dict({settings.to_dict()!r}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).parents[2])
    m = generate_world(tmp_path / "b", [SMALL_CELL], [date(2024, 6, 1)], **VARIED)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 15
    assert {"preview.png", "distractors.parquet", "truth.parquet", "world.json"} <= set(a)
    assert a == b
    assert m.settings == settings
    world = json.loads((tmp_path / "b" / "world.json").read_text())
    assert WorldSettings.from_dict(world["settings"]) == settings


def test_different_seed_gives_a_different_world(tmp_path):
    from flywheel_core.world.synthetic import generate_world

    day = date(2024, 6, 1)
    m1 = generate_world(tmp_path / "s1", [SMALL_CELL], [day], seed=1)
    m2 = generate_world(tmp_path / "s2", [SMALL_CELL], [day], seed=2)
    assert not np.array_equal(
        _read(m1.vhr_path(SMALL_CELL, day)), _read(m2.vhr_path(SMALL_CELL, day))
    )
    t1, t2 = gpd.read_parquet(m1.truth_path), gpd.read_parquet(m2.truth_path)
    assert set(t1.install_id).isdisjoint(t2.install_id)
    d1, d2 = gpd.read_parquet(m1.distractors_path), gpd.read_parquet(m2.distractors_path)
    assert set(d1.distractor_id).isdisjoint(d2.distractor_id)


# --- file formats ----------------------------------------------------------------------------


def test_vhr_is_a_valid_cog_on_the_snapped_utm_grid(tiny_world):
    path = tiny_world.vhr_path(TINY_CELL, LATE)
    with rasterio.open(path) as src:
        assert src.driver == "GTiff" and src.profile.get("tiled", False)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.overviews(1) or max(src.shape) <= src.block_shapes[0][0]
        assert src.crs.to_epsg() == _epsg()
        assert src.count == 4 and src.dtypes == ("uint8",) * 4 and src.nodata is None
        assert src.descriptions == ("red", "green", "blue", "nir")
        assert src.res == (VHR_GSD_M, VHR_GSD_M) == (0.3125, 0.3125)
        assert all(v % 20 == 0 for v in src.bounds)
        tags = src.tags()
        bounds = src.bounds
    assert tags["FLYWHEEL_CELL"] == TINY_CELL and tags["FLYWHEEL_DATE"] == LATE.isoformat()
    assert tags["FLYWHEEL_SYNTHETIC"] == "1" and tags["FLYWHEEL_SEED"] == str(TINY_PARAMS["seed"])
    assert float(tags["FLYWHEEL_GSD_M"]) == 0.3125
    cell = reproject(cell_polygon(TINY_CELL), 4326, _epsg())
    assert shapely.box(*bounds).contains(cell.buffer(19.9))  # 20 m margin around the cell


def test_s2_band_grids_align_with_the_vhr_extent(tiny_world):
    with rasterio.open(tiny_world.vhr_path(TINY_CELL, EARLY)) as vhr:
        bounds, shape = vhr.bounds, vhr.shape
    for name in [b.name for b in S2_BANDS] + ["SCL"]:
        with rasterio.open(tiny_world.s2_path(TINY_CELL, EARLY, name)) as src:
            res = 20 if name == "SCL" else next(b.resolution_m for b in S2_BANDS if b.name == name)
            assert src.bounds == bounds, name
            assert src.res == (res, res), name
            assert src.shape == (shape[0] * VHR_GSD_M / res, shape[1] * VHR_GSD_M / res), name
            assert src.nodata == 0 and src.profile.get("tiled", False)
            assert src.dtypes[0] == ("uint8" if name == "SCL" else "uint16")


@pytest.mark.parametrize(("day", "offset"), [(EARLY, 0), (LATE, -1000)])
def test_dn_with_boa_add_offset_gives_plausible_reflectance(tiny_world, day, offset):
    path = tiny_world.s2_path(TINY_CELL, day, "B04")
    with rasterio.open(path) as src:
        assert int(src.tags()["BOA_ADD_OFFSET"]) == offset
        dn = src.read(1)
    refl = _reflectance(path)
    assert dn.min() >= 1 and (offset == 0 or dn.min() > 1000)
    assert 0.02 < float(np.median(refl)) < 0.3
    assert refl.min() >= 0.0 and refl.max() < 0.8


# --- content ---------------------------------------------------------------------------------


def test_pv_appears_only_after_its_install_date(tiny_world):
    truth = gpd.read_parquet(tiny_world.truth_path)
    between = truth[(truth.install_date > EARLY) & (truth.install_date <= LATE)]
    assert len(between) == len(truth) >= 4
    assert set(truth.panel_type) == {"poly", "mono", "thin_film"}
    early = tiny_world.vhr_path(TINY_CELL, EARLY)
    late = tiny_world.vhr_path(TINY_CELL, LATE)
    scl_early = _read(tiny_world.s2_path(TINY_CELL, EARLY, "SCL"))
    with rasterio.open(early) as a, rasterio.open(late) as b:
        before, after = a.read().astype(float), b.read().astype(float)
    changed = 0
    for row in between.itertuples():
        mask = _utm_mask(reproject(row.geometry, 4326, _epsg()), late, erode=1)
        assert mask.sum() > 20
        mask &= ~(after[:3] >= 250).all(axis=0)  # off glint: a glinting module is saturated
        r, _g, bl, nir = (after[k][mask].mean() for k in range(4))
        # Up to ~105 rather than 95: scenes now differ in gain and haze (conditions.py), and
        # mono-Si's bright frame lines lift an installation's mean red.
        assert 25 <= r <= 105 and bl >= r - 1, "panels: dark blue to near black, blue >= red"
        assert nir < 90
        darker = after[:3, mask].sum(0).mean() < before[:3, mask].sum(0).mean() - 20
        bluer = (after[2][mask] - after[0][mask]).mean() > (
            before[2][mask] - before[0][mask]
        ).mean()
        # Thin film is nearly neutral (blue ≈ red): on grass it is darker, not bluer; elsewhere
        # (tile, concrete roofs) it is both.
        changed += darker and (bluer or (row.panel_type == "thin_film" and row.kind == "ground"))
    # The early date is cloudy: a cloud can whiten an installation, never hide the change.
    assert np.isin(scl_early, SCL_CLOUDS).any()
    assert changed >= 0.75 * len(between)


def test_truth_lies_inside_its_cell_and_has_the_contract_columns(tiny_world):
    truth = gpd.read_parquet(tiny_world.truth_path)
    assert truth.crs.to_epsg() == 4326
    assert list(truth.columns) == [
        "install_id",
        "cell",
        "kind",
        "install_date",
        "geometry",
        "outline",
        "area_m2",
        "n_panels",
        "panel_type",
    ]
    assert truth.install_id.is_unique and set(truth.kind) <= {"rooftop", "ground"}
    assert set(truth.panel_type) <= {"poly", "mono", "thin_film"}
    assert (truth.kind == "ground").any() and (truth.kind == "rooftop").any()
    for row in truth.itertuples():
        poly = cell_polygon(row.cell)
        outline = shapely.from_wkb(row.outline)
        assert poly.contains(row.geometry) and poly.contains(outline), row.install_id
        assert outline.buffer(1e-7).contains(row.geometry)
        assert date(2022, 1, 1) <= row.install_date <= date(2025, 6, 30)
    rooftop = truth[truth.kind == "rooftop"].area_m2
    ground = truth[truth.kind == "ground"]
    assert rooftop.min() > 10 and rooftop.max() <= 1000
    assert ground.geometry.geom_type.eq("MultiPolygon").all()
    fences = [shapely.from_wkb(o) for o in ground.outline]
    gcr = ground.area_m2.to_numpy() / [reproject(f, 4326, _epsg()).area for f in fences]
    assert np.all((gcr > 0.2) & (gcr < 0.35))
    # Crystalline modules are ≈ 1.7 m², thin-film ones (frameless CdTe) ≈ 2.4 m².
    panel_m2 = truth.area_m2 / truth.n_panels
    crystalline = truth.panel_type != "thin_film"
    assert panel_m2[crystalline].between(1.5, 1.8).all()
    assert panel_m2[~crystalline].between(2.2, 2.6).all()


def test_seed_labels_are_a_noisy_subset_with_points(tiny_world):
    truth = gpd.read_parquet(tiny_world.truth_path).set_index("install_id")
    seeds = gpd.read_parquet(tiny_world.seed_labels_path)
    assert list(seeds.columns) == ["source_id", "install_date", "kind", "geometry"]
    assert seeds.crs.to_epsg() == 4326
    assert len(seeds) == round(0.3 * len(truth))
    assert set(seeds.source_id) <= set(truth.index)
    assert (seeds.geometry.geom_type == "Point").sum() == round(0.5 * len(seeds)) >= 1
    epsg = _epsg()
    for row in seeds.itertuples():
        true = reproject(truth.loc[row.source_id, "geometry"], 4326, epsg)
        label = reproject(row.geometry, 4326, epsg)
        assert label.distance(true) < 5.0 and not label.equals(true)
        assert row.install_date == truth.loc[row.source_id, "install_date"]


def test_stac_catalog_has_every_scene_in_its_collection(tiny_world):
    catalog = pystac.Catalog.from_file(str(tiny_world.catalog_path))
    collections = {c.id: c for c in catalog.get_collections()}
    assert set(collections) == {"synthetic-vhr", "synthetic-s2-l2a"}
    for prefix, cid, keys in (
        ("vhr", "synthetic-vhr", {"image"}),
        ("s2", "synthetic-s2-l2a", {b.name for b in S2_BANDS} | {"SCL"}),
    ):
        items = {i.id: i for i in collections[cid].get_items()}
        assert set(items) == {f"{prefix}-{TINY_CELL}-{d.isoformat()}" for d in TINY_DATES}
        for item in items.values():
            assert item.collection_id == cid
            assert set(item.assets) == keys
            assert item.properties["proj:epsg"] == _epsg()  # survives pystac's migration
            assert item.properties["flywheel:cell"] == TINY_CELL
            assert item.properties["flywheel:synthetic"] is True
            assert item.datetime.isoformat().endswith("T00:00:00+00:00")
            for asset in item.assets.values():
                assert not asset.href.startswith("/")
                assert Path(asset.get_absolute_href()).is_file()
            assert shapely.geometry.shape(item.geometry).contains(
                shapely.Point(*cell_center(TINY_CELL))
            )
    raw = json.loads(tiny_world.catalog_path.read_text())
    assert all(not link["href"].startswith("/") for link in raw["links"])


def test_pv_farm_lowers_s2_ndvi_below_grass(tiny_world):
    truth = gpd.read_parquet(tiny_world.truth_path)
    farm = truth[truth.kind == "ground"].iloc[0]
    fence = reproject(shapely.from_wkb(farm.outline), 4326, _epsg())

    def ndvi(day: date) -> np.ndarray:
        red = _reflectance(tiny_world.s2_path(TINY_CELL, day, "B04"))
        nir = _reflectance(tiny_world.s2_path(TINY_CELL, day, "B08"))
        return (nir - red) / (nir + red)

    inside = _utm_mask(fence.buffer(-10.0), tiny_world.s2_path(TINY_CELL, LATE, "B04"))
    scl = _read(tiny_world.s2_path(TINY_CELL, EARLY, "SCL"))
    clear = np.kron(~np.isin(scl, (*SCL_CLOUDS, 3)), np.ones((2, 2), bool))  # 20 m -> 10 m
    pixels = inside & clear
    assert pixels.sum() >= 4
    grass, pv = ndvi(EARLY)[pixels], ndvi(LATE)[pixels]
    assert np.median(grass) > 0.7
    assert np.median(pv) < np.median(grass) - 0.1
    assert 0.3 < np.median(pv) < 0.8  # a panel/grass mixture, not bare panels


def test_scl_cloud_codes_only_in_cloudy_cell_dates(tiny_world):
    cloudy = set(tiny_world.cloudy)
    assert (TINY_CELL, EARLY) in cloudy and (TINY_CELL, LATE) not in cloudy
    catalog = pystac.Catalog.from_file(str(tiny_world.catalog_path))
    covers = {i.id: i.properties["eo:cloud_cover"] for i in catalog.get_items(recursive=True)}
    for day in TINY_DATES:
        path = tiny_world.s2_path(TINY_CELL, day, "SCL")
        interior = _utm_mask(reproject(cell_polygon(TINY_CELL), 4326, _epsg()), path, erode=1)
        codes = _read(path)[interior]
        has_clouds = np.isin(codes, SCL_CLOUDS).any()
        assert has_clouds == ((TINY_CELL, day) in cloudy), day
        assert (covers[f"s2-{TINY_CELL}-{day.isoformat()}"] > 0) == has_clouds
        assert (covers[f"vhr-{TINY_CELL}-{day.isoformat()}"] > 0) == has_clouds
        assert np.isin(codes, (4, 5)).mean() > 0.3, "clouds are partial; the land shows"


@pytest.mark.parametrize(
    ("gsd", "cloudy"), [(0.3125, 0.0), (0.3, 1.0)], ids=["base-clear", "0.3m-cloudy"]
)
def test_adjacent_scenes_agree_in_their_overlap(tmp_path, gsd, cloudy):
    """Also where each cell has its own light, haze and noise (every pixel takes its own
    cell's), under clouds, and on a lattice that does not divide the 20 m scene grid."""
    from flywheel_core.geo.s2 import cells_around
    from flywheel_core.world.synthetic import generate_world

    a, b = cells_around(11.58, 48.14, 16, 2)
    day = date(2021, 6, 1)
    m = generate_world(tmp_path, [a, b], [day], cloudy_dates_fraction=cloudy, gsd_m=gsd)
    assert len(m.cloudy) == (2 if cloudy else 0)
    with rasterio.open(m.vhr_path(a, day)) as ra, rasterio.open(m.vhr_path(b, day)) as rb:
        left, bottom = max(ra.bounds.left, rb.bounds.left), max(ra.bounds.bottom, rb.bounds.bottom)
        right, top = min(ra.bounds.right, rb.bounds.right), min(ra.bounds.top, rb.bounds.top)
        assert right > left and top > bottom
        wa = ra.read(window=ra.window(left, bottom, right, top).round_offsets().round_lengths())
        wb = rb.read(window=rb.window(left, bottom, right, top).round_offsets().round_lengths())
    assert wa.shape == wb.shape and wa.size > 0
    assert np.array_equal(wa, wb)  # position-keyed noise: the same pixels, bit for bit


# --- look-alikes ----------------------------------------------------------------------------

LOOK_CELL = cell_from_lonlat(11.58, 48.14, 15)
LOOK_DAY = date(2024, 6, 15)


@pytest.fixture(scope="module")
def look_world(tmp_path_factory):
    """One level-15 cell with twice the default look-alikes: every kind appears."""
    from flywheel_core.world.synthetic import generate_world

    return generate_world(
        tmp_path_factory.mktemp("looks"),
        [LOOK_CELL],
        [LOOK_DAY],
        distractor_density=2.0,
        cloudy_dates_fraction=0.0,
    )


def _mean_dn(px: np.ndarray) -> tuple[float, float, float, float, float]:
    """(R, G, B, NIR, RGB mean) of (4, n) pixels."""
    r, g, b, n = px.mean(axis=1)
    return r, g, b, n, (r + g + b) / 3


# What each look-alike looks like in the VHR scene (spectra.py): how it imitates PV, and how
# it can still be told apart.
def _check_kind(kind: str, px: np.ndarray) -> bool:
    r, _g, b, nir, rgb = _mean_dn(px)
    brightness = px[:3].mean(axis=0)
    return {
        "dark_roof": rgb < 90 and nir < 75 and b > r,
        "bitumen_roof": rgb < 70 and nir < 45,
        "blue_metal_roof": b - r > 25 and nir > b,  # blue like poly-Si, bright NIR like paint
        "solar_thermal": b - r > 15 and nir < 70,  # dark blue-black collectors
        "skylight": b > r + 5 and rgb < 130,
        "greenhouse": rgb > 150,
        # Cars of all colours: black ones darker than the asphalt, white ones far brighter.
        "car_park": (brightness < 60).mean() > 0.03 and (brightness > 170).mean() > 0.03,
    }[kind]


def test_every_look_alike_kind_appears_in_the_table_and_the_pixels(look_world):
    from flywheel_core.world.layout import DISTRACTOR_KINDS

    looks = gpd.read_parquet(look_world.distractors_path)
    assert set(looks.kind) == set(DISTRACTOR_KINDS)
    assert looks.crs.to_epsg() == 4326 and (looks.cell == LOOK_CELL).all()
    counts = look_world.counts
    assert counts["distractors"] == len(looks)
    world = json.loads((look_world.out_dir / "world.json").read_text())
    for kind in DISTRACTOR_KINDS:
        n = int((looks.kind == kind).sum())
        assert counts[f"distractor_{kind}"] == n == world["distractors_by_kind"][kind]
    path = look_world.vhr_path(LOOK_CELL, LOOK_DAY)
    with rasterio.open(path) as src:
        image = src.read().astype(np.float64)
    for row in looks.itertuples():
        small = row.kind in ("solar_thermal", "skylight")
        mask = _utm_mask(reproject(row.geometry, 4326, _epsg()), path, erode=0 if small else 2)
        assert mask.sum() >= 20, row.distractor_id
        assert _check_kind(row.kind, image[:, mask]), (row.kind, _mean_dn(image[:, mask]))


def test_the_preview_shows_every_scene(look_world):
    from PIL import Image

    from flywheel_core.preview import OUTLINE
    from flywheel_core.world.world_preview import DISTRACTOR_OUTLINE

    with Image.open(look_world.preview_path) as im:
        assert im.format == "PNG" and 150 < im.width <= 800
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    colours = {tuple(p) for p in np.unique(pixels, axis=0)}
    assert DISTRACTOR_OUTLINE in colours and OUTLINE in colours  # both kinds of outline drawn


# --- CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cell", "zz"], "not an S2 cell token"),
        (["--dates", "2024-13-01"], "not an ISO date"),
        (["--seed-fraction", "1.5"], "between 0 and 1"),
        (["--point-fraction", "-0.1"], "between 0 and 1"),
        (["--gsd", "0.2"], "gsd_m must be between 0.3 and 1 m"),
        (["--gsd", "abc"], "'abc' is not a valid float"),
        (["--panel-mix", "poly=1,cigs=2"], "unknown panel type(s) cigs"),
        (["--panel-mix", "poly"], "is not TYPE=WEIGHT"),
        (["--panel-mix", "poly=x"], "the weight of poly is not a number"),
        (["--panel-mix", "poly=0"], "at least one panel type needs a weight > 0"),
        (["--install-density", "-1"], "install_density must be between 0 and 4"),
        (["--distractor-density", "5"], "distractor_density must be between 0 and 4"),
        (["--scene-variation", "3"], "scene_variation must be between 0 and 2"),
        (["--cloudy-fraction", "1.1"], "cloudy_dates_fraction must be between 0 and 1"),
    ],
)
def test_cli_rejects_bad_input(tmp_path, args, message):
    from flywheel_cli.main import cli

    result = CliRunner().invoke(cli, ["world", "generate", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not any(tmp_path.iterdir())


def test_cli_generates_a_world(tmp_path, monkeypatch):
    from flywheel_cli.main import cli

    monkeypatch.setenv("FLYWHEEL_S2_LEVEL", "16")
    result = CliRunner().invoke(
        cli,
        [
            "world",
            "generate",
            "--out",
            str(tmp_path),
            "--cell",
            SMALL_CELL,
            "--dates",
            "2024-06-15",
            "--seed",
            "4",
            "--gsd",
            "0.5",
            "--panel-mix",
            "mono=1, thin_film=3",
            "--install-density",
            "3",
            "--distractor-density",
            "0",
            "--scene-variation",
            "0",
            "--cloudy-fraction",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "monthly" in result.output and "2024-06-01" in result.output
    world = json.loads((tmp_path / "world.json").read_text())
    assert (
        world["cells"] == [SMALL_CELL] and world["dates"] == ["2024-06-15"] and world["seed"] == 4
    )
    assert world["settings"] == {
        "seed": 4,
        "seed_fraction": 0.3,
        "jitter_m": 1.0,
        "point_fraction": 0.2,
        "cloudy_dates_fraction": 0.0,
        "gsd_m": 0.5,
        "panel_mix": {"poly": 0.0, "mono": 0.25, "thin_film": 0.75},
        "install_density": 3.0,
        "distractor_density": 0.0,
        "scene_variation": 0.0,
    }
    with rasterio.open(tmp_path / "vhr" / SMALL_CELL / "2024-06-15.tif") as src:
        assert src.res == (0.5, 0.5)
    c = world["counts"]
    assert c["panel_poly"] == 0 and c["installations"] == c["panel_mono"] + c["panel_thin_film"]
    assert c["distractors"] == 0 and c["installations"] >= 2
    # The summary lists installations by panel type and look-alikes by kind, and the preview.
    assert f"by panel type: poly 0, mono {c['panel_mono']}, thin_film" in result.output
    assert "by kind: dark_roof 0, bitumen_roof 0" in result.output
    assert f"preview: {tmp_path / 'preview.png'}" in result.output
    assert (tmp_path / "preview.png").is_file()


def test_world_options_are_reusable_by_other_commands():
    """`flywheel rounds` puts the same options on its command: they must make WorldSettings."""
    import click

    from flywheel_cli.world import world_options, world_settings_from_options
    from flywheel_core.world.world_settings import WorldSettings

    seen = {}

    @click.command()
    @click.option("--rounds", default=1)
    @world_options
    def other(rounds: int, **kwargs: object) -> None:
        seen["settings"] = world_settings_from_options(rounds=rounds, **kwargs)

    result = CliRunner().invoke(other, ["--gsd", "1.0", "--panel-mix", "poly=1", "--seed", "9"])
    assert result.exit_code == 0, result.output
    assert seen["settings"] == WorldSettings(seed=9, gsd_m=1.0, panel_mix={"poly": 1})
    assert CliRunner().invoke(other, []).exit_code == 0 and seen["settings"] == WorldSettings()
    bad = CliRunner().invoke(other, ["--install-density", "7"])
    assert bad.exit_code == 2 and "install_density must be between 0 and 4" in bad.output
    with pytest.raises(click.BadParameter, match="gsd_m must be between"):
        world_settings_from_options(gsd_m=0.1)
