"""The mask factory's fast paths give the same masks, polygons and QA decisions as the plain ones.

The plain implementations are kept here as they were before the fast paths (full-chip morphology
and polygonize, one GDAL rasterize call per geometry, one pyproj call per ring through
`shapely.ops.transform`), and every comparison is exact: same pixels, same WKB, same numbers.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import rasterize, shapes
from scipy import ndimage
from shapely import wkb
from shapely.geometry import MultiPolygon, Point, Polygon, box, shape
from shapely.ops import unary_union

from flywheel_core.geo.projection import reproject
from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.imagery.vhr_chips import VhrScene, chip_image, iter_vhr_chips
from flywheel_core.labels.importer import read_label_file
from flywheel_core.masks.backends.classical import ClassicalBackend
from flywheel_core.masks.factory import (
    FactorySettings,
    channels_last,
    iter_masks,
    labels_meeting,
    pack,
    polygonal,
)
from flywheel_core.masks.prompts import chip_prompts, fast_reproject, to_lonlat_many
from flywheel_core.masks.qa import assess
from flywheel_core.masks.refine import (
    SHIFTED_CLOSING_PX,
    RefineSettings,
    closing,
    disk,
    fill_holes,
    rasterize_each,
    refine,
    refine_many,
    vectorize,
)
from flywheel_core.masks.timing import STAGES, StageTimer
from flywheel_core.settings import ChipSettings
from flywheel_tests.fixtures.world import MASK_DATE

# --- the plain implementations ----------------------------------------------------------------


def reference_vectorize(mask: np.ndarray):
    if not mask.any():
        return None
    polys = [shape(g) for g, v in shapes(mask.astype(np.uint8), mask=mask) if v == 1]
    merged = unary_union(polys)
    return merged if not merged.is_empty else None


def reference_refine(mask: np.ndarray, gsd_m: float, settings: RefineSettings):
    out = mask.astype(bool)
    radius = round(settings.closing_m / gsd_m)
    if radius > 0 and out.any():
        pad = radius + 1
        padded = np.pad(out, pad)
        out = ndimage.binary_closing(padded, structure=disk(radius))[pad:-pad, pad:-pad]
    out = ndimage.binary_fill_holes(out)
    labels, n = ndimage.label(out, structure=np.ones((3, 3), bool))
    if n:
        sizes = ndimage.sum(out, labels, index=np.arange(1, n + 1))
        keep = np.flatnonzero(sizes * gsd_m * gsd_m >= settings.min_area_m2) + 1
        out = np.isin(labels, keep)
    polygon = reference_vectorize(out)
    if polygon is None:
        return np.zeros_like(out), None
    simple = polygon.simplify(settings.simplify_m / gsd_m, preserve_topology=True)
    if simple.is_empty:
        return np.zeros_like(out), None
    return rasterize([(simple, 1)], out_shape=out.shape, dtype="uint8").astype(bool), simple


def reference_to_lonlat(geometry_px, crs: str, t: Affine):
    local = shapely.affinity.affine_transform(geometry_px, [t.a, t.b, t.d, t.e, t.c, t.f])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # shapely.ops.transform
        return reproject(local, crs, 4326)


def reference_rows(chips, labels, backend, settings: FactorySettings) -> list[dict]:
    """The factory's per-prompt loop as it was, reduced to the columns the fast paths touch."""
    rows = []
    for chip in chips:
        prompts = chip_prompts(labels_meeting(chip, labels), chip, settings.prompts)
        if not prompts:
            continue
        image = np.ascontiguousarray(chip_image(chip).transpose(1, 2, 0))
        raws = backend.segment(image, prompts)
        transform = Affine(*chip["transform"])
        gsd, h, w = abs(transform.a), chip["height"], chip["width"]
        for prompt, raw in zip(prompts, raws, strict=True):
            region = rasterize([(prompt.region, 1)], out_shape=(h, w), dtype="uint8")
            refined, polygon = reference_refine(raw.mask, gsd, settings.refine)
            qa = assess(refined, region.astype(bool), prompt, raw, gsd, settings.rules)
            mask_geom = (
                polygonal(reference_to_lonlat(polygon, chip["crs"], transform))
                if polygon is not None
                else None
            )
            frame = prompt.region.intersection(box(0, 0, w, h))
            prompt_geom = polygonal(reference_to_lonlat(frame, chip["crs"], transform))
            rows.append(
                {
                    "uid": f"{chip['chip_id']}|{prompt.label_id}",
                    "raw_mask": pack(raw.mask),
                    "mask": pack(refined),
                    "mask_geometry": wkb.dumps(mask_geom) if mask_geom is not None else None,
                    "prompt_geometry": wkb.dumps(prompt_geom),
                    "mask_area_m2": qa.area_m2,
                    "iou_with_prompt": qa.iou_with_prompt,
                    "area_ratio": qa.area_ratio,
                    "stability_score": qa.stability_score,
                    "accepted": qa.accepted,
                    "reason": qa.reason,
                }
            )
    return rows


