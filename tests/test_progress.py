"""A long run is never silent in a pipe or a CI log: a progress line on stderr every few seconds of
wall time, with the simulated time done, the speed against real time and the time left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from openbms import cli
from openbms.cli import PipeProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_interval_with_the_time_left() -> None:
    clock, lines = Clock(), []
    progress = PipeProgress("a day", 86400.0, lines.append, every_s=5.0, clock=clock)
    clock.now += 4.0
    progress(3600.0)
    assert lines == []  # not yet 5 s of wall time
    clock.now += 6.0  # 10 s of wall time, a quarter of the day simulated: 30 s left at this pace
    progress(21600.0)
    assert lines == ["a day: 6.00 h of 24.00 h simulated (25 %), 2,160× real time, about 30.0 s left\n"]
    clock.now += 1.0
    progress(22000.0)
    assert len(lines) == 1  # the next line only 5 s later


def test_a_simulation_in_a_pipe_prints_progress_lines_on_stderr(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: an idle hour\npack: {series: 4, capacity_ah: 50, soc: 0.5}\ntimeline:\n  - run: 1h\n")
    code = (
        "import sys; from openbms import cli; cli.PIPE_PROGRESS_EVERY_S = 0.0; "
        "sys.argv = ['openbms', 'simulate', sys.argv[1]]; cli.main()"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(scenario)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "simulated (" in line]
    assert lines, proc.stderr
    assert lines[-1].startswith("an idle hour: ") and "of 60.0 min simulated" in lines[-1]
    assert "× real time" in lines[-1] and "left" in lines[-1]


@pytest.mark.parametrize("json_out", [True])
def test_json_output_stays_free_of_progress_lines(tmp_path: Path, json_out: bool) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: idle\npack: {series: 4, capacity_ah: 50, soc: 0.5}\ntimeline:\n  - run: 10min\n")
    code = (
        "import sys; from openbms import cli; cli.PIPE_PROGRESS_EVERY_S = 0.0; "
        "sys.argv = ['openbms', 'simulate', sys.argv[1], '--json']; cli.main()"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(scenario)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "simulated (" not in proc.stdout
    assert cli.PIPE_PROGRESS_EVERY_S > 0
