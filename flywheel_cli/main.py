"""Entry point of the `flywheel` console script; each command group lives in its own module.

Commands are imported only when invoked: Dagster and LanceDB take seconds to import, which
`flywheel --help` or `flywheel world generate` should not pay for.

Errors. Every command runs under one handler (`LazyGroup.invoke`): a `FlywheelError` (a bad
input, a store that does not answer, a partition that does not exist) prints one line,
`error: <message>`, on stderr and exits with status 1; a connection failure that no boundary
converted yet is printed the same way, without the driver's message (it may echo a URL with
credentials). With `--debug` (or FLYWHEEL_DEBUG=1) the exception propagates with its traceback.
Usage errors keep click's status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

import click

from flywheel_core.errors import FlywheelError, connection_failure, one_line, unreachable

_QUIET_LOGGERS = ("alembic", "botocore", "urllib3")
EXIT_ERROR = 1  # a FlywheelError: something the user can fix; click's usage errors exit 2

COMMANDS = {
    "cells": ("flywheel_cli.cells:cells", "S2 cells: the spatial partitions of every asset."),
    "demo": ("flywheel_cli.demo:demo", "The demo world and three flywheel rounds."),
    "embeddings": (
        "flywheel_cli.embeddings:embeddings",
        "The embedding export: QA and DuckDB vss nearest neighbours.",
    ),
    "imagery": (
        "flywheel_cli.imagery:imagery",
        "Imagery sources: the scenes they find for a cell and date, with a preview.",
    ),
    "eval": ("flywheel_cli.evaluate:evaluate", "Measure the flywheel against the hidden truth."),
    "rasters": ("flywheel_cli.rasters:rasters", "Raster datasets: register, tile, list, show."),
    "rounds": ("flywheel_cli.rounds:rounds", "Turn the flywheel N rounds and measure each."),
    "labels": ("flywheel_cli.labels:labels", "Seed labels in DuckLake (the system of record)."),
    "materialize": (
        "flywheel_cli.materialize:materialize",
        "Materialize assets for one partition, the key checked first.",
    ),
    "partitions": (
        "flywheel_cli.partitions:partitions",
        "Partition keys: check that one exists, and why not.",
    ),
    "search": ("flywheel_cli.search:search", "Nearest chips by embedding, with a contact sheet."),
    "world": ("flywheel_cli.world:world", "The deterministic synthetic world (offline imagery)."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a FlywheelError becomes one line on stderr (see the module doc)."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except FlywheelError as exc:
            if _debug(ctx):
                raise
            _fail(ctx, one_line(exc))
        except Exception as exc:
            if _debug(ctx) or not connection_failure(exc):
                raise
            _fail(
                ctx, one_line(unreachable("a store or service (run with --debug for details)", exc))
            )

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


def _debug(ctx: click.Context) -> bool:
    env = os.environ.get("FLYWHEEL_DEBUG", "").strip().lower()
    return bool(ctx.params.get("debug")) or env not in ("", "0", "false", "no")


def _fail(ctx: click.Context, message: str) -> None:
    click.echo(f"error: {message}", err=True)
    ctx.exit(EXIT_ERROR)


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.option(
    "--debug",
    is_flag=True,
    help="Show the traceback of an error instead of its one-line message (or FLYWHEEL_DEBUG=1).",
)
def cli(verbose: bool, debug: bool) -> None:
    """Lightning Lance: the PV segmentation data flywheel."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # library chatter at INFO would bury the one line an error prints
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