# --- random masks and geometries --------------------------------------------------------------


def random_mask(rng: np.random.Generator, h: int = 96, w: int = 128) -> np.ndarray:
    """Rectangles (some crossing the edge) with speckle: holes, specks, frame-line gaps."""
    m = np.zeros((h, w), bool)
    for _ in range(rng.integers(0, 5)):
        y0, x0 = rng.integers(-10, h), rng.integers(-10, w)
        m[max(y0, 0) : y0 + rng.integers(1, 40), max(x0, 0) : x0 + rng.integers(1, 40)] = True
    return m ^ (rng.random((h, w)) < rng.choice([0.0, 0.05, 0.2, 0.5]))


def random_polygon(rng: np.random.Generator, integer: bool) -> Polygon | MultiPolygon:
    parts = []
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(-20, 276, 2)
        n = int(rng.integers(3, 12))
        angle = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(1, 60) * rng.uniform(0.3, 1, n)
        ring = np.c_[cx + radius * np.cos(angle), cy + radius * np.sin(angle)]
        parts.append(shapely.make_valid(Polygon(np.round(ring) if integer else ring)).buffer(0))
    return shapely.union_all(parts)


@pytest.mark.parametrize("seed", [0, 1])
def test_refine_matches_the_full_chip_computation(seed):
    rng = np.random.default_rng(seed)
    checked = 0
    for _ in range(150):
        mask = random_mask(rng)
        gsd = float(rng.choice([0.1, 0.2, 0.3125, 0.5, 1.0]))
        settings = RefineSettings(
            closing_m=float(rng.choice([0.0, 0.3, 0.6, 1.5])),
            min_area_m2=float(rng.choice([0.0, 0.5, 2.0])),
            simplify_m=float(rng.choice([0.0, 0.3, 1.0])),
        )
        want, want_polygon = reference_refine(mask, gsd, settings)
        got, got_polygon = refine(mask, gsd, settings)
        assert np.array_equal(got, want)
        assert (got_polygon is None) == (want_polygon is None)
        if want_polygon is not None:
            assert got_polygon.wkb == want_polygon.wkb
            checked += 1
    assert checked > 100  # most cases leave a polygon to compare


def test_refine_many_is_refine_of_each():
    rng = np.random.default_rng(7)
    masks = [random_mask(rng) for _ in range(11)] + [np.zeros((96, 128), bool)]
    settings = RefineSettings(simplify_m=1.0)  # coarse: simplified multipolygons can overlap
    for (got, got_polygon), mask in zip(refine_many(masks, 0.2, settings), masks, strict=True):
        want, want_polygon = reference_refine(mask, 0.2, settings)
        assert np.array_equal(got, want)
        assert (got_polygon is None and want_polygon is None) or got_polygon.wkb == (
            want_polygon.wkb
        )


@pytest.mark.parametrize("big", [False, True])
def test_closing_is_scipys(big):
    rng = np.random.default_rng(8)
    for _ in range(60):
        radius = int(rng.integers(1, 5))
        h, w = rng.integers(70, 120, 2) if big else rng.integers(1, 40, 2)
        mask = np.pad(rng.random((h, w)) < rng.random(), radius + 1)  # as `refine` pads it
        assert (mask.size > SHIFTED_CLOSING_PX) == big
        want = ndimage.binary_closing(mask, structure=disk(radius))
        assert np.array_equal(closing(mask, radius), want)


def test_fill_holes_is_scipys():
    rng = np.random.default_rng(3)
    for _ in range(400):
        h, w = rng.integers(1, 50, 2)
        mask = rng.random((h, w)) < rng.random()
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_vectorize_without_the_mask_band_traces_the_same_polygons():
    rng = np.random.default_rng(5)
    for _ in range(200):
        mask = random_mask(rng, 40, 50)
        want = reference_vectorize(mask)
        got = vectorize(mask)
        assert (got is None and want is None) or got.wkb == want.wkb
    shifted = vectorize(np.ones((2, 3), bool), Affine.translation(10, 20))
    assert shifted.bounds == (10.0, 20.0, 13.0, 22.0)


