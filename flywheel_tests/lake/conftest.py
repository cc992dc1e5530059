"""Lake configurations for every supported catalog / data-path combination."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel_core.lake.config import LakeConfig

BACKENDS = [
    pytest.param("duckdb", id="duckdb-file"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("s3", id="duckdb-file+s3"),
]


def lake_config_for(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest | None = None
) -> LakeConfig:
    files = str(tmp_path / "lake" / "files")
    if backend == "duckdb":
        return LakeConfig(
            catalog=f"duckdb:{tmp_path / 'lake' / 'catalog.ducklake'}", data_path=files
        )
    if backend == "sqlite":
        return LakeConfig(catalog=f"sqlite:{tmp_path / 'lake' / 'catalog.sqlite'}", data_path=files)
    if request is None:
        raise ValueError(f"the {backend} backend needs its service fixture")
    if backend == "postgres":
        return LakeConfig(catalog=request.getfixturevalue("postgres_catalog"), data_path=files)
    if backend == "s3":
        data_path = request.getfixturevalue("s3_env")
        return LakeConfig(
            catalog=f"duckdb:{tmp_path / 'lake' / 'catalog.ducklake'}", data_path=data_path
        )
    raise ValueError(backend)


@pytest.fixture(params=BACKENDS)
def any_lake(request: pytest.FixtureRequest, tmp_path: Path) -> LakeConfig:
    return lake_config_for(request.param, tmp_path, request)


@pytest.fixture
def lake(tmp_path: Path) -> LakeConfig:
    """The default local lake (DuckDB-file catalog, local data folder)."""
    return lake_config_for("duckdb", tmp_path)
