"""DuckDB extensions loaded from the pinned `duckdb-extension-*` wheels.

`INSTALL` would fetch from the network at run time and could pick up a build that does not match
the pinned DuckDB; loading the file shipped in the wheel keeps runs offline and reproducible.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import duckdb

from flywheel_core.errors import FlywheelError
from flywheel_core.lake.quote import string_literal

# Extension name -> the Python package that ships it.
PACKAGES: dict[str, str] = {
    "ducklake": "duckdb_extension_ducklake",
    "httpfs": "duckdb_extension_httpfs",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "sqlite_scanner": "duckdb_extension_sqlite_scanner",
    "spatial": "duckdb_extension_spatial",
    "vss": "duckdb_extension_vss",
}


class ExtensionNotFoundError(FlywheelError, RuntimeError):
    """The wheel carrying an extension is missing or was built for another DuckDB."""


def extension_path(name: str) -> Path:
    """Path of the extension file built for the running DuckDB version."""
    package = PACKAGES.get(name)
    if package is None:
        raise ExtensionNotFoundError(
            f"unknown DuckDB extension {name!r}; known: {', '.join(sorted(PACKAGES))}"
        )
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        dist = package.replace("_", "-")
        raise ExtensionNotFoundError(
            f"DuckDB extension {name!r} needs the {dist!r} package (pip install {dist}=="
            f"{duckdb.__version__})"
        ) from exc
    root = Path(module.__file__ or "").parent / "extensions"
    candidate = root / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if candidate.is_file():
        return candidate
    found = sorted(p.parent.name for p in root.glob(f"*/{name}.duckdb_extension"))
    raise ExtensionNotFoundError(
        f"{package} has no build of {name!r} for DuckDB v{duckdb.__version__} (it has: "
        f"{', '.join(found) or 'none'}); pin the package to the DuckDB version"
    )


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD the extension from its wheel unless this connection's database already has it."""
    loaded = con.execute(
        "SELECT count(*) FROM duckdb_extensions() WHERE extension_name = ? AND loaded", [name]
    ).fetchone()
    if loaded and loaded[0]:
        return
    con.execute(f"LOAD {string_literal(str(extension_path(name)))}")
