"""Accepted detections confirmed by the mask factory before they become labels."""

from __future__ import annotations

from affine import Affine
from shapely.geometry import box

from flywheel_core.flywheel.acceptance import Detection
from flywheel_core.flywheel.matching import iou, to_local_metric
from flywheel_core.masks.backends.classical import ClassicalBackend
from flywheel_core.masks.detections import refine_detections
from flywheel_core.masks.prompts import to_lonlat
from flywheel_tests.masks.conftest import GSD, scene

PANEL = (80, 100, 180, 160)  # x0, y0, x1, y1 in chip pixels


def _lonlat(chip, px_geom):
    return to_lonlat(px_geom, chip["crs"], Affine(*chip["transform"]))


def test_a_loose_detection_is_tightened_to_the_panels(chip):
    chip = {**chip, "image": scene(PANEL).transpose(2, 0, 1).tobytes(), "bands": 4}
    chip["dtype"] = "uint8"
    truth = _lonlat(chip, box(*PANEL))
    loose = _lonlat(chip, box(70, 88, 192, 170))  # a blurry model outline, 3-4 m too wide
    grass = _lonlat(chip, box(5, 5, 30, 40))  # nothing PV-like here
    dets = [Detection(loose, 0.9, prediction_id="p1"), Detection(grass, 0.8, prediction_id="p2")]
    out = refine_detections(dets, [chip], ClassicalBackend(gsd_m=GSD))
    good, bad = out
    assert good.accepted and good.geometry is not None
    t, d, r = (to_local_metric([g])[0][0] for g in (truth, loose, good.geometry))
    assert iou(r, t) > 0.8 > iou(d, t)  # the mask is the panel, the detection was not
    assert good.provenance["backend"] == "classical" and good.provenance["chips"] == [
        chip["chip_id"]
    ]
    assert good.provenance["mask_area_m2"] > 0
    assert not bad.accepted and bad.geometry is None and bad.reason != "accepted"


def test_a_detection_no_chip_shows_passes_as_it_is(chip):
    chip = {**chip, "image": scene(PANEL).transpose(2, 0, 1).tobytes(), "bands": 4}
    chip["dtype"] = "uint8"
    far = _lonlat(chip, box(2000, 2000, 2050, 2050))
    (out,) = refine_detections([Detection(far, 0.9)], [chip], ClassicalBackend(gsd_m=GSD))
    assert out.accepted and out.geometry is None and out.reason == "no chip shows the detection"


def test_a_detection_mostly_off_the_chips_keeps_its_own_polygon(chip):
    # A detection of which the chip shows a sliver at its edge (the rest lies where no chip was
    # cut): the sliver's mask would become a 3 m² label of a 40 m² system, so it stays
    # unconfirmed and the label keeps the detection's polygon.
    chip = {**chip, "image": scene((0, 100, 40, 160)).transpose(2, 0, 1).tobytes(), "bands": 4}
    chip["dtype"] = "uint8"
    mostly_off = _lonlat(chip, box(-360, 100, 40, 160))  # a tenth of it on the chip
    (out,) = refine_detections([Detection(mostly_off, 0.9)], [chip], ClassicalBackend(gsd_m=GSD))
    assert out.accepted and out.geometry is None and "unconfirmed" in out.reason
    assert 0.05 < out.provenance["shown_share"] < 0.2


def test_union_repairs_pinched_pieces_and_keeps_only_polygons():
    from shapely.geometry import Polygon

    from flywheel_core.masks.factory import polygonal, union

    bowtie = Polygon(
        [(0, 0), (1, 1), (1, 0), (0, 1)]
    )  # self-intersecting, as reprojection can make
    assert not bowtie.is_valid
    fixed = polygonal(bowtie)
    assert fixed.is_valid and fixed.geom_type in ("Polygon", "MultiPolygon") and fixed.area > 0
    joined = union([bowtie, box(0.5, 0.5, 2, 2)])
    assert joined.is_valid and joined.geom_type in ("Polygon", "MultiPolygon")
    assert joined.area > box(0.5, 0.5, 2, 2).area
