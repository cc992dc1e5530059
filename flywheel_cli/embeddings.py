"""`flywheel embeddings ...`: analytics over the Parquet export, with DuckDB alone.

The export is what leaves the platform (a warehouse, a notebook, another team reads it), so these
commands read only the Parquet files in the object store, never Lance: what they report is what
a consumer of the export sees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from flywheel_core.settings import Settings


@click.group()
def embeddings() -> None:
    """The embedding export: QA metrics and DuckDB vss nearest neighbours."""


def _glob(dataset: str) -> str:
    from flywheel_core.embed.export import export_glob
    from flywheel_resources.object_store import ObjectStoreResource

    return export_glob(ObjectStoreResource().store(), dataset)


def _expected_tiles(dataset: str) -> int | None:
    """Tiles the dataset has in Lance (vhr_chips, or its partition of raster_tiles)."""
    from flywheel_core.store.lance_tables import connect, partition_filter

    db = connect(Settings.from_env().lancedb_uri)
    if dataset == "vhr_chips":
        table, where = "vhr_chips", None
    else:
        table, where = "raster_tiles", partition_filter({"dataset": dataset})
    if table not in db.table_names():
        return None
    return db.open_table(table).count_rows(where)


@embeddings.command("qa")
@click.option("--dataset", default="vhr_chips", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def qa(dataset: str, as_json: bool) -> None:
    """Coverage, NaN / zero / duplicate vectors and norms of a dataset's whole export."""
    import duckdb

    from flywheel_core.embed.qa import qa_metrics

    glob = _glob(dataset)
    expected = _expected_tiles(dataset)
    try:
        with duckdb.connect() as con:
            metrics = qa_metrics(con, glob, expected if expected is not None else 0)
    except FileNotFoundError as exc:
        raise click.ClickException(
            f"{exc}\n(materialize dinov3_embeddings, or `flywheel rasters embed ID`, first)"
        ) from None
    if expected is None:
        metrics["coverage"] = None  # no tile table to compare with
    if as_json:
        click.echo(json.dumps({"export": glob, **metrics}, indent=2, default=str))
        return
    click.echo(f"export: {glob}")
    for key in (
        "rows",
        "expected_tiles",
        "coverage",
        "nan_vectors",
        "zero_vectors",
        "duplicate_vectors",
        "duplicate_uids",
        "dim",
        "norm_min",
        "norm_mean",
        "norm_max",
        "norm_std",
        "model_ids",
        "trained",
    ):
        value = metrics.get(key)
        shown = f"{value:.4f}" if isinstance(value, float) else value
        click.echo(f"  {key:<18}{shown}")
    if metrics.get("trained") is False:
        click.echo("  (random-weight vectors: plumbing, not meaning)")


def _query_vector(con: Any, table: str, chip: str | None, vector: Path | None) -> list[float]:
    from flywheel_core.embed.search_queries import read_vector_file
    from flywheel_core.embed.vss import vector_of

    if vector is not None:
        return [float(x) for x in read_vector_file(vector).ravel()]
    found = vector_of(con, table, str(chip))
    if found is None:
        raise click.ClickException(f"no chip {chip!r} in the export")
    return found


@embeddings.command("nearest")
@click.option("--chip", help="Query by a chip's uid (its exported vector).")
@click.option("--vector", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", default="vhr_chips", show_default=True)
@click.option("-k", "--k", "k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--where", help="SQL over the export's columns, e.g. \"cell = '479e758c4'\".")
def nearest(chip: str | None, vector: Path | None, dataset: str, k: int, where: str | None) -> None:
    """Nearest chips by DuckDB vss (HNSW, cosine) over the Parquet export."""
    import duckdb

    from flywheel_core.embed.search_queries import SearchError
    from flywheel_core.embed.vss import build_hnsw, vector_widths
    from flywheel_core.embed.vss import nearest as vss_nearest

    if (chip is None) == (vector is None):
        raise click.UsageError("give exactly one of --chip UID or --vector FILE")
    glob = _glob(dataset)
    with duckdb.connect() as con:
        try:
            dims = vector_widths(con, glob)
        except FileNotFoundError as exc:
            raise click.ClickException(str(exc)) from None
        if not dims:
            raise click.ClickException(f"{glob} holds no vectors (only empty partitions)")
        if len(dims) != 1:
            raise click.ClickException(f"{glob} holds vectors of widths {dims}")
        dim = dims[0]
        table = build_hnsw(con, glob, dim)
        try:
            query = _query_vector(con, table, chip, vector)
        except SearchError as exc:
            raise click.ClickException(str(exc)) from None
        if len(query) != dim:
            raise click.ClickException(f"the query vector has {len(query)} values, expected {dim}")
        # one extra hit instead of a WHERE for the query chip: a WHERE makes vss scan exactly
        try:
            hits = vss_nearest(
                con,
                table,
                query,
                k + (chip is not None),
                where,
                columns=("cell", "date", "center_lon", "center_lat"),
            )
        except duckdb.Error as exc:
            raise click.ClickException(f"query failed: {exc}") from None
        hits = [h for h in hits if h["uid"] != chip][:k]
    click.echo(f"{len(hits)} of k={k} nearest in {glob} (DuckDB vss, cosine)")
    click.echo(f"{'rank':>4}  {'distance':>8}  {'uid':<40}{'centre lon,lat':>24}")
    for rank, hit in enumerate(hits, start=1):
        centre = f"{hit['center_lon']:.6f},{hit['center_lat']:.6f}"
        click.echo(f"{rank:>4}  {hit['distance']:>8.4f}  {hit['uid']:<40}{centre:>24}")
