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
