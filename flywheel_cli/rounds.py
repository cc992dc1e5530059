"""`flywheel rounds`: turn the flywheel on a synthetic world and measure every round.

Round k runs on the k-th date: ingest, embeddings and masks for every cell, one model trained on
everything up to that date (and calibrated on it), predictions and validated backfill for every
cell. Labels the backfill accepts are active from then on, so the next date's seed labels, masks
and training data include them. Any world `flywheel world generate` makes can be run (the same
options); `--report` writes the per-round figures as JSON (what bench/flywheel.py collects).
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import click
from dagster import DagsterInstance, MultiPartitionKey, materialize

from flywheel_cli.demo import DEMO_DATES, QUIET_CONSOLE, parse_dates, prepare
from flywheel_cli.world import world_options, world_settings_from_options
from flywheel_core.settings import Settings

# The demo world: 4 cells at 1.6x the default install density hold >= 30 installations (an
# evaluation world's size) and stay under 5 minutes for 3 rounds on 2 cores.
DEMO_INSTALL_DENSITY = 1.6
TARGET_RECALL = 0.90  # the bench's mean targets (bench/flywheel.py), per world here
TARGET_PRECISION = 0.90


def _run(
    assets: list,
    selection: list,
    key: str,
    instance: DagsterInstance,
    resources: dict,
    run_config: dict | None = None,
) -> None:
    config = {**QUIET_CONSOLE, **(run_config or {})}
    result = materialize(
        assets,
        selection=selection,
        partition_key=key,
        instance=instance,
        resources=resources,
        raise_on_error=False,
        run_config=config,
    )
    if not result.success:
        raise click.ClickException(
            f"materializing {[a.key.to_user_string() for a in selection]} for {key} failed: "
            "see the run in the Dagster UI (make dev)"
        )


def _echo_round(report: Any) -> None:
    no_iou = "n/a (no labelled panel in the test split)"
    iou = f"{report.test_iou:.3f}" if report.test_iou is not None else no_iou
    click.echo(f"   labels by source: {report.labels_by_source}")
    click.echo(
        f"   backfill: {report.accepted} detections accepted, rejected {report.rejected}; "
        f"hard-negative candidates recorded: {report.hard_negatives}"
    )
    if report.calibration:
        bounds = ", ".join(
            f"{k} {'off' if v is None else f'{v:.3g}'}" for k, v in report.calibration.items()
        )
        click.echo(f"   calibrated bounds: {bounds}")
    click.echo(f"   model IoU on the held-out test split: {iou}")
    click.echo(
        f"   active labels vs hidden truth ({report.installations} installations): "
        f"recall {report.recall:.3f}, precision {report.precision:.3f}"
    )


def _summary(days: list[date], reports: list, elapsed: float) -> None:
    click.echo(
        f"\n{'round':<7}{'date':<12}{'labels':>8}{'test IoU':>10}{'recall':>8}{'precision':>11}"
    )
    for k, (day, r) in enumerate(zip(days, reports, strict=True), start=1):
        iou = f"{r.test_iou:.3f}" if r.test_iou is not None else "n/a"
        click.echo(
            f"{k:<7}{day.isoformat():<12}{r.n_labels:>8}{iou:>10}"
            f"{r.recall:>8.3f}{r.precision:>11.3f}"
        )
    last = reports[-1]
    rising = all(b.recall > a.recall for a, b in itertools.pairwise(reports))
    met = last.recall >= TARGET_RECALL and last.precision >= TARGET_PRECISION
    click.echo(
        f"\nrecall rises every round: {'yes' if rising else 'NO'}; final recall >= {TARGET_RECALL} "
        f"and precision >= {TARGET_PRECISION}: {'yes' if met else 'NO'}  ({elapsed:.0f} s)"
    )


def run_rounds(
    n_rounds: int,
    lon: float,
    lat: float,
    n_cells: int,
    dates: str,
    world: Any,
    model_config: dict[str, Any] | None = None,
) -> list:
    """Run the rounds; `world` is a WorldSettings, `model_config` overrides model_checkpoint's
    run config (e.g. {"bands": "vhr+msi"})."""
    import geopandas as gpd

    from flywheel_assets.embed.assets import dinov3_embeddings
    from flywheel_assets.ingest.imagery import msi_chips, vhr_chips
    from flywheel_assets.ingest.labels import seed_labels
    from flywheel_assets.loop.backfill import validated_backfill
    from flywheel_assets.loop.model import model_checkpoint
    from flywheel_assets.loop.predictions import predictions
    from flywheel_assets.masks.assets import sam_masks, training_data
    from flywheel_assets.partitions import check_date_key
    from flywheel_assets.resources import build_resources
    from flywheel_core.flywheel.report import round_report
    from flywheel_core.lake.config import LakeConfig
    from flywheel_core.lake.connection import lake_connection

    t0 = time.monotonic()
    settings = Settings.from_env()
    days = parse_dates(dates)[:n_rounds]
    if len(days) < n_rounds:
        raise click.BadParameter(f"{n_rounds} rounds need {n_rounds} dates; got {len(days)}")
    for day in days:  # a date outside the partitions would fail in Dagster after the world
        check_date_key(day.isoformat())
    cells, instance = prepare(settings, lon, lat, n_cells, days, world)
    truth = gpd.read_parquet(settings.world_dir / "truth.parquet")
    resources = build_resources()
    # Embeddings before the loop: validated_backfill mines hard negatives from them.
    ingest = [seed_labels, vhr_chips, msi_chips, dinov3_embeddings, sam_masks, training_data]
    loop = [predictions, validated_backfill]
    everything = [*ingest, model_checkpoint, *loop]
    model_run = {"ops": {"model_checkpoint": {"config": model_config}}} if model_config else None
    reports = []
    for k, day in enumerate(days, start=1):
        started = time.monotonic()
        click.echo(f"\n== round {k}: {day} ==")
        keys = [MultiPartitionKey({"cell": c, "date": day.isoformat()}) for c in cells]
        for key in keys:
            _run(everything, ingest, key, instance, resources)
        elapsed = time.monotonic() - t0
        click.echo(f"   ingest + masks + training data for {len(cells)} cells ({elapsed:.0f} s)")
        _run(everything, [model_checkpoint], day.isoformat(), instance, resources, model_run)
        click.echo(f"   model trained ({time.monotonic() - t0:.0f} s)")
        for key in keys:
            _run(everything, loop, key, instance, resources)
        click.echo(f"   predictions + backfill done ({time.monotonic() - t0:.0f} s)")
        with lake_connection(LakeConfig.from_settings(settings)) as con:
            report = round_report(con, truth, cells, day, k, time.monotonic() - started)
        reports.append(report)
        _echo_round(report)
    _summary(days, reports, time.monotonic() - t0)
    return reports


@click.command()
@click.option("--rounds", "n_rounds", default=3, show_default=True)
@click.option("--lon", default=11.58, show_default=True)
@click.option("--lat", default=48.14, show_default=True)
@click.option("--cells", "n_cells", default=4, show_default=True)
@click.option("--dates", default=DEMO_DATES, show_default=True, help="One date per round.")
@click.option(
    "--bands",
    type=click.Choice(["vhr", "vhr+msi"]),
    default=None,
    help="Bands the round's model trains and predicts on (default: model_checkpoint's).",
)
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="Optimiser steps per round."
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the per-round figures (and the world's settings) to this JSON file.",
)
@world_options(install_density=DEMO_INSTALL_DENSITY)
def rounds(
    n_rounds: int,
    lon: float,
    lat: float,
    n_cells: int,
    dates: str,
    bands: str | None,
    steps: int | None,
    report_path: Path | None,
    **world_kwargs: Any,
) -> None:
    """Run N flywheel rounds on a synthetic world and print what each round achieved."""
    world = world_settings_from_options(**world_kwargs)
    model_config = {k: v for k, v in (("bands", bands), ("steps", steps)) if v is not None}
    reports = run_rounds(n_rounds, lon, lat, n_cells, dates, world, model_config or None)
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "world": world.to_dict(),
            "lon": lon,
            "lat": lat,
            "cells": n_cells,
            "dates": dates,
            "model_config": model_config,
            "rounds": [r.as_dict() for r in reports],
        }
        report_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        click.echo(f"\nreport: {report_path}")
    settings = Settings.from_env()
    click.echo("\nwhere to look next:")
    click.echo(
        "  make dev                 Dagster UI at http://127.0.0.1:3000 (runs, previews, checks)"
    )
    click.echo(f"  {settings.lancedb_uri:<24} LanceDB tables (one per asset)")
    click.echo(f"  {settings.data_dir / 'runs'!s:<24} W&B offline runs (wandb sync to upload)")
    click.echo(f"  {settings.data_dir / 'previews'!s:<24} PNG previews per asset and partition")
    click.echo("  flywheel eval masks      mask quality against the hidden truth")
    click.echo(
        f"  flywheel search --point {lon} {lat} -k 8   chips nearest a point (DINOv3 vectors; "
        "random weights offline)"
    )
