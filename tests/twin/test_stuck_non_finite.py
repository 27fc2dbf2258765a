"""A sensor stuck at NaN or ±inf must really report it (issue 8, item 7): the AFE used NaN to
mean "not stuck", so injecting a NaN reading silently did nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from openbms.chemistry import load_chemistry
from openbms.cli import app
from openbms.profiles import load_profile
from openbms.twin.cells import Spread
from openbms.twin.faults import FaultSpec, inject, repair
from openbms.twin.pack import Topology
from openbms.twin.simulator import Twin, TwinConfig

READINGS = [math.nan, math.inf, -math.inf]


def _twin() -> Twin:
    return Twin(
        TwinConfig(
            cell=load_chemistry("lfp").scaled_to(50.0),
            topology=Topology(4, 1),
            profile=load_profile("lfp"),
            packs=1,
            soc=0.5,
            temperature_c=25.0,
            spread=Spread(),
            dt_s=0.1,
        )
    )


def _seen_by_the_brain(twin: Twin, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every Measurements the brain is handed; the brain itself is not run (its own NaN
    handling is another item of the issue)."""
    seen: list[Any] = []

    def spy(measurements: Any, t_s: float, running: Any = None) -> Any:
        seen.append(measurements)
        return twin.bms.limits, []

    monkeypatch.setattr(twin.bms, "step", spy)
    return seen


@pytest.mark.parametrize("reading", READINGS, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("sensor, field", [("cell_v_3", "cell_v"), ("cell_t_2", "cell_t_c"), ("current", "current_a")])
def test_a_stuck_sensor_reports_its_non_finite_reading(
    reading: float, sensor: str, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    twin = _twin()
    seen = _seen_by_the_brain(twin, monkeypatch)
    inject(twin, 0, FaultSpec(fault="sensor_stuck", sensor=sensor, value=reading))
    twin.step()
    values = np.asarray(getattr(seen[-1], field))[0]
    stuck = values if sensor == "current" else values[int(sensor.rsplit("_", 1)[1]) - 1]
    assert np.array_equal(np.asarray(stuck), np.asarray(reading), equal_nan=True)
    if sensor != "current":
        others = np.delete(values, int(sensor.rsplit("_", 1)[1]) - 1)
        assert np.isfinite(others).all()
    repair(twin, 0, FaultSpec(fault="sensor_stuck", sensor=sensor))
    twin.step()
    assert np.isfinite(np.asarray(getattr(seen[-1], field))).all()


def _refuse(token: str) -> float:
    raise ValueError(f"{token} is not JSON")


@pytest.mark.parametrize("reading", [".nan", ".inf", "-.inf"])
def test_a_cell_sensor_stuck_unreadable_trips_sensor_fault_end_to_end(reading: str, tmp_path: Path) -> None:
    path = tmp_path / "stuck.yaml"
    path.write_text(
        "name: stuck unreadable\n"
        "pack: {chemistry: lfp, series: 4, capacity_ah: 50, soc: 0.5}\n"
        "timeline:\n"
        "  - run: 2s\n"
        f"  - inject: {{fault: sensor_stuck, sensor: cell_v_3, value: {reading}}}\n"
        "  - run: 5s\n"
        "  - expect: {faults: [sensor_fault], charge_fet: off, discharge_fet: off}\n"
    )
    result = CliRunner().invoke(app, ["simulate", "--json", str(path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.splitlines()[-1], parse_constant=_refuse)
    assert doc["passed"] is True
    assert doc["final"]["cell_v"][2] is None  # the unreadable cell, as strict JSON


def test_json_output_is_strict_json() -> None:
    """--json turns a non-finite number into null instead of Python's NaN/Infinity tokens."""
    from openbms.cli import json_line

    line = json_line({"a": math.nan, "b": [1.0, math.inf, -math.inf], "c": {"d": (2.5, math.nan)}, "e": "NaN"})
    assert json.loads(line, parse_constant=_refuse) == {
        "a": None,
        "b": [1.0, None, None],
        "c": {"d": [2.5, None]},
        "e": "NaN",
    }
    assert line.endswith("\n") and line.count("\n") == 1


def test_simulate_json_parses_with_a_strict_parser() -> None:
    files = Path(__file__).parent.parent / "scenario" / "files"
    result = CliRunner().invoke(app, ["simulate", "--json", str(files / "short.yaml")])
    assert result.exit_code == 0
    json.loads(result.stdout.splitlines()[-1], parse_constant=_refuse)
