from __future__ import annotations

import pyarrow as pa
import pytest

from flywheel_core.store import lance_tables as lt


def _rows(cell: str, date: str, n: int, value: int = 0) -> pa.Table:
    day = date
    return pa.table(
        {
            "uid": [f"{cell}|{day}|{i}" for i in range(n)],
            "cell": [cell] * n,
            "date": [day] * n,
            "value": [value + i for i in range(n)],
        }
    )


def _sorted(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["uid"])


@pytest.fixture
def db(tmp_path):
    return lt.connect(str(tmp_path / "lancedb"))


A = {"cell": "479e758c4", "date": "2024-06-01"}
B = {"cell": "479e758cc", "date": "2024-06-01"}


def test_rerun_leaves_same_rows(db):
    lt.replace_partition(db, "t", _rows(**A, n=5), A)
    first = _sorted(lt.read_partitions(db, "t", [A]))
    result = lt.replace_partition(db, "t", _rows(**A, n=5), A)
    assert _sorted(lt.read_partitions(db, "t", [A])) == first
    assert result.inserted == 0 and result.deleted == 0 and result.updated == 5
    assert db.open_table("t").count_rows() == 5


def test_rewrite_replaces_only_its_partition(db):
    lt.replace_partition(db, "t", _rows(**A, n=5), A)
    lt.replace_partition(db, "t", _rows(**B, n=3, value=100), B)
    before_b = _sorted(lt.read_partitions(db, "t", [B]))
    result = lt.replace_partition(db, "t", _rows(**A, n=2, value=50), A)
    assert result.deleted == 3
    assert [r["value"] for r in _sorted(lt.read_partitions(db, "t", [A]))] == [50, 51]
    assert _sorted(lt.read_partitions(db, "t", [B])) == before_b


def test_empty_output_clears_the_partition(db):
    lt.replace_partition(db, "t", _rows(**A, n=4), A)
    lt.replace_partition(db, "t", _rows(**B, n=2), B)
    lt.replace_partition(db, "t", _rows(**A, n=0), A)
    assert lt.read_partitions(db, "t", [A]).num_rows == 0
    assert lt.read_partitions(db, "t", [B]).num_rows == 2


def test_failure_mid_stream_keeps_previous_version(db):
    lt.replace_partition(db, "t", _rows(**A, n=5), A)
    lt.replace_partition(db, "t", _rows(**B, n=2), B)
    table = db.open_table("t")
    version, before = table.version, _sorted(table.to_arrow())
    new = _rows(**A, n=8, value=1000)

    def batches():
        yield new.slice(0, 4).to_batches()[0]
        raise RuntimeError("imagery source went away")

    reader = pa.RecordBatchReader.from_batches(new.schema, batches())
    with pytest.raises(RuntimeError, match="imagery source went away"):
        lt.replace_partition(db, "t", reader, A)
    reopened = lt.connect(db.uri).open_table("t")
    assert reopened.version == version
    assert _sorted(reopened.to_arrow()) == before


def test_rows_of_another_partition_are_refused(db):
    lt.replace_partition(db, "t", _rows(**A, n=2), A)
    with pytest.raises(lt.PartitionMismatchError, match="cell"):
        lt.replace_partition(db, "t", _rows(**B, n=2), A)
    assert lt.read_partitions(db, "t", [A]).num_rows == 2


def test_duplicate_keys_are_refused(db):
    rows = pa.concat_tables([_rows(**A, n=2), _rows(**A, n=1)])
    with pytest.raises(lt.PartitionMismatchError, match="duplicate"):
        lt.replace_partition(db, "t", rows, A)
    assert "t" not in db.table_names() or db.open_table("t").count_rows() == 0


def test_partition_filter_escapes_quotes():
    assert lt.partition_filter({"cell": "a'b"}) == "cell = 'a''b'"


def test_s3_uri_round_trip(s3_server, s3_env):
    uri = s3_env.rstrip("/") + "/lancedb"
    db = lt.connect(uri)
    lt.replace_partition(db, "t", _rows(**A, n=3), A)
    lt.replace_partition(db, "t", _rows(**A, n=3), A)
    assert lt.read_partitions(lt.connect(uri), "t", [A]).num_rows == 3
    prefix = uri.removeprefix(f"s3://{s3_server.bucket}/")
    keys = s3_server.keys(prefix)
    assert any(k.endswith(".lance") for k in keys), keys[:5]
