"""Prompts from label geometries, in each chip's own pixel grid.

Labels are stored in EPSG:4326; every chip has its own CRS and transform, so a label is
reprojected into the chip's CRS and then into pixels through the inverse transform. Labels that
cross the chip edge are clipped to it; point-only labels become boxes of a buffer in metres.

Reprojection here goes through one cached pyproj Transformer per CRS pair, called once per
geometry on all its coordinates (`shapely.transform`), instead of once per ring through
`shapely.ops.transform`: PROJ computes every point on its own either way, so the coordinates are
the same, at a fraction of the Python overhead (the factory reprojects every prompt and mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely import affinity, make_valid, wkb
from shapely.geometry import MultiPolygon, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from flywheel_core.geo.projection import reproject
from flywheel_core.masks.types import Prompt

PolygonPromptKind = Literal["box", "point", "polygon"]


@dataclass(frozen=True)
class PromptSettings:
    polygon_kind: PolygonPromptKind = "polygon"
    positive_points: int = 1  # interior points per polygon label
    negative_points: int = (
        0  # points outside the polygon, inside its box grown by `negative_ring_m`
    )
    negative_ring_m: float = 3.0
    point_buffer_m: float = 5.0  # point-only labels: half-size of their box
    min_area_px: float = 4.0  # a label's part smaller than this inside the chip is skipped


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def _crs_key(crs: str | int) -> str:
    return f"EPSG:{crs}" if isinstance(crs, int) else str(crs)


def fast_reproject(geometry: BaseGeometry, src: str | int, dst: str | int) -> BaseGeometry:
    """`flywheel_core.geo.projection.reproject` for 2-d geometries, all coordinates in one call
    (3-d ones go through `reproject` itself)."""
    s, d = _crs_key(src), _crs_key(dst)
    if s == d or geometry.is_empty or geometry.has_z:
        return reproject(geometry, src, dst)
    transformer = _transformer(s, d)

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometry, project)


def to_pixels(geometry_lonlat: BaseGeometry, crs: str, transform: Affine) -> BaseGeometry:
    """A lon/lat geometry in a chip's pixel coordinates (x = column, y = row)."""
    inv = ~transform
    local = fast_reproject(geometry_lonlat, 4326, crs)
    return affinity.affine_transform(local, [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])


def to_lonlat(geometry_px: BaseGeometry, crs: str, transform: Affine) -> BaseGeometry:
    """Inverse of `to_pixels`: pixel-space geometry back to EPSG:4326."""
    t = transform
    local = affinity.affine_transform(geometry_px, [t.a, t.b, t.d, t.e, t.c, t.f])
    return fast_reproject(local, crs, 4326)


def to_lonlat_many(
    geometries_px: Sequence[BaseGeometry], crs: str, transform: Affine
) -> list[BaseGeometry]:
    """`to_lonlat` of each geometry, with one pass over all their coordinates: the affine step
    written exactly as `shapely.affinity.affine_transform` writes it, then one PROJ call (which
    computes each point on its own), so each result is the one `to_lonlat` gives."""
    geometries = np.empty(len(geometries_px), dtype=object)
    geometries[:] = list(geometries_px)
    if _crs_key(crs) == "EPSG:4326" or shapely.has_z(geometries).any():
        return [to_lonlat(g, crs, transform) for g in geometries_px]
    a, b, d, e, xoff, yoff = (
        transform.a,
        transform.b,
        transform.d,
        transform.e,
        transform.c,
        transform.f,
    )
    transformer = _transformer(_crs_key(crs), "EPSG:4326")

    def apply(coords: np.ndarray) -> np.ndarray:
        x, y = coords.T
        lon, lat = transformer.transform(a * x + b * y + xoff, d * x + e * y + yoff)
        return np.column_stack([lon, lat])

    return list(shapely.transform(geometries, apply))


def _polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon | None:
    """The polygonal part of a clipped footprint (clipping can leave slivers of lines/points)."""
    if isinstance(geom, Polygon | MultiPolygon):
        return None if geom.is_empty else geom
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]
    return MultiPolygon(polys) if len(polys) > 1 else (polys[0] if polys else None)


def interior_points(region: BaseGeometry, n: int, seed: int) -> np.ndarray:
    """`n` points inside the region: its representative point first, then spread samples."""
    if n <= 0 or region.is_empty:
        return np.zeros((0, 2), dtype=np.float32)
    pts = [region.representative_point().coords[0]]
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = region.bounds
    tries = 0
    while len(pts) < n and tries < 200 * n:
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if region.contains(Point(x, y)):
            pts.append((x, y))
        tries += 1
    return np.asarray(pts, dtype=np.float32)


def negative_points(
    region: BaseGeometry, ring_px: float, n: int, frame: Polygon, seed: int
) -> np.ndarray:
    """`n` points outside the region, in a ring around it and inside the chip."""
    if n <= 0:
        return np.zeros((0, 2), dtype=np.float32)
    ring = region.buffer(ring_px).difference(region.buffer(1.0)).intersection(frame)
    if ring.is_empty:
        return np.zeros((0, 2), dtype=np.float32)
    return interior_points(ring, n, seed + 7919)[:n]


def _seed(label_id: str) -> int:
    return int.from_bytes(label_id.encode()[:8].ljust(8, b"\0"), "little") % (2**32)


def chip_prompts(labels: list[dict], chip: dict, settings: PromptSettings) -> list[Prompt]:
    """A prompt per label meeting the chip (label rows carry WKB geometry and prompt_geometry)."""
    transform = Affine(*chip["transform"])
    h, w = chip["height"], chip["width"]
    frame = box(0, 0, w, h)
    gsd = abs(transform.a)
    prompts: list[Prompt] = []
    for label in labels:
        is_point = label["geometry_type"] == "point"
        source = wkb.loads(label["geometry"])
        footprint = wkb.loads(label["prompt_geometry"])
        px_full = to_pixels(footprint, chip["crs"], transform)
        if not px_full.is_valid:  # reprojection can pinch a valid lon/lat ring (e.g. a union)
            px_full = make_valid(px_full)
        if not px_full.intersects(frame):
            continue
        px = px_full.intersection(frame)
        region = _polygonal(px)
        if region is None or region.area < settings.min_area_px:
            continue
        clipped = not frame.contains(px_full)
        seed = _seed(label["label_id"])
        if is_point:
            center = to_pixels(source, chip["crs"], transform)
            half = settings.point_buffer_m / gsd
            sq = box(center.x - half, center.y - half, center.x + half, center.y + half)
            region = sq.intersection(frame)
            if region.is_empty or not frame.contains(center):
                continue
            kind: PolygonPromptKind = "box"
            pos = np.asarray([[center.x, center.y]], dtype=np.float32)
        else:
            kind = settings.polygon_kind
            pos = interior_points(
                region, max(settings.positive_points, 1 if kind == "point" else 0), seed
            )
        neg = (
            np.zeros((0, 2), dtype=np.float32)
            if is_point
            else negative_points(
                region, settings.negative_ring_m / gsd, settings.negative_points, frame, seed
            )
        )
        points = np.concatenate([pos, neg]).astype(np.float32)
        labels_ = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.int64)
        x0, y0, x1, y1 = region.bounds
        prompts.append(
            Prompt(
                label_id=label["label_id"],
                kind=kind,
                box=(float(x0), float(y0), float(x1), float(y1)),
                points=points,
                point_labels=labels_,
                region=region,
                source_geometry="point" if is_point else "polygon",
                clipped=clipped,
            )
        )
    return prompts
