"""The one way the assets and the CLI get a partition's imagery from a source.

`find_scene` lists the candidates and the source's choice; `partition_rasters` then gives the
files chipping reads. Every failure comes out as a one-line `SourceError` naming the source, the
cell and the date, whatever raised it inside the source (an unreachable endpoint, a corrupt
file), so an asset can fail with that line before it writes anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TypeVar

import numpy as np

from flywheel_core.imagery.sources.types import (
    BandWindow,
    Choice,
    ImagerySource,
    Scene,
    SourceError,
    TargetGrid,
)
from flywheel_core.imagery.sources.window import window_grid
from flywheel_core.preview import stretch

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Found:
    scenes: list[Scene]
    choice: Choice | None


def guarded(source: ImagerySource, cell: str, day: date, step: Callable[[], T]) -> T:
    """Run a source step; anything but a SourceError becomes one naming source, cell and date."""
    try:
        return step()
    except SourceError as exc:
        if exc.cell:
            raise
        raise SourceError(exc.source, exc.problem, cell, day) from exc
    except Exception as exc:  # the source's own failure, in one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise SourceError(source.name, f"{type(exc).__name__}: {first}", cell, day) from exc


def find_scene(source: ImagerySource, cell: str, start: date, end: date) -> Found:
    """Candidates in [start, end) and the scene the source chooses among them."""
    scenes = guarded(source, cell, start, lambda: source.search(cell, start, end))
    choice = guarded(source, cell, start, lambda: source.choose(scenes, cell, start, end))
    log.info(
        "%s (%s): %d scene(s) for %s in [%s, %s)%s",
        source.name,
        source.kind,
        len(scenes),
        cell,
        start,
        end,
        f", chose {choice.scene.scene_id}: {choice.reason}" if choice else "",
    )
    return Found(scenes, choice)


def partition_rasters(
    source: ImagerySource, choice: Choice, cell: str, day: date, cache_dir: Path
) -> dict[str, str]:
    """Files for the chosen scene over the cell (originals, or the window written once)."""
    return guarded(source, cell, day, lambda: source.rasters(choice.scene, cell, day, cache_dir))


@dataclass(frozen=True)
class SceneFiles:
    """A partition's chosen scene, the files chipping and inference read, and the candidates."""

    choice: Choice
    files: dict[str, str]
    candidates: int

    @property
    def scene(self) -> Scene:
        return self.choice.scene

    @property
    def scene_id(self) -> str:
        return self.choice.scene.scene_id


def scene_files(
    source: ImagerySource, cell: str, start: date, end: date, cache_dir: Path
) -> SceneFiles | None:
    """The chosen scene of [start, end) over the cell and its files; None when there is none."""
    found = find_scene(source, cell, start, end)
    if found.choice is None:
        return None
    files = partition_rasters(source, found.choice, cell, start, cache_dir)
    return SceneFiles(found.choice, files, len(found.scenes))


def read_cell(source: ImagerySource, scene: Scene, cell: str, day: date) -> BandWindow:
    """The scene's window over the cell, on the grid the source would write it on."""
    grid: TargetGrid = window_grid(source, scene, cell)
    return guarded(source, cell, day, lambda: source.read(scene, grid))


def window_rgb(window: BandWindow) -> np.ndarray:
    """(H, W, 3) uint8 true-colour picture of a window (percentile stretch; no data black)."""
    names = ("red", "green", "blue") if window.radiometry == "dn8" else ("B04", "B03", "B02")
    missing = [n for n in names if n not in window.band_names]
    if missing:
        raise ValueError(f"the window has no {missing} band for a true-colour preview")
    rgb = np.stack([np.nan_to_num(window.band(n), nan=0.0) for n in names], axis=-1)
    out = stretch(rgb.astype(np.float32))
    out[~window.valid] = 0
    return out
