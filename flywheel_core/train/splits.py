"""Train/val/test by spatial block, so neighbouring pixels never sit on both sides of a split.

A block is the S2 parent of a chip's centre at a coarser level; the split is a hash of the block
token, so it is the same in every partition and every round without any shared state.
"""

from __future__ import annotations

import hashlib

from flywheel_core.geo.s2 import cell_from_lonlat

SPLITS = ("train", "val", "test")


def block_of(lon: float, lat: float, level: int) -> str:
    return cell_from_lonlat(lon, lat, level)


def split_of(block: str, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> str:
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    u = int(hashlib.sha256(f"split:{block}".encode()).hexdigest()[:12], 16) / 16**12
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"
