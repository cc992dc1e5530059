"""The classical back end against the synthetic world's hidden truth (issue targets)."""

from __future__ import annotations

import geopandas as gpd
import pytest

from flywheel_core.geo.s2 import cell_polygon
from flywheel_core.imagery.vhr_chips import VhrScene, iter_vhr_chips
from flywheel_core.labels.importer import read_label_file
from flywheel_core.masks.backends.classical import ClassicalBackend
from flywheel_core.masks.evaluate import score_masks, summarize
from flywheel_core.masks.factory import FactorySettings, iter_masks
from flywheel_core.settings import ChipSettings
from flywheel_tests.fixtures.world import MASK_DATE

pytestmark = pytest.mark.slow


def test_classical_masks_beat_noisy_seeds(mask_world):
    labels = read_label_file(
        mask_world.seed_labels_path, source="synthetic-seed", s2_level=15, h3_resolution=11
    ).table.to_pylist()
    assert sum(lab["geometry_type"] == "point" for lab in labels) >= 2
    rows, chips = [], {}
    for cell in mask_world.cells:
        scene = VhrScene(str(mask_world.vhr_path(cell, MASK_DATE)), cell, "synthetic-vhr", None)
        cell_chips = list(
            iter_vhr_chips(scene, cell, MASK_DATE, cell_polygon(cell), ChipSettings(), 15, 11)
        )
        chips.update({c["chip_id"]: c for c in cell_chips})
        rows += list(
            iter_masks(cell_chips, labels, ClassicalBackend(gsd_m=0.3125), FactorySettings())
        )
    assert len(rows) >= 10
    summary = summarize(score_masks(rows, chips, gpd.read_parquet(mask_world.truth_path)))
    (s,) = summary.values()
    print(s)
    assert s["median_iou_truth"] >= 0.85, s
    assert s["share_mask_beats_prompt"] >= 0.80, s
    assert s["median_iou_truth"] > s["median_iou_prompt_truth"] + 0.1, s
