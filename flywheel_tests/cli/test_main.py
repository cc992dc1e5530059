from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from flywheel_cli.main import COMMANDS, cli


def test_every_listed_command_loads():
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output


def test_help_does_not_import_dagster_or_lancedb():
    code = (
        "import sys; from flywheel_cli.main import cli; "
        "print('dagster' in sys.modules, 'lancedb' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.split() == ["False", "False"]
