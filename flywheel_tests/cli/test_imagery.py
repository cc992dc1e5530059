"""`flywheel imagery list` on the tiny world: the scenes, the choice, the preview, the errors."""

from click.testing import CliRunner
from PIL import Image

from flywheel_cli.main import cli
from flywheel_tests.fixtures.world import TINY_CELL, TINY_DATES


def _run(*args):
    return CliRunner().invoke(cli, ["imagery", "list", *args])


def test_lists_scenes_marks_the_choice_and_writes_a_preview(tiny_world, tmp_path):
    root = str(tiny_world.catalog_path.parent)
    out = tmp_path / "preview.png"
    day = TINY_DATES[1].isoformat()
    result = _run(
        "--source",
        "synthetic",
        "--root",
        root,
        "--cell",
        TINY_CELL,
        "--date",
        day,
        "--kind",
        "msi",
        "--preview",
        str(out),
    )
    assert result.exit_code == 0, result.output
    chosen = [line for line in result.output.splitlines() if line.startswith("* ")]
    assert len(chosen) == 1 and f"s2-{TINY_CELL}-{day}" in chosen[0]
    assert "covers 100%" in chosen[0]
    img = Image.open(out)
    assert min(img.size) >= 256 and img.getextrema()[0][1] > 0


def test_an_empty_window_says_so(tiny_world):
    root = str(tiny_world.catalog_path.parent)
    result = _run(
        "--source", "synthetic", "--root", root, "--cell", TINY_CELL, "--date", "2030-01-01"
    )
    assert result.exit_code == 0
    assert "0 scene(s)" in result.output and "materialize this partition empty" in result.output


def test_errors_are_one_line(tiny_world):
    bad = _run("--source", "landsat", "--cell", TINY_CELL, "--date", "2025-07-01")
    assert bad.exit_code == 1 and "unknown imagery source" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    assert _run("--source", "synthetic", "--cell", "zz", "--date", "2025-07-01").exit_code == 2
    assert _run("--source", "synthetic", "--cell", TINY_CELL, "--date", "July").exit_code == 2
