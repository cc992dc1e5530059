"""Label imports parse with the lake closed, and the same file imported at once lands once.

- While `flywheel labels import` parses a file, another connection opens the lake (a DuckDB-file
  catalog admits one process at a time, so this fails if the import holds it during the parse).
- A file already imported (same SHA-256, any source) is a no-op that names the earlier import.
- Three processes importing the same new file at once give one import and no duplicate label,
  on a DuckDB-file catalog (its lock serializes them; the hash is checked inside the write) and on
  a PostgreSQL catalog (optimistic: the claim row makes the later COMMIT conflict and retry).
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flywheel_cli.labels import labels as labels_cli
from flywheel_core.labels import ingest
from flywheel_core.lake import connection
from flywheel_core.lake import labels as store
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection, open_lake
from flywheel_core.lake.labels import label_counts
from flywheel_tests.labels.samples import H3_RES, S2_LEVEL, sample_file


def _count(con: Any, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture
def cli_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LakeConfig:
    """The lake the CLI opens (FLYWHEEL_DATA_DIR under tmp_path), as a LakeConfig."""
    for name in ("FLYWHEEL_LAKE_CATALOG", "FLYWHEEL_LAKE_DATA_PATH", "FLYWHEEL_S2_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "data"))
    lake = tmp_path / "data" / "lake"
    return LakeConfig(catalog=f"duckdb:{lake / 'catalog.ducklake'}", data_path=str(lake / "files"))


def test_readers_open_the_lake_while_the_cli_parses_the_file(
    cli_lake: LakeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sample_file(tmp_path)
    events: list[str] = []
    real_read = ingest.read_label_file
    real_open = connection.open_lake

    def parse_while_a_reader_uses_the_lake(*args: Any, **kwargs: Any) -> Any:
        events.append("parse")
        reader = real_open(cli_lake, lock_timeout_s=0)  # fails if the import holds the lake
        try:
            events.append(f"reader saw {_count(reader, 'labels')}")
        finally:
            reader.close()
        return real_read(*args, **kwargs)

    def open_lake_logged(*args: Any, **kwargs: Any) -> Any:
        events.append("import opens lake")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(ingest, "read_label_file", parse_while_a_reader_uses_the_lake)
    monkeypatch.setattr(connection, "open_lake", open_lake_logged)
    result = CliRunner().invoke(labels_cli, ["import", str(path)])
    assert result.exit_code == 0, result.output
    assert "inserted 4" in result.output
    assert events == ["parse", "reader saw 0", "import opens lake"]


def test_one_write_transaction_one_snapshot(lake: LakeConfig, tmp_path: Path) -> None:
    with lake_connection(lake) as con:
        before = store.current_snapshot_id(con)
    done = ingest.import_label_file_into(
        lake, sample_file(tmp_path), s2_level=S2_LEVEL, h3_resolution=H3_RES
    )
    assert done.result.n_inserted == 4
    assert done.result.snapshot_id == before + 1
    assert done.parse_s > 0 and done.lake_s > 0


def test_same_bytes_under_another_source_are_skipped_and_named(
    lake: LakeConfig, tmp_path: Path
) -> None:
    path = sample_file(tmp_path)
    first = ingest.import_label_file_into(lake, path, s2_level=S2_LEVEL, h3_resolution=H3_RES)
    copy = tmp_path / "copy.geojson"
    copy.write_bytes(path.read_bytes())
    again = ingest.import_label_file_into(
        lake, copy, source="another", s2_level=S2_LEVEL, h3_resolution=H3_RES
    )
    prior = again.result.duplicate_of
    assert prior is not None and prior.import_id == first.result.import_id
    assert (prior.file_name, prior.source, prior.n_inserted) == ("rooftops.geojson", "rooftops", 4)
    assert again.result.n_inserted == 0 and again.result.new_cells == ()
    assert again.result.snapshot_id == first.result.snapshot_id  # nothing written
    with lake_connection(lake) as con:
        assert (_count(con, "labels"), _count(con, "label_imports")) == (4, 1)
    forced = ingest.import_label_file_into(
        lake, copy, source="another", force=True, s2_level=S2_LEVEL, h3_resolution=H3_RES
    )
    assert forced.result.duplicate_of is None and forced.result.n_inserted == 4
    with lake_connection(lake) as con:
        assert label_counts(con) == {"another": {"active": 4}, "rooftops": {"active": 4}}


def _import_in_child(
    catalog: str, data_path: str, path: str, source: str, go: Any, out: Any
) -> None:
    config = LakeConfig(catalog=catalog, data_path=data_path)
    prepared = ingest.prepare_label_import(
        path, source=source, s2_level=S2_LEVEL, h3_resolution=H3_RES
    )
    go.wait(60)  # all three write at once
    with lake_connection(config, lock_timeout_s=120) as con:
        result = ingest.write_label_import(con, prepared)
    prior = result.duplicate_of
    out.put((source, result.import_id, result.n_inserted, prior.import_id if prior else None))


def _three_at_once(config: LakeConfig, path: Path) -> list[tuple]:
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_import_in_child,
            args=(config.catalog, config.data_path, str(path), f"source-{k}", go, out),
        )
        for k in range(3)
    ]
    for p in procs:
        p.start()
    go.set()
    results = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return results


def _assert_imported_once(config: LakeConfig, results: list[tuple]) -> None:
    winners = [r for r in results if r[3] is None]
    assert len(winners) == 1, results
    winner = winners[0]
    assert winner[2] == 4
    assert all(r[3] == winner[1] and r[2] == 0 for r in results if r is not winner)
    with lake_connection(config) as con:
        assert _count(con, "label_imports") == 1
        assert label_counts(con) == {winner[0]: {"active": 4}}  # no duplicate under any source


def test_three_processes_import_the_same_new_file_once_duckdb(
    lake: LakeConfig, tmp_path: Path
) -> None:
    with lake_connection(lake):
        pass  # migrate first, so the children only race on the import
    _assert_imported_once(lake, _three_at_once(lake, sample_file(tmp_path)))


@pytest.mark.postgres
def test_three_processes_import_the_same_new_file_once_postgres(
    postgres_catalog: str, tmp_path: Path
) -> None:
    config = LakeConfig(catalog=postgres_catalog, data_path=str(tmp_path / "files"))
    with lake_connection(config):
        pass
    _assert_imported_once(config, _three_at_once(config, sample_file(tmp_path)))


@pytest.mark.postgres
def test_two_imports_that_both_pass_the_hash_check_cannot_both_commit(
    postgres_catalog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force the race: both transactions find no earlier import before either commits."""
    config = LakeConfig(catalog=postgres_catalog, data_path=str(tmp_path / "files"))
    prepared = ingest.prepare_label_import(
        sample_file(tmp_path), s2_level=S2_LEVEL, h3_resolution=H3_RES
    )
    both_checked = threading.Barrier(2, timeout=60)
    calls: list[bool] = []
    real_find = store.find_import

    def find_then_wait(con: Any, sha: str) -> Any:
        prior = real_find(con, sha)
        calls.append(prior is None)
        if len(calls) <= 2:
            both_checked.wait()
        return prior

    monkeypatch.setattr(store, "find_import", find_then_wait)
    cons = [open_lake(config), open_lake(config)]
    results: list[Any] = [None, None]
    errors: list[BaseException] = []

    def run(k: int, source: str) -> None:
        record = {**prepared.record, "source": source}
        try:
            results[k] = store.insert_labels(cons[k], prepared.batch.table, record)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k, f"s{k}")) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert calls[:2] == [True, True] and len(calls) == 3  # the loser retried once
    skipped = [r for r in results if r.duplicate_of is not None]
    assert len(skipped) == 1
    with lake_connection(config) as con:
        assert _count(con, "label_imports") == 1 and _count(con, "labels") == 4
    for con in cons:
        con.close()
