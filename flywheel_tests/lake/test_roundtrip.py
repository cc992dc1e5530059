"""The same label round trip on every catalog and data path the lake supports."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow.compute as pc

from flywheel_core.labels.ingest import import_label_file
from flywheel_core.lake.config import LakeConfig
from flywheel_core.lake.connection import lake_connection
from flywheel_core.lake.labels import current_snapshot_id, label_counts, labels_for_cell
from flywheel_tests.labels.samples import H3_RES, S2_LEVEL, sample_file

FAR_FUTURE = date(2100, 1, 1)


def _import(con, path: Path, **kwargs):
    return import_label_file(con, path, s2_level=S2_LEVEL, h3_resolution=H3_RES, **kwargs)


def test_label_round_trip(any_lake: LakeConfig, tmp_path: Path, request) -> None:
    path = sample_file(tmp_path)
    with lake_connection(any_lake) as con:
        before = current_snapshot_id(con)
        batch, first = _import(con, path)
        assert (first.n_read, first.n_inserted, first.n_duplicate, first.n_rejected) == (4, 4, 0, 0)
        assert first.snapshot_id == before + 1  # one transaction, one snapshot

    # A new connection (as another process would open it) sees the labels.
    with lake_connection(any_lake) as con:
        stored = con.execute("SELECT label_id, s2_cells FROM labels").fetchall()
        assert sorted(r[0] for r in stored) == sorted(batch.table.column("label_id").to_pylist())
        cells = sorted({c for _, cs in stored for c in cs})
        assert list(first.new_cells) == cells
        for cell in cells:
            found = labels_for_cell(con, cell, FAR_FUTURE)
            expected = sorted(r[0] for r in stored if cell in r[1])
            assert sorted(found.column("label_id").to_pylist()) == expected
            assert pc.all(pc.equal(found.column("status"), "active")).as_py()

        _, second = _import(con, path, force=True)  # same bytes: skipped unless forced
        assert (second.n_inserted, second.n_duplicate) == (0, 4)
        assert second.new_cells == ()
        assert con.execute("SELECT count(*) FROM labels").fetchone()[0] == 4
        assert con.execute("SELECT count(*) FROM label_imports").fetchone()[0] == 2
        # The re-import only logs itself: again exactly one snapshot.
        assert second.snapshot_id == first.snapshot_id + 1 == current_snapshot_id(con)
        assert label_counts(con) == {"rooftops": {"active": 4}}

    if any_lake.data_on_s3:
        s3 = request.getfixturevalue("s3_server")
        prefix = any_lake.data_path.removeprefix(f"s3://{s3.bucket}/")
        keys = s3.keys(prefix)
        assert any(k.endswith(".parquet") and "/labels/" in k for k in keys), keys
        assert any("/label_imports/" in k for k in keys), keys
    else:
        parquet = list(Path(any_lake.data_path).rglob("*.parquet"))
        assert any(p.parent.name == "labels" for p in parquet), parquet
