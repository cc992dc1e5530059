"""Wall time per stage of the mask factory, so a run can say how much of it the model took.

The stages `flywheel_core.masks.factory.chip_rows` times, per chip, in this order:

- "prompting": choosing the labels whose box meets the chip and turning each into a pixel-space
  prompt (reprojection, clipping to the chip, interior/negative points);
- "io": decoding the chip's stored pixels into the (H, W, C) image the back end takes;
- "model": `backend.segment(image, prompts)`, the whole call and nothing else (for the classical
  back end that includes its own rasterization of each prompt, its scores, Otsu cut and
  component selection: that is its model);
- "refinement": for all the chip's prompts together, the shared refinement (closing, hole
  filling, minimum area, vectorize, simplify, rasterize), the QA (each prompt footprint's raster,
  overlap, area, the accept/reject decision) and both geometries back in lon/lat;
- "rows": the stored rows: bit-packing the raw and refined masks, writing WKB;
- "other": the rest of the chip's wall time in `iter_masks` that no stage above claims
  (entering and leaving the chip's GDAL environment, the loop itself).

So every moment `iter_masks` spends on a chip is in exactly one stage, and `share_outside` is
the share of the factory's own work that is not the model. Reading the chips themselves (the
`chips` iterable the caller passes) is the caller's and is not timed. "rows" and "other" were
untimed before they were named (the row dict was built outside any stage); they are timed now
so that no per-chip work escapes the measure. The other boundaries are where they always were:
the refinement got cheaper (masks/refine.py), none of its work moved into "model".
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ("prompting", "io", "model", "refinement", "rows", "other")


class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    @contextmanager
    def remainder(self, name: str) -> Iterator[None]:
        """Book as `name` the wall time inside the block that no stage inside it booked."""
        booked = self.total
        t0 = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            self.seconds[name] += max(elapsed - (self.total - booked), 0.0)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def share_outside(self, model_stage: str = "model") -> float:
        """Fraction of the measured time not spent in the model."""
        total = self.total
        return (total - self.seconds.get(model_stage, 0.0)) / total if total else 0.0
