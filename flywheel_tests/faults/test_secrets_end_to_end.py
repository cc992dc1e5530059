"""Marker secrets in PGPASSWORD and AWS_SECRET_ACCESS_KEY never leave the environment.

A label import and a `dagster asset materialize` of `vhr_chips` run against a real PostgreSQL
catalog (a role whose password is the marker) and a moto S3 lake (whose secret key is the
marker); then neither marker may appear in their stdout or stderr, in any file under
DAGSTER_HOME (run and event storage, compute logs) or the data folder, or in any S3 object.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from flywheel_assets.partitions import S2_CELLS_NAME
from flywheel_tests.faults.conftest import ROOT
from flywheel_tests.fixtures.s3 import FAKE_KEY_ID, REGION
from flywheel_tests.fixtures.world import TINY_CELL

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PG_MARKER = "marker-pg-5f3a9c1e7b"
AWS_MARKER = "marker-aws-8d2e4b6f0a"
MARKERS = (PG_MARKER.encode(), AWS_MARKER.encode())
BIN = Path(sys.executable).parent


def _marker_role(server) -> str:
    """A database owned by a role whose password is the marker; its `postgres:` catalog."""
    role, db = f"mk_{uuid.uuid4().hex[:8]}", f"lake_{uuid.uuid4().hex[:8]}"
    server.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_MARKER}'")
    server.psql(f"CREATE DATABASE {db} OWNER {role}")
    return f"postgres:dbname={db} host={server.host} port={server.port} user={role}"


def _leaks(folder: Path) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and any(m in path.read_bytes() for m in MARKERS):
            found.append(str(path.relative_to(folder)))
    return found


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, timeout=300)
    for stream in (done.stdout, done.stderr):
        assert not any(m in stream for m in MARKERS), f"a marker in the output of {args[:3]}"
    return done


def test_marker_secrets_appear_nowhere(postgres_server, s3_server, tiny_world, tmp_path):
    data, home = tmp_path / "data", tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    prefix = uuid.uuid4().hex[:12]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "AWS_", "PG"))}
    env.update(
        DAGSTER_HOME=str(home),
        PGPASSWORD=PG_MARKER,
        AWS_ACCESS_KEY_ID=FAKE_KEY_ID,
        AWS_SECRET_ACCESS_KEY=AWS_MARKER,
        AWS_REGION=REGION,
        FLYWHEEL_S3_ENDPOINT=s3_server.endpoint,
        FLYWHEEL_S3_USE_SSL="false",
        FLYWHEEL_DATA_DIR=str(data),
        FLYWHEEL_WORLD_DIR=str(tiny_world.catalog_path.parent),
        FLYWHEEL_LAKE_CATALOG=_marker_role(postgres_server),
        FLYWHEEL_LAKE_DATA_PATH=f"s3://{s3_server.bucket}/{prefix}/",
    )
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(S2_CELLS_NAME, [TINY_CELL])

    imported = _run(
        [str(BIN / "flywheel"), "labels", "import", str(tiny_world.seed_labels_path)], env
    )
    assert imported.returncode == 0 and b"inserted" in imported.stdout, imported.stderr[-2000:]
    materialized = _run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "flywheel_assets.definitions",
         "--select", "vhr_chips", "--partition", f"{TINY_CELL}|2025-07-01"],
        env,
    )  # fmt: skip
    assert materialized.returncode == 0, materialized.stderr[-3000:]

    with DagsterInstance.from_config(str(home)) as instance:
        assert [r.status for r in instance.get_runs()] == [DagsterRunStatus.SUCCESS]
    keys = s3_server.keys(prefix)
    assert any(k.endswith(".parquet") for k in keys), "the lake wrote nothing to S3"
    assert any(p.suffix in (".out", ".err") for p in home.rglob("*")), "no compute logs"
    assert _leaks(home) == [] and _leaks(data) == []
    client = s3_server.client()
    for key in keys:
        body = client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
        assert not any(m in body for m in MARKERS), key
