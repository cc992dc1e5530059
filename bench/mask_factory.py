"""Mask factory throughput per back end, and the share of time spent outside the model.

Every back end gets the same chips and the same noisy seed prompts from one synthetic world, in one
run. Model back ends run their built-in random-weight configurations here (no weights can be
downloaded on this machine): `samgeo` is the real ViT-B architecture, so its speed is what a
trained ViT-B would show; `transformers` is the tiny configuration, so its speed is a lower bound
on the per-prompt overhead, not on SAM itself.

Each back end but samgeo is timed over `--repeats` passes over the same chips (after one warm-up
chip) and its stage times summed, so one burst of load from elsewhere on shared cores moves the
share less. What each stage contains is in flywheel_core/masks/timing.py.

    python bench/mask_factory.py [--backends classical,transformers,samgeo] [--cells 2]
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import date
from pathlib import Path

from bench_summary import Figure, record

from flywheel_core.geo.s2 import cell_polygon, cells_around
from flywheel_core.imagery.vhr_chips import VhrScene, iter_vhr_chips
from flywheel_core.labels.importer import read_label_file
from flywheel_core.masks.backends.registry import build_backend
from flywheel_core.masks.factory import FactorySettings, iter_masks, labels_meeting, weights_of
from flywheel_core.masks.timing import StageTimer
from flywheel_core.settings import ChipSettings
from flywheel_core.world.synthetic import generate_world

DAY = date(2025, 7, 1)


def inputs(workdir: Path, n_cells: int) -> tuple[list[dict], list[dict]]:
    world = workdir / "world"
    cells = cells_around(11.58, 48.14, 15, n_cells)
    if not (world / "catalog.json").exists():
        generate_world(world, cells, [DAY], seed=0, seed_fraction=1.0, point_fraction=0.3)
    labels = read_label_file(
        world / "seed_labels.parquet", source="synthetic-seed", s2_level=15, h3_resolution=11
    ).table.to_pylist()
    chips = []
    for cell in cells:
        scene = VhrScene(str(world / "vhr" / cell / f"{DAY}.tif"), cell, "synthetic-vhr", None)
        chips += list(iter_vhr_chips(scene, cell, DAY, cell_polygon(cell), ChipSettings(), 15, 11))
    return [c for c in chips if labels_meeting(c, labels)], labels


def time_backend(
    name: str, chips: list[dict], labels: list[dict], workdir: Path, repeats: int
) -> tuple[str, int, int, StageTimer]:
    """(weights, masks, chips, summed stage times) of one back end over `repeats` passes."""
    backend = build_backend(name, gsd_m=0.3125, model_dir=workdir / "models")
    if name != "samgeo":  # one ViT-B chip is warm-up enough to skip
        list(iter_masks(chips[:1], labels, backend, FactorySettings(), StageTimer()))
    timer = StageTimer()
    masks = 0
    for _ in range(repeats):
        masks += len(list(iter_masks(chips, labels, backend, FactorySettings(), timer)))
    return weights_of(backend), masks, len(chips) * repeats, timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="classical,transformers,samgeo")
    parser.add_argument("--cells", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (samgeo: 1)")
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/mask_factory"))
    parser.add_argument(
        "--samgeo-chips", type=int, default=3, help="ViT-B takes ~20 s a chip on 2 CPU cores"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.workdir.mkdir(parents=True, exist_ok=True)
    chips, labels = inputs(args.workdir, args.cells)
    print(f"{len(chips)} chips with prompts, {len(labels)} seed labels")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    header = (
        f"{'back end':<14}{'weights':<9}{'masks':>6}{'masks/s':>9}{'s/chip':>8}"
        f"{'outside model':>15}"
    )
    rows = []
    figures = []
    for name in args.backends.split(","):
        samgeo = name == "samgeo"
        subset = chips[: args.samgeo_chips] if samgeo else chips
        weights, n_masks, n_chips, timer = time_backend(
            name, subset, labels, args.workdir, 1 if samgeo else args.repeats
        )
        rate = n_masks / timer.total if timer.total else 0.0
        share = timer.share_outside()
        rows.append(
            f"{name:<14}{weights:<9}{n_masks:>6}{rate:>9.2f}"
            f"{timer.total / n_chips:>8.3f}{share:>15.3f}"
        )
        detail = ", ".join(f"{k} {v:.3f}s" for k, v in sorted(timer.seconds.items()))
        rows.append(f"{'':<14}{detail}")
        if name == "classical":
            figures.append(Figure("classical: share outside the model", share, 0.15, "<=", unit=""))
        else:
            figures.append(Figure(f"{name}: share outside the model", share, None, unit=""))
        figures.append(
            Figure(f"{name}: masks/s", rate, None, unit=" masks/s", note=f"{weights} weights")
        )
    print(header)
    print("\n".join(rows))
    print("'outside model' = (prompting + io + refinement + rows + other) / total wall time")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    record("mask_factory", figures)


if __name__ == "__main__":
    main()
