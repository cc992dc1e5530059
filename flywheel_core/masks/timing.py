"""Wall time per stage of the mask factory, so a run can say how much of it the model took."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


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

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def share_outside(self, model_stage: str = "model") -> float:
        """Fraction of the measured time not spent in the model."""
        total = self.total
        return (total - self.seconds.get(model_stage, 0.0)) / total if total else 0.0
