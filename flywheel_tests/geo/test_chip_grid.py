from __future__ import annotations

import numpy as np
import pytest

from flywheel_core.geo.chip_grid import chip_windows


@pytest.mark.parametrize(
    ("w", "h", "size", "overlap"), [(1024, 1024, 256, 0), (1000, 777, 256, 32), (256, 300, 256, 0)]
)
def test_windows_cover_every_pixel_and_stay_inside(w, h, size, overlap):
    covered = np.zeros((h, w), dtype=bool)
    for win in chip_windows(w, h, size, overlap):
        assert 0 <= win.row_off <= h - size and 0 <= win.col_off <= w - size
        covered[win.row_off : win.row_off + size, win.col_off : win.col_off + size] = True
    assert covered.all()


def test_overlap_is_respected():
    wins = chip_windows(512, 256, 256, 64)
    cols = sorted({w.col_off for w in wins})
    assert cols[1] - cols[0] == 192


def test_too_small_scene_has_no_chips_and_bad_overlap_fails():
    assert chip_windows(100, 100, 256, 0) == []
    with pytest.raises(ValueError, match="overlap"):
        chip_windows(512, 512, 256, 256)
