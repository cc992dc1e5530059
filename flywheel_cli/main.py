"""Entry point of the `flywheel` console script; each command group lives in its own module.

Commands are imported only when invoked: Dagster and LanceDB take seconds to import, which
`flywheel --help` or `flywheel world generate` should not pay for.
"""

from __future__ import annotations

import importlib
import logging

import click

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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in sorted(COMMANDS)])


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def cli(verbose: bool) -> None:
    """Lightning Lance: the PV segmentation data flywheel."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