def test_rasterize_each_is_one_call_per_geometry():
    rng = np.random.default_rng(11)
    geometries = [random_polygon(rng, integer=i % 2 == 0) for i in range(19)]
    # parts that overlap (an invalid multipolygon) burn shared pixels twice in one call
    overlapping = MultiPolygon([box(10, 10, 40, 40), box(20, 20, 60, 50)])
    assert not overlapping.is_valid
    geometries += [overlapping, Point(5, 5).buffer(3), box(0, 0, 256, 256)]
    for got, g in zip(rasterize_each(geometries, (256, 256)), geometries, strict=True):
        want = rasterize([(g, 1)], out_shape=(256, 256), dtype="uint8").astype(bool)
        assert np.array_equal(got, want)
    assert rasterize_each([], (256, 256)) == []


def test_fast_reproject_gives_the_same_coordinates():
    rng = np.random.default_rng(2)
    lonlat = [
        random_polygon(rng, integer=False),
        Point(0.5, 0.5),
        MultiPolygon([box(0, 0, 1, 1), box(2, 2, 3, 3)]),
    ]
    for g in lonlat:
        g = shapely.affinity.affine_transform(g, [1e-4, 0, 0, 1e-4, 11.58, 48.14])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            want = reproject(g, 4326, "EPSG:32632")
            back = reproject(want, "EPSG:32632", 4326)
        assert fast_reproject(g, 4326, "EPSG:32632").wkb == want.wkb
        assert fast_reproject(want, "EPSG:32632", 4326).wkb == back.wkb
    assert fast_reproject(Polygon(), 4326, "EPSG:32632").is_empty


def test_to_lonlat_many_is_the_plain_to_lonlat_of_each():
    rng = np.random.default_rng(4)
    t = Affine(0.3125, 0, 691_000.0, 0, -0.3125, 5_335_000.0)
    pixels = [random_polygon(rng, integer=i % 2 == 0) for i in range(8)]
    pixels += [Polygon(), box(0, 0, 256, 256)]
    got = to_lonlat_many(pixels, "EPSG:32632", t)
    want = [reference_to_lonlat(g, "EPSG:32632", t) for g in pixels]
    assert [g.wkb for g in got] == [g.wkb for g in want]
    assert to_lonlat_many([], "EPSG:32632", t) == []


def test_channels_last_is_the_transposed_copy():
    bands = np.random.default_rng(0).integers(0, 255, (4, 7, 5), dtype=np.uint8)
    image = channels_last(bands)
    assert image.flags.c_contiguous and image.dtype == np.uint8
    assert np.array_equal(image, bands.transpose(1, 2, 0))


# --- the factory on the synthetic world -------------------------------------------------------


@pytest.mark.slow
def test_factory_rows_match_the_plain_loop(mask_world):
    labels = read_label_file(
        mask_world.seed_labels_path, source="synthetic-seed", s2_level=15, h3_resolution=11
    ).table.to_pylist()
    chips = []
    for cell in mask_world.cells:
        scene = VhrScene(str(mask_world.vhr_path(cell, MASK_DATE)), cell, "synthetic-vhr", None)
        chips += list(
            iter_vhr_chips(scene, cell, MASK_DATE, cell_polygon(cell), ChipSettings(), 15, 11)
        )
    backend, settings = ClassicalBackend(gsd_m=0.3125), FactorySettings()
    timer = StageTimer()
    got = list(iter_masks(chips, labels, backend, settings, timer))
    want = reference_rows(chips, labels, backend, settings)
    assert len(got) == len(want) >= 10
    assert {r["accepted"] for r in want} == {True, False}  # both decisions are exercised
    for g, w in zip(got, want, strict=True):
        assert {k: g[k] for k in w} == w
    assert set(timer.seconds) == set(STAGES)
    assert 0.0 < timer.share_outside() < 1.0


def test_remainder_books_only_what_no_stage_booked(monkeypatch):
    clock = iter([0.0, 1.0, 3.0, 3.5, 9.0, 10.0])  # remainder in, 2 × (stage in, out), out
    monkeypatch.setattr("flywheel_core.masks.timing.time.perf_counter", lambda: next(clock))
    timer = StageTimer()
    with timer.remainder("other"):
        with timer.stage("model"):
            pass
        with timer.stage("refinement"):
            pass
    assert timer.seconds == {"model": 2.0, "refinement": 5.5, "other": 2.5}
    assert timer.share_outside() == pytest.approx(8.0 / 10.0)
