"""Chip windows over a raster grid.

Chips are laid on a regular stride from the scene origin and the last row/column is pulled back
to the scene edge, so every pixel is covered and no chip reads past the raster.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChipWindow:
    row_off: int
    col_off: int
    size: int  # in source pixels (square)


def _offsets(extent: int, size: int, stride: int) -> list[int]:
    if extent <= size:
        return [0]
    offs = list(range(0, extent - size + 1, stride))
    if offs[-1] != extent - size:
        offs.append(extent - size)
    return offs


def chip_windows(width: int, height: int, size: int, overlap: int) -> list[ChipWindow]:
    """Windows of `size` source pixels with `overlap` pixels shared between neighbours."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(
            f"need size > 0 and 0 <= overlap < size, got size={size}, overlap={overlap}"
        )
    if width < size or height < size:
        return []
    stride = size - overlap
    return [
        ChipWindow(r, c, size)
        for r in _offsets(height, size, stride)
        for c in _offsets(width, size, stride)
    ]
