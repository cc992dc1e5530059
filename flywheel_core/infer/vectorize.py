"""Polygons from a probability raster, read in strips and merged across the strip boundaries.

The raster (normally the COG `predict_raster` writes: uint8, probability = value / 255) is read
`read_rows` rows at a time. Each strip is thresholded, its 4-connected components are labelled
(`scipy.ndimage.label`, the same connectivity `rasterio.features.shapes` uses) and vectorized in
pixel coordinates, and per-component pixel count, probability sum and maximum are kept. A
component that continues in the next strip is joined to it (union-find over the pairs of labels
facing each other across the boundary row), and its strip pieces are unioned: pieces are traced
on integer pixel coordinates, so the shared boundary edges match exactly and the union is one
polygon. Only the last row of labels is carried from strip to strip, so raster memory is bounded
by `read_rows × width`; the polygons kept are the output itself.

Then: components below `min_area_m2` are dropped (per part, before grouping, so specks never glue
groups together); with `group_distance_m > 0`, parts within that distance of each other (in
metres, transitively) become one detection whose geometry is a MultiPolygon of its parts; with
`clip_to` (EPSG:4326) only detections whose centroid lies inside it are kept.

Areas: pixel count × pixel area when the raster CRS is projected (the polygons trace pixel
edges, so this equals the polygon's area), converted to m² with the CRS's linear unit; for a
geographic CRS, `area_m2` of the lon/lat geometry (equal-area projection).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.features import shapes
from rasterio.transform import Affine
from rasterio.windows import Window
from scipy import ndimage
from shapely import STRtree
from shapely.affinity import affine_transform
from shapely.geometry import MultiPolygon, Point, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from flywheel_core.geo.projection import area_m2, reproject, utm_epsg

# Inclusive threshold, robust to float rounding of the stored levels (204 / 255 vs 0.8): far
# below the 1/255 quantization step, so it never moves the threshold to another level.
_THRESHOLD_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Detection:
    geometry: Polygon | MultiPolygon  # EPSG:4326
    geometry_local: Polygon | MultiPolygon  # the raster's CRS
    score: float  # mean probability over the detection's pixels
    max_score: float
    area_m2: float
    n_parts: int
    n_pixels: int


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self, n: int) -> int:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return start

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def probability_scale(src: rasterio.io.DatasetReader) -> tuple[float, float]:
    """(scale, offset) turning stored values into probabilities."""
    tag = src.tags().get("probability_scale")
    if tag is not None:
        return float(tag), 0.0
    scale, offset = float(src.scales[0]), float(src.offsets[0])
    if scale == 1.0 and offset == 0.0 and src.dtypes[0] == "uint8":
        return 1.0 / 255.0, 0.0
    return scale, offset


def _parts(geom: BaseGeometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]


def vectorize_probabilities(
    cog_path: str | Path,
    threshold: float = 0.5,
    min_area_m2: float = 2.0,
    group_distance_m: float = 0.0,
    read_rows: int = 1024,
    *,
    clip_to: BaseGeometry | None = None,
) -> list[Detection]:
    """Detections (probability ≥ `threshold`) of the probability raster at `cog_path`.

    Stored values become probabilities by the `probability_scale` tag `predict_raster` writes,
    else the band's GDAL scale/offset, else value / 255 for uint8 (floats are taken as is).
    """
    if read_rows < 1:
        raise ValueError("read_rows must be >= 1")
    uf = _UnionFind()
    counts: list[np.ndarray] = []
    sums: list[np.ndarray] = []
    maxes: list[np.ndarray] = []
    pieces: dict[int, list[Polygon]] = {}

    with rasterio.open(cog_path) as src:
        height, width = src.height, src.width
        transform: Affine = src.transform
        crs = CRS.from_user_input(src.crs)
        scale, offset = probability_scale(src)
        prev_row: np.ndarray | None = None  # global ids of the previous strip's last row
        for r0 in range(0, height, read_rows):
            n_rows = min(read_rows, height - r0)
            raw = src.read(1, window=Window(0, r0, width, n_rows))
            prob = raw.astype(np.float32) * np.float32(scale) + np.float32(offset)
            mask = prob >= threshold - _THRESHOLD_TOLERANCE
            labels, n = ndimage.label(mask)
            if n == 0:
                prev_row = None
                continue
            base = uf.add(n)  # strip label k -> global id base + k - 1
            flat = labels.ravel()
            counts.append(np.bincount(flat, minlength=n + 1)[1:])
            sums.append(np.bincount(flat, weights=prob.ravel(), minlength=n + 1)[1:])
            maxes.append(np.asarray(ndimage.maximum(prob, labels, np.arange(1, n + 1))))
            for geom, value in shapes(
                labels.astype(np.int32),
                mask=mask,
                connectivity=4,
                transform=Affine.translation(0, r0),
            ):
                pieces.setdefault(base + int(value) - 1, []).append(shape(geom))
            if prev_row is not None:
                here = labels[0]
                touch = (prev_row > 0) & (here > 0)
                if touch.any():
                    pairs = np.unique(
                        np.stack([prev_row[touch] - 1, base + here[touch] - 1]), axis=1
                    )
                    for a, b in pairs.T:
                        uf.union(int(a), int(b))
            last = labels[-1]
            prev_row = np.where(last > 0, base + last, 0)  # global id + 1; 0 = background

    if not uf.parent:
        return []
    count = np.concatenate(counts)
    total = np.concatenate(sums)
    peak = np.concatenate(maxes)

    # Components: union of strip pieces and their statistics.
    members: dict[int, list[int]] = {}
    for gid in range(len(uf.parent)):
        members.setdefault(uf.find(gid), []).append(gid)
    projected = crs.is_projected
    unit_m = float(crs.axis_info[0].unit_conversion_factor) if projected else 1.0
    pixel_area_m2 = abs(transform.determinant) * unit_m * unit_m
    matrix = [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]
    crs_key = crs.to_string()

    comps: list[tuple[BaseGeometry, int, float, float, float]] = []  # local, px, sum, max, m²
    for ids in members.values():
        geoms = [g for i in ids for g in pieces.get(i, [])]
        if not geoms:
            continue
        px = geoms[0] if len(geoms) == 1 else unary_union(geoms)
        local = affine_transform(px, matrix)
        n_px = int(count[ids].sum())
        area = n_px * pixel_area_m2 if projected else area_m2(reproject(local, crs_key, 4326))
        if area < min_area_m2:
            continue
        comps.append((local, n_px, float(total[ids].sum()), float(peak[ids].max()), area))

    # Grouping into installations.
    group = list(range(len(comps)))
    if group_distance_m > 0 and len(comps) > 1:
        if projected:
            metric = [c[0] for c in comps]
            dist = group_distance_m / unit_m
        else:
            c = reproject(unary_union([c[0] for c in comps]).envelope.centroid, crs_key, 4326)
            utm = utm_epsg(c.x, c.y)
            metric = [reproject(c[0], crs_key, utm) for c in comps]
            dist = group_distance_m
        guf = _UnionFind()
        guf.add(len(comps))
        tree = STRtree(metric)
        pairs = tree.query(metric, predicate="dwithin", distance=dist)
        for a, b in pairs.T:
            if a != b:
                guf.union(int(a), int(b))
        group = [guf.find(i) for i in range(len(comps))]

    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(group):
        by_group.setdefault(g, []).append(i)

    inv = ~transform
    detections: list[tuple[tuple[float, float], Detection]] = []
    for idx in by_group.values():
        # A 4-connected component is one polygon; _parts flattens defensively all the same.
        parts = [p for i in idx for p in _parts(comps[i][0])]
        local = parts[0] if len(parts) == 1 else MultiPolygon(parts)
        centroid = local.centroid
        if clip_to is not None:
            c_ll = reproject(Point(centroid.x, centroid.y), crs_key, 4326)
            if not clip_to.covers(c_ll):
                continue
        n_px = sum(comps[i][1] for i in idx)
        det = Detection(
            geometry=reproject(local, crs_key, 4326),
            geometry_local=local,
            score=sum(comps[i][2] for i in idx) / n_px,
            max_score=max(comps[i][3] for i in idx),
            area_m2=float(sum(comps[i][4] for i in idx)),
            n_parts=len(parts),
            n_pixels=n_px,
        )
        # Raster order of the top-left corner, so the output order is deterministic.
        col, row = inv * (local.bounds[0], local.bounds[3])
        detections.append(((round(row, 6), round(col, 6)), det))
    detections.sort(key=lambda t: t[0])
    return [d for _, d in detections]
