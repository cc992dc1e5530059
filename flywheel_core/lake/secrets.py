"""Credentials for the lake, read from the environment at connect time and never stored.

Keeping them out of LakeConfig and the Dagster resource config means they cannot end up in a
repr, a run's config in the Dagster UI, or a log line; `scrub` removes any that DuckDB echoes back.
"""

from __future__ import annotations

import os
import re

import duckdb

_SECRET_ENV = ("PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def create_s3_secret(con: duckdb.DuckDBPyConnection) -> None:
    """Register an in-memory DuckDB S3 secret from AWS_* / FLYWHEEL_S3_* variables."""
    options: dict[str, str] = {"REGION": os.environ.get("AWS_REGION") or "us-east-1"}
    key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key_id and secret:
        options["KEY_ID"] = key_id
        options["SECRET"] = secret
        token = os.environ.get("AWS_SESSION_TOKEN")
        if token:
            options["SESSION_TOKEN"] = token
    endpoint = os.environ.get("FLYWHEEL_S3_ENDPOINT")
    if endpoint:
        options["ENDPOINT"] = endpoint.removeprefix("http://").removeprefix("https://")
        options["URL_STYLE"] = "path"
    use_ssl = _truthy(os.environ.get("FLYWHEEL_S3_USE_SSL", "true"))
    # Values go in as bound parameters so they are never spliced into SQL text.
    names = list(options)
    clause = ", ".join(f"{name} ?" for name in names)
    con.execute(
        f"CREATE OR REPLACE SECRET flywheel_s3 (TYPE s3, {clause}, USE_SSL {str(use_ssl).lower()})",
        [options[name] for name in names],
    )


def scrub(text: str) -> str:
    """Remove secret values from text that might echo a connection string or an option."""
    text = _PASSWORD_KV.sub(r"\1***", text)
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text
