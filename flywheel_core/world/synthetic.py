"""`generate_world`: the deterministic synthetic world the flywheel runs on by default.

For every cell and date it writes a VHR scene and a Sentinel-2 L2A scene rendered from one
land-cover map, then the hidden truth (truth.parquet) and look-alikes (distractors.parquet),
the noisy seed labels, a static STAC catalog, a preview.png contact sheet and the settings
(world.json). Everything it varies is a `WorldSettings` field: sun and seasons from each cell's
latitude and the date, panel types, densities, per-scene light, haze and noise, the VHR GSD.
Same settings, same bytes: every random choice is keyed by names (seed, cell, date, purpose),
never drawn from a shared stream whose order could change.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from flywheel_core.geo.s2 import parse_token
from flywheel_core.world import paths
from flywheel_core.world.clouds import is_cloudy
from flywheel_core.world.grid import SceneGrid, cell_polygon_utm
from flywheel_core.world.layout import DISTRACTOR_KINDS, layout_in
from flywheel_core.world.limits import check_world_size
from flywheel_core.world.render import SceneLayers, neighbourhood, render_layers
from flywheel_core.world.scenes import GENERATOR_VERSION, write_s2_scene, write_vhr_scene
from flywheel_core.world.sentinel2 import render_s2
from flywheel_core.world.stac import write_catalog
from flywheel_core.world.truth import distractor_frame, seed_label_frame, truth_frame
from flywheel_core.world.world_preview import Thumb, thumbnail, write_preview
from flywheel_core.world.world_settings import PANEL_TYPES, WorldSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorldManifest:
    out_dir: Path
    cells: list[str]
    dates: list[date]
    paths: list[Path]
    counts: dict[str, int]
    seed: int = 0
    cloudy: list[tuple[str, date]] = field(default_factory=list)  # cloudy (cell, date) pairs
    settings: WorldSettings = field(default_factory=WorldSettings)
    scene_seconds: list[float] = field(default_factory=list)  # per scene (VHR + S2), in order

    @property
    def truth_path(self) -> Path:
        return self.out_dir / paths.TRUTH_FILE

    @property
    def seed_labels_path(self) -> Path:
        return self.out_dir / paths.SEED_LABELS_FILE

    @property
    def distractors_path(self) -> Path:
        return self.out_dir / paths.DISTRACTORS_FILE

    @property
    def catalog_path(self) -> Path:
        return self.out_dir / paths.CATALOG_FILE

    @property
    def preview_path(self) -> Path:
        return self.out_dir / paths.PREVIEW_FILE

    def vhr_path(self, cell: str, day: date) -> Path:
        return paths.vhr_path(self.out_dir, cell, day)

    def s2_path(self, cell: str, day: date, band: str) -> Path:
        return paths.s2_band_path(self.out_dir, cell, day, band)


def _check(cells: Sequence[str], dates: Sequence[date]) -> None:
    if not cells:
        raise ValueError("at least one cell is needed")
    if not dates:
        raise ValueError("at least one date is needed")
    check_world_size(len(cells), len(dates))
    levels = {parse_token(c).level() for c in cells}  # raises InvalidCellError (a ValueError)
    if len(levels) > 1:
        raise ValueError(
            f"all cells must be at one S2 level (got levels {sorted(levels)}): "
            "cells of different levels overlap, and the truth would be ambiguous"
        )


def _thumb(
    cell: str,
    day: date,
    image: np.ndarray,
    grid: SceneGrid,
    layers: SceneLayers,
    settings: WorldSettings,
) -> Thumb:
    epsg = grid.epsg
    window = grid.box()
    looks = [
        d.geometry
        for c in neighbourhood(cell)
        for d in layout_in(c, settings.layout, epsg).distractors
        if d.geometry.intersects(window)
    ]
    return thumbnail(
        image,
        grid,
        f"{cell} {day.isoformat()}",
        [i.footprint for i in layers.installations],
        looks,
        cell_polygon_utm(cell, epsg),
    )


def generate_world(
    out_dir: Path,
    cells: list[str],
    dates: list[date],
    settings: WorldSettings | None = None,
    **overrides: object,
) -> WorldManifest:
    """Write the world under `out_dir` (see module docstring); overwrites files it owns.

    `overrides` are WorldSettings fields (`seed=3, gsd_m=0.5, ...`) applied over `settings`.
    """
    if settings is not None and not isinstance(settings, WorldSettings):
        raise TypeError(
            f"settings must be a WorldSettings, got {type(settings).__name__}; "
            "pass single settings by name (seed=..., gsd_m=...)"
        )
    settings = (settings or WorldSettings()).replace(**overrides)
    cells = list(dict.fromkeys(cells))
    dates = sorted(set(dates))
    _check(cells, dates)
    seed = settings.seed
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    vhr_records, s2_records, thumbs, seconds = [], [], [], []
    started = time.perf_counter()
    for cell in cells:
        for day in dates:
            t0 = time.perf_counter()
            layers = render_layers(cell, day, settings)
            path, record, image = write_vhr_scene(out_dir, layers)
            written.append(path)
            vhr_records.append(record)
            s2 = render_s2(layers)
            band_paths, s2_record = write_s2_scene(out_dir, layers, s2)
            written += band_paths
            s2_records.append(s2_record)
            seconds.append(time.perf_counter() - t0)
            thumbs.append(_thumb(cell, day, image, record.grid, layers, settings))
            log.info(
                "scene %s %s: %d PV installations in view, cloud cover %.0f%%, sun %.0f°, "
                "illumination %.2f (%.1fs)",
                cell,
                day.isoformat(),
                len(layers.installed),
                s2.cloud_cover,
                layers.own.sun.elevation_deg,
                layers.own.illumination,
                seconds[-1],
            )

    params = settings.layout
    truth = truth_frame(cells, params)
    truth.to_parquet(out_dir / paths.TRUTH_FILE)
    looks = distractor_frame(cells, params)
    looks.to_parquet(out_dir / paths.DISTRACTORS_FILE)
    labels = seed_label_frame(
        cells, params, settings.seed_fraction, settings.jitter_m, settings.point_fraction
    )
    labels.to_parquet(out_dir / paths.SEED_LABELS_FILE)
    written += [
        out_dir / paths.TRUTH_FILE,
        out_dir / paths.DISTRACTORS_FILE,
        out_dir / paths.SEED_LABELS_FILE,
    ]
    written.append(write_catalog(out_dir, vhr_records, s2_records))
    written.append(write_preview(out_dir / paths.PREVIEW_FILE, thumbs))

    cloudy = [
        (c, d)
        for c in cells
        for d in dates
        if is_cloudy(c, d, seed, settings.cloudy_dates_fraction)
    ]
    counts = {
        "cells": len(cells),
        "dates": len(dates),
        "scenes": len(cells) * len(dates),
        "installations": len(truth),
        "rooftop": int((truth["kind"] == "rooftop").sum()),
        "ground": int((truth["kind"] == "ground").sum()),
        **{f"panel_{t}": int((truth["panel_type"] == t).sum()) for t in PANEL_TYPES},
        "distractors": len(looks),
        **{f"distractor_{k}": int((looks["kind"] == k).sum()) for k in DISTRACTOR_KINDS},
        "seed_labels": len(labels),
        "seed_points": int((labels.geometry.geom_type == "Point").sum()),
        "cloudy_scenes": len(cloudy),
    }
    world = {
        "generator": "flywheel_core.world.synthetic",
        "version": GENERATOR_VERSION,
        "cells": cells,
        "dates": [d.isoformat() for d in dates],
        "settings": settings.to_dict(),
        # The settings' main fields again at the top level, where readers of version 1 look.
        "seed": seed,
        "seed_fraction": settings.seed_fraction,
        "jitter_m": settings.jitter_m,
        "point_fraction": settings.point_fraction,
        "cloudy_dates_fraction": settings.cloudy_dates_fraction,
        "cloudy_scenes": [[c, d.isoformat()] for c, d in cloudy],
        "vhr_gsd_m": settings.gsd_m,
        "counts": counts,
        "installations_by_panel_type": {t: counts[f"panel_{t}"] for t in PANEL_TYPES},
        "distractors_by_kind": {k: counts[f"distractor_{k}"] for k in DISTRACTOR_KINDS},
    }
    world_path = out_dir / paths.WORLD_FILE
    world_path.write_text(json.dumps(world, indent=2) + "\n")
    written.append(world_path)
    log.info(
        "world of %d cells x %d dates written to %s in %.1fs",
        len(cells),
        len(dates),
        out_dir,
        time.perf_counter() - started,
    )
    return WorldManifest(
        out_dir=out_dir,
        cells=cells,
        dates=dates,
        paths=written,
        counts=counts,
        seed=seed,
        cloudy=cloudy,
        settings=settings,
        scene_seconds=seconds,
    )
