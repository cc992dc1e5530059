"""`flywheel eval masks`: stored masks against the synthetic world's hidden truth."""

from __future__ import annotations

from pathlib import Path

import click

from flywheel_core.settings import Settings

TARGET_IOU = 0.85
TARGET_BEATS = 0.80


@click.group(name="eval")
def evaluate() -> None:
    """Measure the flywheel against the synthetic world's hidden truth."""


@evaluate.command("masks")
@click.option(
    "--truth", type=click.Path(path_type=Path), help="truth.parquet (default: the world's)."
)
@click.option("--cell", "cells", multiple=True, help="Only these cells (repeatable).")
@click.option("--date", "dates", multiple=True, help="Only these partition dates (repeatable).")
def masks(truth: Path | None, cells: tuple[str, ...], dates: tuple[str, ...]) -> None:
    """Median IoU of the stored masks with the true panels, and how often they beat their prompt."""
    import geopandas as gpd
    import lancedb

    from flywheel_core.lake.quote import sql_and, sql_in
    from flywheel_core.masks.evaluate import score_masks, summarize

    settings = Settings.from_env()
    truth = truth or settings.world_dir / "truth.parquet"
    if not truth.exists():
        raise click.ClickException(f"no truth at {truth}: only a synthetic world has one")
    db = lancedb.connect(settings.lancedb_uri)
    missing = [t for t in ("sam_masks", "vhr_chips") if t not in db.table_names()]
    if missing:
        raise click.ClickException(
            f"no {', '.join(missing)} table under {settings.lancedb_uri}: materialize first"
        )
    chosen = [sql_in(c, vals) for c, vals in (("cell", cells), ("date", dates)) if vals]
    where = sql_and(*chosen) if chosen else None
    query = db.open_table("sam_masks").search()
    mask_rows = (query.where(where) if where else query).limit(None).to_arrow().to_pylist()
    if not mask_rows:
        raise click.ClickException(
            "no masks match: materialize sam_masks for some partitions first"
        )
    ids = sorted({m["chip_id"] for m in mask_rows})
    chips = {}
    table = db.open_table("vhr_chips")
    for i in range(0, len(ids), 200):
        sel = sql_in("chip_id", ids[i : i + 200])
        for c in table.search().where(sel).limit(None).to_arrow().to_pylist():
            chips[c["chip_id"]] = c
    scores = score_masks(mask_rows, chips, gpd.read_parquet(truth))
    click.echo(
        f"{len(scores)} masks over {len({(m['cell'], m['date']) for m in mask_rows})} partition(s)"
    )
    ok = True
    for name, s in summarize(scores).items():
        click.echo(f"\n{name}")
        click.echo(f"  masks                         {s['masks']}")
        click.echo(f"  acceptance rate               {s['acceptance_rate']:.2f}")
        click.echo(
            f"  median IoU with truth         {s['median_iou_truth']:.3f}"
            f"   (target >= {TARGET_IOU})"
        )
        click.echo(f"  median IoU, accepted masks    {s['median_iou_truth_accepted']:.3f}")
        click.echo(f"  median IoU of the raw prompt  {s['median_iou_prompt_truth']:.3f}")
        click.echo(
            f"  mask beats its prompt         {s['share_mask_beats_prompt']:.0%}"
            f"   (target >= {TARGET_BEATS:.0%})"
        )
        ok &= s["median_iou_truth"] >= TARGET_IOU and s["share_mask_beats_prompt"] >= TARGET_BEATS
    click.echo("\ntargets met" if ok else "\ntargets NOT met")
