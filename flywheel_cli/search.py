"""`flywheel search`: the chips nearest a chip, a point or a vector, with a contact sheet."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from flywheel_core.settings import Settings


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def _default_sheet(
    settings: Settings, chip: str | None, point: Any, vector: Path | None, k: int
) -> Path:
    if chip is not None:
        name = f"chip_{_slug(chip)}"
    elif point:
        name = f"point_{point[0]:.6f}_{point[1]:.6f}"
    else:
        name = f"vector_{_slug(vector.stem if vector else 'query')}"
    return settings.data_dir / "previews" / "search" / f"{name}_k{k}.png"


@contextlib.contextmanager
def _lake(settings: Settings, needed: bool) -> Iterator[Any]:
    if not needed:
        yield None
        return
    from flywheel_cli.lake import lake_config
    from flywheel_core.lake.connection import lake_connection

    with lake_connection(lake_config(settings)) as con:
        yield con


def _bbox(footprint: bytes | None) -> str:
    if not footprint:
        return "-"
    import shapely

    x0, y0, x1, y1 = shapely.from_wkb(footprint).bounds
    return f"{x0:.6f},{y0:.6f},{x1:.6f},{y1:.6f}"


def _print_table(result: Any, sheet: Path | None) -> None:
    q = result.query
    if q.uid is not None:
        where = f" ({q.point_distance_m:.1f} m from the point)" if q.point_distance_m else ""
        click.echo(f"query: {q.kind} -> chip {q.uid} [{q.dataset}, model {q.model_id}]{where}")
    else:
        click.echo(f"query: a {len(q.vector)}-d vector")
    mode = "exact scan" if result.exact else "ANN index, exact re-rank"
    click.echo(
        f"{len(result.hits)} of k={result.k} hits, cosine distance on {result.column!r}, {mode}"
    )
    if result.untrained:
        click.echo(
            "warning: these vectors come from a random-weight model (trained = false): the "
            "neighbours test the plumbing, not the imagery",
            err=True,
        )
    if result.hits:
        click.echo(
            f"{'rank':>4}  {'distance':>8}  {'uid':<34}  {'dataset':<10}  "
            f"{'centre lon,lat':<21}  footprint bbox (lon/lat)"
        )
        for h in result.hits:
            click.echo(
                f"{h.rank:>4}  {h.distance:>8.4f}  {h.uid:<34}  {h.dataset:<10}  "
                f"{h.center_lon:>10.6f},{h.center_lat:<10.6f}  {_bbox(h.footprint)}"
            )
    else:
        click.echo("no chip matches the filters")
    if sheet is not None:
        click.echo(f"contact sheet: {sheet}")


@click.command("search", context_settings={"ignore_unknown_options": False})
@click.option("--chip", help="Query by a chip's uid (e.g. '479e758c4|2024-06-01|r00256c00512').")
@click.option(
    "--point", nargs=2, type=float, metavar="LON LAT", help="Query by the chip at a lon/lat point."
)
@click.option(
    "--vector",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Query by a vector file: .npy or a .json list of numbers.",
)
@click.option("-k", "--k", "k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--cell", help="Only chips of this S2 cell.")
@click.option("--date", help="Only chips of this partition date (YYYY-MM-DD).")
@click.option("--until", help="Only chips dated on or before this date.")
@click.option("--dataset", help="Only this dataset ('vhr_chips' or a registered raster id).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="training_data split.")
@click.option(
    "--label-status",
    type=click.Choice(["labeled", "unlabeled"]),
    help="Chips meeting an active label as of their date, or not.",
)
@click.option("--model-id", help="Only vectors of this embedding model.")
@click.option(
    "--column",
    type=click.Choice(["vector", "mean_patch"]),
    default="vector",
    show_default=True,
    help="CLS token or mean patch token.",
)
@click.option("--exact", is_flag=True, help="Brute-force scan even when an ANN index exists.")
@click.option("--include-query", is_flag=True, help="Keep the query chip among the hits.")
@click.option(
    "--sheet",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Contact sheet PNG (default: data/previews/search/<query>_k<K>.png).",
)
@click.option("--no-sheet", is_flag=True, help="Do not draw a contact sheet.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def search(
    chip: str | None,
    point: tuple[float, float] | None,
    vector: Path | None,
    k: int,
    cell: str | None,
    date: str | None,
    until: str | None,
    dataset: str | None,
    split: str | None,
    label_status: str | None,
    model_id: str | None,
    column: str,
    exact: bool,
    include_query: bool,
    sheet: Path | None,
    no_sheet: bool,
    as_json: bool,
) -> None:
    """The K chips nearest a chip (--chip), a point (--point LON LAT) or a vector (--vector)."""
    from flywheel_core.embed import search as core
    from flywheel_core.store.lance_tables import connect

    point = point or None  # click gives () when --point is absent
    given = [name for name, v in (("--chip", chip), ("--point", point), ("--vector", vector)) if v]
    if len(given) != 1:
        raise click.UsageError(
            "give exactly one of --chip ID, --point LON LAT or --vector FILE"
            + (f" (got {', '.join(given)})" if given else "")
        )
    settings = Settings.from_env()
    try:
        filters = core.SearchFilters(
            cell=cell,
            date=date,
            dataset=dataset,
            split=split,
            label_status=label_status,
            until=until,
            model_id=model_id,
        )
        values = core.read_vector_file(vector) if vector is not None else None
        db = connect(settings.lancedb_uri)
        with _lake(settings, label_status is not None) as lake:
            result = core.search(
                db,
                vector=values,
                chip=chip,
                point=point,
                k=k,
                filters=filters,
                lake=lake,
                column=column,
                include_query=include_query,
                exact=exact,
            )
    except core.SearchError as exc:
        raise click.ClickException(str(exc)) from exc
    path = None
    if not no_sheet:
        from flywheel_core.embed.contact_sheet import write_search_sheet

        path = write_search_sheet(
            db, result, sheet or _default_sheet(settings, chip, point, vector, k)
        )
    if as_json:
        out = result.as_dict()
        out["sheet"] = str(path) if path else None
        click.echo(json.dumps(out, indent=2))
    else:
        _print_table(result, path)
