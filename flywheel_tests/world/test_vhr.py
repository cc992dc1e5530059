"""The VHR rendering: panel types that look different, and any GSD from 0.3 to 1.0 m."""

from __future__ import annotations

import hashlib
import json

import geopandas as gpd
import numpy as np
import pystac
import pytest
import rasterio
from rasterio.features import rasterize
from rasterio.warp import Resampling, reproject
from scipy.ndimage import binary_erosion

from flywheel_core.geo.projection import reproject as reproject_geom
from flywheel_core.geo.s2 import cell_from_lonlat
from flywheel_core.world.landcover import PANEL_CLASSES
from flywheel_core.world.objects import FRAME
from flywheel_core.world.render import render_layers
from flywheel_core.world.spectra import S2_BANDS
from flywheel_core.world.vhr import render_vhr
from flywheel_core.world.world_settings import WorldSettings
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES, TINY_PARAMS

LATE = TINY_DATES[1]
SMALL_CELL = cell_from_lonlat(11.58, 48.14, 16)


def _by_panel_type(layers, image: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Per panel type: the mean DN of module interiors and frame lines, and the mean
    within-installation std of the interiors (per band)."""
    out = {}
    shape, transform = layers.classes.shape, layers.grid.transform()
    for name, cls in PANEL_CLASSES.items():
        is_cls = layers.classes == cls
        interior = is_cls & (layers.detail == 0)
        frames = is_cls & (layers.detail == FRAME)
        stds = []
        for inst in layers.installations:
            if inst.cls != cls:
                continue
            own = rasterize([(inst.footprint, 1)], out_shape=shape, transform=transform)
            px = interior & binary_erosion(own.astype(bool), iterations=1)
            if px.sum() >= 30:
                stds.append(image[:, px].std(axis=1))
        assert stds and frames.sum() > 30, name
        out[name] = {
            "interior": image[:, interior].mean(axis=1),
            "frames": image[:, frames].mean(axis=1),
            "std": np.mean(stds, axis=0),
        }
    return out


def test_panel_types_differ_in_colour_frames_and_texture(tiny_world):
    layers = render_layers(TINY_CELL, LATE, WorldSettings(**TINY_PARAMS))
    image, _grid = render_vhr(layers)
    with rasterio.open(tiny_world.vhr_path(TINY_CELL, LATE)) as src:
        assert np.array_equal(src.read(), image)  # what is measured here is what was written
    t = _by_panel_type(layers, image.astype(np.float64))
    red, green, blue = 0, 1, 2

    def blue_minus_red(name: str) -> float:
        return float(t[name]["interior"][blue] - t[name]["interior"][red])

    # Blue polycrystalline: clearly blue > red, the bluest type.
    assert blue_minus_red("poly") > 15
    assert blue_minus_red("poly") > blue_minus_red("mono") > blue_minus_red("thin_film")
    # Black monocrystalline: near black cells between thin bright frame lines.
    assert t["mono"]["interior"][:3].mean() < 70
    assert t["mono"]["interior"][:3].sum() < t["poly"]["interior"][:3].sum()
    assert (t["mono"]["frames"] - t["mono"]["interior"] > 20).all()
    # Thin film: dark, nearly neutral (slightly green), frameless (faint borders), uniform.
    thin = t["thin_film"]
    assert abs(blue_minus_red("thin_film")) < 8
    assert thin["interior"][green] >= thin["interior"][red]
    assert (thin["frames"] - thin["interior"] < 8).all()
    # Texture: poly's crystal grain makes it the most speckled, thin film the most uniform.
    assert (t["poly"]["std"][:3] > 1.4 * t["mono"]["std"][:3]).all()
    assert (thin["std"][:3] <= t["mono"]["std"][:3] + 0.3).all()


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def gsd_worlds(tmp_path_factory):
    from flywheel_core.world.synthetic import generate_world

    out = {}
    for gsd in (0.3125, 0.5, 1.0, 0.3):
        root = tmp_path_factory.mktemp(f"gsd{gsd}")
        out[gsd] = generate_world(
            root,
            [SMALL_CELL],
            [LATE],
            seed=1,
            gsd_m=gsd,
            install_density=3.0,
            cloudy_dates_fraction=0.0,
            panel_mix={"poly": 1, "mono": 1},
        )
    return out


@pytest.mark.parametrize("gsd", [0.5, 1.0])
def test_gsd_gives_that_resolution_over_the_same_extent(gsd_worlds, gsd):
    base, world = gsd_worlds[0.3125], gsd_worlds[gsd]
    with (
        rasterio.open(base.vhr_path(SMALL_CELL, LATE)) as b,
        rasterio.open(world.vhr_path(SMALL_CELL, LATE)) as w,
    ):
        assert w.res == (gsd, gsd) and w.bounds == b.bounds
        assert w.shape == (round(b.height * 0.3125 / gsd), round(b.width * 0.3125 / gsd))
        assert float(w.tags()["FLYWHEEL_GSD_M"]) == gsd
        assert w.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        transform, shape = w.transform, w.shape
    item = next(
        i
        for i in pystac.Catalog.from_file(str(world.catalog_path)).get_items(recursive=True)
        if i.id.startswith("vhr-")
    )
    assert item.properties["gsd"] == gsd
    asset = item.assets["image"].extra_fields
    assert asset["proj:shape"] == list(shape) and asset["proj:transform"] == list(transform)[:6]
    meta = json.loads((world.out_dir / "world.json").read_text())
    assert meta["vhr_gsd_m"] == gsd == meta["settings"]["gsd_m"]
    # The Sentinel-2 scene does not depend on the VHR GSD.
    for band in [b.name for b in S2_BANDS] + ["SCL"]:
        assert _sha(world.s2_path(SMALL_CELL, LATE, band)) == _sha(
            base.s2_path(SMALL_CELL, LATE, band)
        )


@pytest.mark.parametrize("gsd", [0.5, 1.0])
def test_coarse_scene_is_the_area_average_and_the_truth_stays_aligned(gsd_worlds, gsd):
    base, world = gsd_worlds[0.3125], gsd_worlds[gsd]
    with (
        rasterio.open(base.vhr_path(SMALL_CELL, LATE)) as b,
        rasterio.open(world.vhr_path(SMALL_CELL, LATE)) as w,
    ):
        coarse = w.read().astype(np.float32)
        averaged = np.zeros_like(coarse)
        for k in range(4):
            reproject(
                b.read(k + 1).astype(np.float32),
                averaged[k],
                src_transform=b.transform,
                src_crs=b.crs,
                dst_transform=w.transform,
                dst_crs=w.crs,
                resampling=Resampling.average,
            )
        transform, epsg = w.transform, w.crs.to_epsg()
    diff = np.abs(coarse - averaged)[:, 2:-2, 2:-2]
    assert diff.mean() < 3.5  # only sensor noise (drawn per delivered pixel) differs
    assert np.corrcoef(coarse.ravel(), averaged.ravel())[0, 1] > 0.98
    # The truth lands on its panels: bluer and darker in NIR (the classical score) inside the
    # footprint than on the ground and roof right around it.
    truth = gpd.read_parquet(world.truth_path)
    assert len(truth) >= 2
    score = (coarse[2] - coarse[0]) + 0.5 * (coarse[2] - coarse[3])
    inside_beats_ring = 0
    for geom in truth.geometry:
        g = reproject_geom(geom, 4326, epsg)
        inside = rasterize([(g.buffer(-0.3), 1)], out_shape=score.shape, transform=transform)
        ring = rasterize(
            [(g.buffer(4.0).difference(g.buffer(1.5)), 1)],
            out_shape=score.shape,
            transform=transform,
        )
        if inside.sum() >= 3:
            inside_beats_ring += score[inside == 1].mean() > score[ring == 1].mean() + 10
    assert inside_beats_ring >= 0.8 * len(truth)


def test_a_gsd_that_does_not_divide_20_m_keeps_the_zone_lattice(gsd_worlds):
    base, world = gsd_worlds[0.3125], gsd_worlds[0.3]
    with (
        rasterio.open(base.vhr_path(SMALL_CELL, LATE)) as b,
        rasterio.open(world.vhr_path(SMALL_CELL, LATE)) as w,
    ):
        assert w.res == pytest.approx((0.3, 0.3), abs=1e-9)
        for inner, outer, sign in zip(w.bounds, b.bounds, (1, 1, -1, -1), strict=True):
            assert 0 <= sign * (inner - outer) < 0.3  # inset by less than a pixel
            assert abs(inner / 0.3 - round(inner / 0.3)) < 1e-6  # on the 0.3 m lattice
