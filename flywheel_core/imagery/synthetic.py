"""`generate_world`: the deterministic synthetic world the flywheel runs on by default.

For every cell and date it writes a VHR scene and a Sentinel-2 L2A scene rendered from one
land-cover map, then the hidden truth, the noisy seed labels, a static STAC catalog and the
parameters (world.json). Same arguments, same bytes: every random choice is keyed by names
(seed, cell, date), never drawn from a shared stream whose order could change.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from flywheel_core.geo.s2 import parse_token
from flywheel_core.imagery import paths
from flywheel_core.imagery.clouds import is_cloudy
from flywheel_core.imagery.grid import VHR_GSD_M
from flywheel_core.imagery.render import render_layers
from flywheel_core.imagery.scenes import GENERATOR_VERSION, write_s2_scene, write_vhr_scene
from flywheel_core.imagery.sentinel2 import render_s2
from flywheel_core.imagery.stac import write_catalog
from flywheel_core.imagery.truth import seed_label_frame, truth_frame

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

    @property
    def truth_path(self) -> Path:
        return self.out_dir / paths.TRUTH_FILE

    @property
    def seed_labels_path(self) -> Path:
        return self.out_dir / paths.SEED_LABELS_FILE

    @property
    def catalog_path(self) -> Path:
        return self.out_dir / paths.CATALOG_FILE

    def vhr_path(self, cell: str, day: date) -> Path:
        return paths.vhr_path(self.out_dir, cell, day)

    def s2_path(self, cell: str, day: date, band: str) -> Path:
        return paths.s2_band_path(self.out_dir, cell, day, band)


def _check(
    cells: Sequence[str], dates: Sequence[date], fractions: dict[str, float], jitter_m: float
) -> None:
    if not cells:
        raise ValueError("at least one cell is needed")
    if not dates:
        raise ValueError("at least one date is needed")
    levels = {parse_token(c).level() for c in cells}  # raises InvalidCellError (a ValueError)
    if len(levels) > 1:
        raise ValueError(
            f"all cells must be at one S2 level (got levels {sorted(levels)}): "
            "cells of different levels overlap, and the truth would be ambiguous"
        )
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if jitter_m < 0:
        raise ValueError(f"jitter_m must be >= 0, got {jitter_m}")


def generate_world(
    out_dir: Path,
    cells: list[str],
    dates: list[date],
    seed: int = 0,
    seed_fraction: float = 0.3,
    jitter_m: float = 1.0,
    point_fraction: float = 0.2,
    cloudy_dates_fraction: float = 0.34,
) -> WorldManifest:
    """Write the world under `out_dir` (see module docstring); overwrites files it owns."""
    cells = list(dict.fromkeys(cells))
    dates = sorted(set(dates))
    _check(
        cells,
        dates,
        {
            "seed_fraction": seed_fraction,
            "point_fraction": point_fraction,
            "cloudy_dates_fraction": cloudy_dates_fraction,
        },
        jitter_m,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    vhr_records, s2_records = [], []
    started = time.perf_counter()
    for cell in cells:
        for day in dates:
            t0 = time.perf_counter()
            layers = render_layers(cell, day, seed, cloudy_dates_fraction)
            path, record = write_vhr_scene(out_dir, layers, seed)
            written.append(path)
            vhr_records.append(record)
            s2 = render_s2(layers, seed)
            band_paths, s2_record = write_s2_scene(out_dir, layers, s2, seed)
            written += band_paths
            s2_records.append(s2_record)
            log.info(
                "scene %s %s: %d PV installations in view, cloud cover %.0f%% (%.1fs)",
                cell,
                day.isoformat(),
                len(layers.installed),
                s2.cloud_cover,
                time.perf_counter() - t0,
            )

    truth = truth_frame(cells, seed)
    truth.to_parquet(out_dir / paths.TRUTH_FILE)
    labels = seed_label_frame(cells, seed, seed_fraction, jitter_m, point_fraction)
    labels.to_parquet(out_dir / paths.SEED_LABELS_FILE)
    written += [out_dir / paths.TRUTH_FILE, out_dir / paths.SEED_LABELS_FILE]
    written.append(write_catalog(out_dir, vhr_records, s2_records))

    cloudy = [(c, d) for c in cells for d in dates if is_cloudy(c, d, seed, cloudy_dates_fraction)]
    counts = {
        "cells": len(cells),
        "dates": len(dates),
        "scenes": len(cells) * len(dates),
        "installations": len(truth),
        "rooftop": int((truth["kind"] == "rooftop").sum()),
        "ground": int((truth["kind"] == "ground").sum()),
        "seed_labels": len(labels),
        "seed_points": int((labels.geometry.geom_type == "Point").sum()),
        "cloudy_scenes": len(cloudy),
    }
    world = {
        "generator": "flywheel_core.imagery.synthetic",
        "version": GENERATOR_VERSION,
        "cells": cells,
        "dates": [d.isoformat() for d in dates],
        "seed": seed,
        "seed_fraction": seed_fraction,
        "jitter_m": jitter_m,
        "point_fraction": point_fraction,
        "cloudy_dates_fraction": cloudy_dates_fraction,
        "cloudy_scenes": [[c, d.isoformat()] for c, d in cloudy],
        "vhr_gsd_m": VHR_GSD_M,
        "counts": counts,
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
    )
