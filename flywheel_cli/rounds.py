"""`flywheel rounds`: turn the flywheel on the demo world and measure every round.

Round k runs on the k-th date: ingest and masks for every cell, one model trained on everything up
to that date, predictions and validated backfill for every cell. Labels the backfill accepts are
active from then on, so the next date's seed labels, masks and training data include them.
"""

from __future__ import annotations

import itertools
import time
from datetime import date

import click
import geopandas as gpd
from dagster import MultiPartitionKey, materialize

from flywheel_cli.demo import DEMO_DATES, QUIET_CONSOLE, parse_dates, prepare
from flywheel_core.settings import Settings

TARGET_RECALL = 0.85
TARGET_PRECISION = 0.90


def _run(assets: list, selection: list, key: object, instance: object, resources: dict) -> None:
    result = materialize(
        assets,
        selection=selection,
        partition_key=key,
        instance=instance,
        resources=resources,
        raise_on_error=False,
        run_config=QUIET_CONSOLE,
    )
    if not result.success:
        raise click.ClickException(
            f"materializing {[a.key.to_user_string() for a in selection]} for {key} failed: "
            "see the run in the Dagster UI (make dev)"
        )


def _label_report(settings: Settings, cells: list[str], day: date, truth: gpd.GeoDataFrame) -> dict:
    from flywheel_core.flywheel.truth_eval import label_truth
    from flywheel_core.lake.config import LakeConfig
    from flywheel_core.lake.connection import lake_connection
    from flywheel_core.lake.models import latest_model, registry_name

    config = LakeConfig.from_settings(settings)
    with lake_connection(config) as con:
        cur = con.execute(
            "SELECT label_id, source_kind, geometry FROM labels WHERE status = 'active' "
            "AND (install_date IS NULL OR install_date <= ?)",
            [day],
        )
        labels = [
            dict(zip(("label_id", "source_kind", "geometry"), r, strict=True))
            for r in cur.fetchall()
        ]
        model = latest_model(con, registry_name(day.isoformat()))
        hard_negatives = con.execute(
            "SELECT count(*) FROM hard_negatives WHERE partition_date = ?", [day]
        ).fetchone()[0]
    by_source: dict[str, int] = {}
    for lab in labels:
        by_source[lab["source_kind"]] = by_source.get(lab["source_kind"], 0) + 1
    quality = label_truth(labels, truth, cells, day)
    test_iou = (model or {}).get("metrics", {}).get("test/iou")
    return {
        "by_source": by_source,
        "test_iou": test_iou,
        "recall": quality.recall,
        "precision": quality.precision,
        "installations": quality.installations,
        "hard_negatives": int(hard_negatives),
    }


def run_rounds(
    n_rounds: int, lon: float, lat: float, n_cells: int, dates: str, seed: int
) -> list[dict]:
    from flywheel_assets.embed.assets import dinov3_embeddings
    from flywheel_assets.ingest.imagery import msi_chips, vhr_chips
    from flywheel_assets.ingest.labels import seed_labels
    from flywheel_assets.loop.backfill import validated_backfill
    from flywheel_assets.loop.model import model_checkpoint
    from flywheel_assets.loop.predictions import predictions
    from flywheel_assets.masks.assets import sam_masks, training_data
    from flywheel_assets.resources import build_resources

    t0 = time.monotonic()
    settings = Settings.from_env()
    days = parse_dates(dates)[:n_rounds]
    if len(days) < n_rounds:
        raise click.BadParameter(f"{n_rounds} rounds need {n_rounds} dates; got {len(days)}")
    cells, instance = prepare(settings, lon, lat, n_cells, days, seed)
    truth = gpd.read_parquet(settings.world_dir / "truth.parquet")
    resources = build_resources()
    # Embeddings before the loop: validated_backfill mines hard negatives from them.
    ingest = [seed_labels, vhr_chips, msi_chips, dinov3_embeddings, sam_masks, training_data]
    loop = [predictions, validated_backfill]
    everything = [*ingest, model_checkpoint, *loop]
    reports = []
    for k, day in enumerate(days, start=1):
        click.echo(f"\n== round {k}: {day} ==")
        for cell in cells:
            key = MultiPartitionKey({"cell": cell, "date": day.isoformat()})
            _run(everything, ingest, key, instance, resources)
        elapsed = time.monotonic() - t0
        click.echo(f"   ingest + masks + training data for {len(cells)} cells ({elapsed:.0f} s)")
        _run(everything, [model_checkpoint], day.isoformat(), instance, resources)
        click.echo(f"   model trained ({time.monotonic() - t0:.0f} s)")
        for cell in cells:
            key = MultiPartitionKey({"cell": cell, "date": day.isoformat()})
            _run(everything, loop, key, instance, resources)
        report = _label_report(settings, cells, day, truth)
        reports.append(report)
        iou = (
            f"{report['test_iou']:.3f}" if report["test_iou"] is not None else "n/a (no test chips)"
        )
        click.echo(f"   predictions + backfill done ({time.monotonic() - t0:.0f} s)")
        click.echo(f"   labels by source: {report['by_source']}")
        click.echo(
            f"   hard-negative candidates (embedding neighbours of rejected or false-positive "
            f"detections): {report['hard_negatives']}"
        )
        click.echo(f"   model IoU on the held-out test split: {iou}")
        click.echo(
            f"   active labels vs hidden truth ({report['installations']} installations): "
            f"recall {report['recall']:.3f}, precision {report['precision']:.3f}"
        )
    click.echo(
        f"\n{'round':<7}{'date':<12}{'labels':>8}{'test IoU':>10}{'recall':>8}{'precision':>11}"
    )
    for k, (day, r) in enumerate(zip(days, reports, strict=True), start=1):
        iou = f"{r['test_iou']:.3f}" if r["test_iou"] is not None else "n/a"
        click.echo(
            f"{k:<7}{day.isoformat():<12}{sum(r['by_source'].values()):>8}{iou:>10}"
            f"{r['recall']:>8.3f}{r['precision']:>11.3f}"
        )
    last = reports[-1]
    rising = all(b["recall"] > a["recall"] for a, b in itertools.pairwise(reports))
    met = last["recall"] >= TARGET_RECALL and last["precision"] >= TARGET_PRECISION
    click.echo(
        f"\nrecall rises every round: {'yes' if rising else 'NO'}; final recall >= {TARGET_RECALL} "
        f"and precision >= {TARGET_PRECISION}: {'yes' if met else 'NO'}"
        f"  ({time.monotonic() - t0:.0f} s)"
    )
    return reports


@click.command()
@click.option("--rounds", "n_rounds", default=3, show_default=True)
@click.option("--lon", default=11.58, show_default=True)
@click.option("--lat", default=48.14, show_default=True)
@click.option("--cells", "n_cells", default=4, show_default=True)
@click.option("--dates", default=DEMO_DATES, show_default=True, help="One date per round.")
@click.option("--seed", default=0, show_default=True)
def rounds(n_rounds: int, lon: float, lat: float, n_cells: int, dates: str, seed: int) -> None:
    """Run N flywheel rounds on the demo world and print what each round achieved."""
    run_rounds(n_rounds, lon, lat, n_cells, dates, seed)
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
