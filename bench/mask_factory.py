"""Mask factory throughput per back end, and the share of time spent outside the model.

Every back end gets the same chips and the same noisy seed prompts from one synthetic world, in one
run. Model back ends run their built-in random-weight configurations here (no weights can be
downloaded on this machine): `samgeo` is the real ViT-B architecture, so its speed is what a
trained ViT-B would show; `transformers` is the tiny configuration, so its speed is a lower bound
on the per-prompt overhead, not on SAM itself.

    python bench/mask_factory.py [--backends classical,transformers,samgeo] [--cells 2]
"""

from __future__ import annotations

import argparse
import logging
from datetime import date
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="classical,transformers,samgeo")
    parser.add_argument("--cells", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/mask_factory"))
    parser.add_argument(
        "--samgeo-chips", type=int, default=3, help="ViT-B takes ~20 s a chip on 2 CPU cores"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.workdir.mkdir(parents=True, exist_ok=True)
    chips, labels = inputs(args.workdir, args.cells)
    print(f"{len(chips)} chips with prompts, {len(labels)} seed labels")
    header = (
        f"{'back end':<14}{'weights':<9}{'masks':>6}{'masks/s':>9}{'s/chip':>8}"
        f"{'outside model':>15}"
    )
    rows = []
    for name in args.backends.split(","):
        backend = build_backend(name, gsd_m=0.3125, model_dir=args.workdir / "models")
        warm = StageTimer()
        if name != "samgeo":  # one ViT-B chip is warm-up enough to skip
            list(iter_masks(chips[:1], labels, backend, FactorySettings(), warm))
        timer = StageTimer()
        subset = chips[: args.samgeo_chips] if name == "samgeo" else chips
        masks = list(iter_masks(subset, labels, backend, FactorySettings(), timer))
        rate = len(masks) / timer.total if timer.total else 0.0
        rows.append(
            f"{name:<14}{weights_of(backend):<9}{len(masks):>6}{rate:>9.2f}"
            f"{timer.total / len(subset):>8.3f}{timer.share_outside():>15.2f}"
        )
        detail = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(timer.seconds.items()))
        rows.append(f"{'':<14}{detail}")
    print(header)
    print("\n".join(rows))
    print("'outside model' = (prompting + chip decoding + refinement/QA) / total wall time")


if __name__ == "__main__":
    main()
