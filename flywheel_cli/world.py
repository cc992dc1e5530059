"""`flywheel world ...` commands."""

from __future__ import annotations

import click


@click.group()
def world() -> None:
    """(placeholder)"""
