"""What a new user meets first: a quick --version, output files they can share, --out checked
before the run, and a plot that shows what the BMS did."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from openbms import __version__
from openbms.cli import app

if TYPE_CHECKING:
    from openbms.scenario.runner import RunResult

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


def _run(path: Path) -> RunResult:
    from openbms.diagnose.from_twin import diagnosis_of
    from openbms.scenario.runner import ScenarioRunner
    from openbms.scenario.schema import load_scenario

    scenario, steps = load_scenario(path)
    return ScenarioRunner(scenario, steps, diagnoser=diagnosis_of).run()


def test_plot_names_the_trip_shows_the_short_and_draws_the_fets_on_their_own_axis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt

    from openbms.scenario import plot

    scenario = tmp_path / "short.yaml"
    scenario.write_text(
        "name: short on a small pack\n"
        "pack: {chemistry: lfp, series: 4, capacity_ah: 50, soc: 0.5}\n"
        "dt: 100ms\n"
        "timeline:\n"
        "  - load: {current_a: 70}\n"  # 1.4 C: the discharge over-current warning (1.3 C)
        "  - run: 5s\n"
        "  - disconnect: load\n"
        "  - short: {resistance_ohm: 0.005}\n"
        "  - run: 1s\n"
    )
    result = _run(scenario)
    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at
    labels = plot.plot_run(result, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    assert any(label.startswith("▲ short_circuit") for label in labels)
    assert any("warning discharge_overcurrent" in label for label in labels)
    short = [label for label in labels if label.startswith("short circuit peaked at")]
    assert short and " A and was cut within one control step" in short[0]
    (figure,) = figures
    fet_axes = [ax for ax in figure.axes if ax.get_ylabel() == "FET"]
    assert len(fet_axes) == 1
    assert {line.get_label() for line in fet_axes[0].get_lines()} >= {"charge FET", "discharge FET"}
    monkeypatch.undo()
    plt.close(figure)


def test_plot_labels_the_cell_that_tripped() -> None:
    from openbms.scenario.plot import event_label

    event = {"t_s": 1.0, "kind": "fault_set", "fault": "cell_undervoltage", "cell": 15}
    assert event_label(event, 100.0) == "▲ cell_undervoltage (cell 15)"
