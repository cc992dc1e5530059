"""The label set against the synthetic world's hidden truth: how the flywheel itself is measured.

A truth installation counts as labeled when one active label corresponds to it, one to one,
best overlap first: a polygon label with IoU >= 0.3 (seed polygons are shifted by ~1 m, which
costs a 30 m² rooftop array up to half its IoU), or a point label within 2 m of the installation.
Recall = labeled installations / installations; precision = labels that correspond to an
installation / labels. Only installations whose centroid lies in the evaluated cells and that were
installed by the date count; labels count when their centroid lies in those cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import geopandas as gpd
import numpy as np
from shapely import wkb
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from flywheel_core.flywheel.matching import iou
from flywheel_core.geo.projection import reproject, utm_epsg
from flywheel_core.geo.s2 import cell_polygon

MIN_IOU = 0.3
POINT_TOLERANCE_M = 2.0


@dataclass(frozen=True)
class LabelTruth:
    labels: int
    installations: int
    matched: int

    @property
    def recall(self) -> float:
        return self.matched / self.installations if self.installations else 0.0

    @property
    def precision(self) -> float:
        return self.matched / self.labels if self.labels else 0.0


def _score(label: BaseGeometry, truth: BaseGeometry) -> float:
    if label.geom_type == "Point":
        return 1.0 if label.distance(truth) <= POINT_TOLERANCE_M else 0.0
    value = iou(label, truth)
    return value if value >= MIN_IOU else 0.0


def label_truth(
    labels: list[dict], truth: gpd.GeoDataFrame, cells: list[str], day: date
) -> LabelTruth:
    region = unary_union([cell_polygon(c) for c in cells])
    epsg = utm_epsg(region.centroid.x, region.centroid.y)
    # centroids per geometry with shapely: GeoSeries.centroid warns on geographic CRSs, and a
    # centroid-in-region test is exact enough in degrees for installations metres across
    inside = np.array([region.contains(g.centroid) for g in truth.geometry], dtype=bool)
    live = truth[(truth["install_date"].astype(str) <= day.isoformat()) & inside]
    truths = [reproject(g, 4326, epsg) for g in live.geometry]
    geoms = [wkb.loads(lab["geometry"]) for lab in labels]
    geoms = [reproject(g, 4326, epsg) for g in geoms if region.contains(g.centroid)]
    pairs = sorted(
        (
            (s, i, j)
            for i, g in enumerate(geoms)
            for j, t in enumerate(truths)
            if (s := _score(g, t)) > 0
        ),
        reverse=True,
    )
    used_l, used_t = set(), set()
    for _, i, j in pairs:
        if i not in used_l and j not in used_t:
            used_l.add(i)
            used_t.add(j)
    return LabelTruth(labels=len(geoms), installations=len(truths), matched=len(used_t))
