from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Point, box

from flywheel_core.masks.backends.classical import ClassicalBackend, otsu
from flywheel_core.masks.prompts import PromptSettings, chip_prompts
from flywheel_core.masks.qa import AcceptanceRules, assess, iou
from flywheel_core.masks.refine import RefineSettings, refine
from flywheel_core.masks.types import RawMask
from flywheel_tests.masks.conftest import GSD, label_row, scene

PANEL = (80, 90, 160, 150)


def _truth() -> np.ndarray:
    m = np.zeros((256, 256), bool)
    m[PANEL[1] : PANEL[3], PANEL[0] : PANEL[2]] = True
    return m


@pytest.mark.parametrize("mono", [False, True])
def test_classical_recovers_the_panel_from_a_shifted_polygon(chip, mono):
    shifted = box(PANEL[0] + 5, PANEL[1] - 4, PANEL[2] + 5, PANEL[3] - 4)  # ~1.5 m off
    prompts = chip_prompts([label_row("a", shifted, chip)], chip, PromptSettings())
    (raw,) = ClassicalBackend(gsd_m=GSD).segment(scene(PANEL, mono), prompts)
    refined, polygon = refine(raw.mask, GSD, RefineSettings())
    assert iou(refined, _truth()) > 0.93
    prompt_mask = np.zeros_like(refined)
    prompt_mask[PANEL[1] - 4 : PANEL[3] - 4, PANEL[0] + 5 : PANEL[2] + 5] = True
    assert iou(refined, _truth()) > iou(prompt_mask, _truth())
    assert raw.stability_score > 0.8 and polygon is not None


def test_classical_grows_from_a_point_label(chip):
    prompts = chip_prompts(
        [label_row("p", Point(100.0, 100.0), chip)], chip, PromptSettings(point_buffer_m=3.0)
    )
    (raw,) = ClassicalBackend(gsd_m=GSD).segment(scene(PANEL), prompts)
    refined, _ = refine(raw.mask, GSD, RefineSettings())
    assert iou(refined, _truth()) > 0.9  # the whole array, not just the 6 m box


def test_otsu_splits_two_modes():
    values = np.concatenate([np.full(500, 2.0), np.full(300, 40.0)])
    assert 2.0 < otsu(values) < 40.0


def test_refine_bridges_frame_lines_fills_holes_and_drops_specks():
    mask = _truth()
    mask[PANEL[1] : PANEL[3] : 4] = False  # frame lines
    mask[120, 120:124] = False
    mask[10:12, 10:12] = True  # a 0.4 m² speck
    refined, polygon = refine(mask, GSD, RefineSettings())
    assert iou(refined, _truth()) > 0.97
    assert not refined[10:12, 10:12].any()
    assert polygon.area == pytest.approx(refined.sum(), rel=0.05)


def _region(b):
    m = np.zeros((256, 256), bool)
    m[b[1] : b[3], b[0] : b[2]] = True
    return m


def test_qa_reasons(chip):
    poly_prompt = chip_prompts([label_row("a", box(*PANEL), chip)], chip, PromptSettings())[0]
    region = _region(PANEL)
    rules = AcceptanceRules()
    good = assess(region, region, poly_prompt, RawMask(region, 0.9, 0.95), GSD, rules)
    assert good.accepted and good.reason == "accepted" and good.iou_with_prompt == 1.0
    empty = assess(np.zeros_like(region), region, poly_prompt, RawMask(region), GSD, rules)
    assert not empty.accepted and "empty" in empty.reason
    elsewhere = _region((0, 0, 60, 60))
    off = assess(elsewhere, region, poly_prompt, RawMask(elsewhere), GSD, rules)
    assert not off.accepted and "IoU with prompt" in off.reason
    unsure = assess(region, region, poly_prompt, RawMask(region, 0.2, 0.3), GSD, rules)
    assert "predicted IoU 0.20" in unsure.reason and "stability 0.30" in unsure.reason
    pt = chip_prompts([label_row("p", Point(30.0, 30.0), chip)], chip, PromptSettings())[0]
    far = assess(region, region, pt, RawMask(region), GSD, rules)
    assert not far.accepted and "from the label's point" in far.reason
    near = assess(_region((20, 20, 60, 60)), region, pt, RawMask(region), GSD, rules)
    assert near.accepted


def _thin_film_on(roof: tuple[int, int, int, int]) -> np.ndarray:
    """Thin-film modules (dark, flat, neutral: no blue excess, no NIR drop) on a roof."""
    rng = np.random.default_rng(3)
    img = np.empty((256, 256, 4), np.float32)
    img[:] = (60, 110, 50, 180)
    img[60:200, 40:220] = roof
    x0, y0, x1, y1 = PANEL
    img[y0:y1, x0:x1] = (52, 54, 53, 50)
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_contrast_score_finds_thin_film_that_the_spectral_floor_misses(chip):
    shifted = box(PANEL[0] + 5, PANEL[1] - 4, PANEL[2] + 5, PANEL[3] - 4)
    prompts = chip_prompts([label_row("a", shifted, chip)], chip, PromptSettings())
    image = _thin_film_on((150, 80, 70, 120))  # on red tiles
    (raw,) = ClassicalBackend(gsd_m=GSD, score="contrast").segment(image, prompts)
    refined, _ = refine(raw.mask, GSD, RefineSettings())
    assert iou(refined, _truth()) > 0.9 and raw.extra["separation"] > 2
    (old,) = ClassicalBackend(gsd_m=GSD).segment(image, prompts)
    assert iou(old.mask, _truth()) < 0.2  # (B - R) + ½(B - NIR) ≈ 0 DN, under its 10 DN floor


def test_a_prompt_over_nothing_distinct_gives_an_empty_mask(chip):
    flat = np.full((256, 256, 4), 90, np.uint8)
    flat += np.random.default_rng(1).integers(0, 3, flat.shape, dtype=np.uint8)
    prompts = chip_prompts([label_row("a", box(*PANEL), chip)], chip, PromptSettings())
    (raw,) = ClassicalBackend(gsd_m=GSD, score="contrast").segment(flat, prompts)
    assert not raw.mask.any() and raw.extra["separation"] < 1.0
