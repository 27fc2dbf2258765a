"""What a new user meets first: a quick --version, output files they can share, --out checked
before the run, and a plot that shows what the BMS did."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openbms import __version__
from openbms.cli import app

FILES = Path(__file__).parent / "scenario" / "files"
SRC = Path(__file__).parents[1] / "src"
runner = CliRunner()


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout


def test_the_cli_loads_without_matplotlib_or_the_simulation() -> None:
    loaded = _python(
        "import sys, openbms.cli; print('matplotlib' in sys.modules, 'openbms.scenario.runner' in sys.modules)"
    )
    assert loaded.split() == ["False", "False"]


def test_version_option_prints_the_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def test_output_files_and_folder_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        result = runner.invoke(app, ["simulate", str(FILES / "short.yaml"), "--out", str(tmp_path / "run")])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["events.jsonl", "plot.png", "result.json", "telemetry.csv"]
    for name in names:
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name


def test_out_that_is_a_file_exits_2_before_running(tmp_path: Path) -> None:
    taken = tmp_path / "results.txt"
    taken.write_text("keep me\n")
    for out in (taken, taken / "run"):
        result = runner.invoke(app, ["simulate", str(FILES / "short.yaml"), "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert "is a file" in result.output
        assert result.output.count("\n") == 1  # one sentence, no progress and no summary
    assert taken.read_text() == "keep me\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_an_unwritable_folder_exits_2_before_running(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = runner.invoke(app, ["simulate", str(FILES / "short.yaml"), "--out", str(locked / "run")])
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert "not writable" in result.output
