"""The one quoting helper (flywheel_core.lake.quote): literals that DuckDB and LanceDB read back
as the very value, whatever quotes or SQL the value holds."""

from __future__ import annotations

import math
from datetime import date, datetime

import duckdb
import lancedb
import numpy as np
import pyarrow as pa
import pytest

from flywheel_core.lake.quote import (
    identifier,
    literal,
    sql_and,
    sql_eq,
    sql_in,
    sql_range,
    string_literal,
)
from flywheel_core.store.lance_tables import partition_filter, read_partitions, replace_partition

NASTY = ["o'brien", "it''s", "'; DROP TABLE labels; --", 'say "hi"', "back\\slash", "ünï ☀", ""]


@pytest.mark.parametrize("value", NASTY)
def test_string_literals_round_trip_through_duckdb(value):
    assert duckdb.sql(f"SELECT {string_literal(value)}").fetchone() == (value,)


@pytest.mark.parametrize(
    "value",
    [0, -7, 2**40, 1.5, -0.0, 1e-300, True, False, None, date(2024, 6, 1)],
)
def test_literals_of_every_type_round_trip(value):
    got = duckdb.sql(f"SELECT {literal(value)}").fetchone()[0]
    if isinstance(value, date):
        assert got == value.isoformat()  # a quoted ISO string, as the Lance `date` columns hold
    elif isinstance(value, float):
        assert float(got) == value  # DuckDB reads 1.5 as a DECIMAL, 1e-300 as a DOUBLE
    else:
        assert got == value and type(got) is type(value)


def test_timestamps_numpy_scalars_and_refusals():
    assert literal(datetime(2024, 6, 1, 12, 30)) == "'2024-06-01 12:30:00'"
    assert literal(np.int64(5)) == "5" and literal(np.float32(0.5)) == "0.5"
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            literal(bad)
    with pytest.raises(TypeError, match="no SQL literal"):
        literal(object())
    with pytest.raises(ValueError, match="NUL"):
        string_literal("a\x00b")


def test_identifiers_are_double_quoted():
    con = duckdb.connect()
    name = 'odd "name"'
    con.execute(f"CREATE TABLE {identifier(name)} (x INT)")
    assert con.execute("SELECT table_name FROM duckdb_tables()").fetchone() == (name,)
    for bad in ("", "a\x00"):
        with pytest.raises(ValueError, match="identifier"):
            identifier(bad)


def test_clause_builders():
    assert sql_eq("cell", "o'brien") == "cell = 'o''brien'"
    assert sql_in("uid", []) == "FALSE"  # an empty IN list is not SQL
    assert sql_in("uid", ["a", "b'c"]) == "uid IN ('a', 'b''c')"
    assert sql_range("date") == "TRUE"
    assert sql_range("date", high="2024-06-01") == "date <= '2024-06-01'"
    assert sql_range("x", 1, 2.5) == "x >= 1 AND x <= 2.5"
    assert sql_and({"date": "d", "cell": "c"}, None, "") == "cell = 'c' AND date = 'd'"
    assert sql_and("a = 1 OR b = 2", "c = 3") == "(a = 1 OR b = 2) AND c = 3"
    assert sql_and() == "TRUE"


def test_clauses_select_exactly_the_value_in_duckdb():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (cell VARCHAR, n INT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [[v, i] for i, v in enumerate(NASTY)])
    for i, value in enumerate(NASTY):
        rows = con.execute(f"SELECT n FROM t WHERE {sql_eq('cell', value)}").fetchall()
        assert rows == [(i,)]
    picked = con.execute(f"SELECT n FROM t WHERE {sql_in('cell', NASTY[:3])} ORDER BY n")
    assert picked.fetchall() == [(0,), (1,), (2,)]
    assert con.execute(f"SELECT count(*) FROM t WHERE {sql_in('cell', [])}").fetchone() == (0,)


def test_a_cell_id_with_a_quote_round_trips_through_lance_filters(tmp_path):
    """A partition whose cell and source hold quotes is written, read and replaced exactly, and
    leaves the neighbouring partition alone (before, `loop/predictions`, `train/round` and
    `flywheel eval masks` pasted such values into their filters raw)."""
    db = lancedb.connect(str(tmp_path / "lance"))
    odd = {"cell": "o'brien", "date": "2024-06-01"}
    plain = {"cell": "obrien", "date": "2024-06-01"}

    def rows(part, n, source):
        return pa.table(
            {
                "uid": [f"{part['cell']}|{i}" for i in range(n)],
                "cell": [part["cell"]] * n,
                "date": [part["date"]] * n,
                "source": [source] * n,
            }
        )

    replace_partition(db, "t", rows(plain, 2, "plain"), plain)
    replace_partition(db, "t", rows(odd, 3, "it's"), odd)
    assert read_partitions(db, "t", [odd]).num_rows == 3
    replace_partition(db, "t", rows(odd, 1, "it's"), odd)  # shrink: the delete filter is exact
    tbl = db.open_table("t")
    assert tbl.count_rows(partition_filter(odd)) == 1
    assert tbl.count_rows(partition_filter(plain)) == 2
    hits = tbl.search().where(sql_and({"source": "it's", "cell": "o'brien"})).to_arrow()
    assert hits["uid"].to_pylist() == ["o'brien|0"]
    assert tbl.count_rows(sql_in("cell", ["o'brien", "obrien"])) == 3


def test_loop_and_round_filters_take_values_with_quotes(tmp_path):
    """`predictions` reads a partition's MSI chips and `model_checkpoint` counts its round with
    filters built from values: a quote in them (before: a raw f-string, a Lance parse error)
    selects exactly the matching rows."""
    from flywheel_assets.loop.predictions import _msi_rows
    from flywheel_core.train.round import round_of
    from flywheel_resources.lancedb_io import LanceDBResource

    uri = str(tmp_path / "lance")
    db = lancedb.connect(uri)
    cells = ["o'brien", "o'brien", "obrien"]
    dates = ["2024-06-01", "2024-07-01", "2024-06-01"]
    chips = pa.table({"uid": ["a", "b", "c"], "cell": cells, "date": dates})
    db.create_table("msi_chips", chips)
    db.create_table("training_data", chips)
    got = _msi_rows(LanceDBResource(uri=uri), "o'brien", "2024-06-01")
    assert [r["uid"] for r in got] == ["a"]
    assert round_of(db, "2024-06-01") == (1, 2)
    assert round_of(db, "2024-06-01' OR date > '0") == (1, 2)  # a value, not SQL


def test_eval_masks_filters_take_a_cell_with_a_quote(tmp_path, monkeypatch):
    """`flywheel eval masks --cell "o'brien"` answers "no masks match" (before: the value went in
    as a Python repr, `"o'brien"`, which Lance reads as a column name, and the command crashed)."""
    from click.testing import CliRunner

    from flywheel_cli.main import cli

    uri = str(tmp_path / "lance")
    db = lancedb.connect(uri)
    masks = pa.table({"chip_id": ["x"], "cell": ["obrien"], "date": ["2024-06-01"]})
    db.create_table("sam_masks", masks)
    db.create_table("vhr_chips", pa.table({"chip_id": ["x"]}))
    truth = tmp_path / "truth.parquet"
    truth.write_bytes(b"")  # only its existence is checked before the masks are read
    monkeypatch.setenv("FLYWHEEL_LANCEDB_URI", uri)
    args = ["eval", "masks", "--truth", str(truth), "--cell", "o'brien", "--date", "2024-06-01"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert "no masks match" in result.output, result.output
