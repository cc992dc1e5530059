"""The hidden truth, the hidden look-alikes, and the noisy seed labels derived from the truth.

The truth is what the flywheel is scored against; the look-alikes (distractors.parquet) are
what its false positives are likely made of, by kind; the seed labels imitate what users bring:
a subset, shifted by georeferencing error, with sloppy vertices, some reduced to points.
Choices are keyed by install id, so a given installation is treated the same in every world.
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.projection import area_m2, reproject
from flywheel_core.world.layout import cell_layout
from flywheel_core.world.noise import key64, rng
from flywheel_core.world.objects import Distractor, Installation
from flywheel_core.world.world_settings import LayoutParams

VERTEX_NOISE_OF_JITTER = 0.2  # vertex noise std as a fraction of the shift std ("mild")


TRUTH_COLUMNS = [
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
DISTRACTOR_COLUMNS = ["distractor_id", "cell", "kind", "geometry", "area_m2", "n_objects"]


def installations(cells: Sequence[str], params: LayoutParams) -> list[tuple[int, Installation]]:
    """(UTM EPSG, installation) for every installation owned by the world's cells."""
    out = []
    for cell in cells:
        lay = cell_layout(cell, params)
        out += [(lay.epsg, inst) for inst in lay.installations]
    return out


def distractors(cells: Sequence[str], params: LayoutParams) -> list[tuple[int, Distractor]]:
    out = []
    for cell in cells:
        lay = cell_layout(cell, params)
        out += [(lay.epsg, d) for d in lay.distractors]
    return out


def distractor_frame(cells: Sequence[str], params: LayoutParams) -> gpd.GeoDataFrame:
    """The look-alikes owned by the world's cells, one row each, in EPSG:4326."""
    rows = []
    for epsg, d in distractors(cells, params):
        geometry = reproject(d.geometry, epsg, 4326)
        rows.append(
            {
                "distractor_id": d.distractor_id,
                "cell": d.cell,
                "kind": d.kind,
                "geometry": geometry,
                "area_m2": area_m2(geometry),
                "n_objects": d.n_objects,
            }
        )
    return gpd.GeoDataFrame(rows, columns=DISTRACTOR_COLUMNS, geometry="geometry", crs="EPSG:4326")


def truth_frame(cells: Sequence[str], params: LayoutParams) -> gpd.GeoDataFrame:
    rows = []
    for epsg, inst in installations(cells, params):
        footprint = reproject(inst.footprint, epsg, 4326)
        rows.append(
            {
                "install_id": inst.install_id,
                "cell": inst.cell,
                "kind": inst.kind,
                "install_date": inst.install_date,
                "geometry": footprint,
                "outline": shapely.to_wkb(reproject(inst.outline, epsg, 4326)),
                "area_m2": area_m2(footprint),
                "n_panels": inst.n_panels,
                "panel_type": inst.panel_type,
            }
        )
    return gpd.GeoDataFrame(rows, columns=TRUTH_COLUMNS, geometry="geometry", crs="EPSG:4326")


def _wiggle_polygon(poly: Polygon, r: np.random.Generator, sigma: float) -> Polygon:
    def ring(coords: np.ndarray) -> np.ndarray:
        pts = coords[:-1] + r.normal(0.0, sigma, coords[:-1].shape)
        return np.vstack([pts, pts[:1]])

    return Polygon(
        ring(np.asarray(poly.exterior.coords)), [ring(np.asarray(i.coords)) for i in poly.interiors]
    )


def jitter(geom: BaseGeometry, r: np.random.Generator, jitter_m: float) -> BaseGeometry:
    """Shift the whole shape (georeferencing error), then move each vertex a little."""
    dx, dy = r.normal(0.0, jitter_m, 2)
    sigma = VERTEX_NOISE_OF_JITTER * jitter_m
    parts = [_wiggle_polygon(p, r, sigma) for p in getattr(geom, "geoms", [geom])]
    out = parts[0] if len(parts) == 1 else MultiPolygon(parts)
    out = affinity.translate(out, dx, dy)
    return out if out.is_valid else shapely.make_valid(out)


def _smallest(ids: list[str], k: int, *salt: object) -> set[str]:
    return set(sorted(ids, key=lambda i: key64(*salt, i))[:k])


def seed_label_frame(
    cells: Sequence[str],
    params: LayoutParams,
    seed_fraction: float,
    jitter_m: float,
    point_fraction: float,
) -> gpd.GeoDataFrame:
    """`seed_fraction` of the installations, jittered; `point_fraction` of those as points."""
    seed = params.seed
    insts = installations(cells, params)
    ids = [i.install_id for _, i in insts]
    chosen = _smallest(ids, round(seed_fraction * len(ids)), "seed-label", seed)
    points = _smallest(sorted(chosen), round(point_fraction * len(chosen)), "seed-point", seed)
    rows = []
    for epsg, inst in insts:
        if inst.install_id not in chosen:
            continue
        r = rng("seed-jitter", seed, inst.install_id)
        geom = jitter(inst.footprint, r, jitter_m)
        if inst.install_id in points:
            geom = geom.representative_point()
        rows.append(
            {
                "source_id": inst.install_id,
                "install_date": inst.install_date,
                "kind": inst.kind,
                "geometry": reproject(geom, epsg, 4326),
            }
        )
    columns = ["source_id", "install_date", "kind", "geometry"]
    return gpd.GeoDataFrame(rows, columns=columns, geometry="geometry", crs="EPSG:4326")
