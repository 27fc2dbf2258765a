"""The twin's cell model against PyBaMM's Thevenin model on the same cell and drive cycle.

The reference trace was made once by ``bench/pybamm_reference.py`` (PyBaMM 26.10) and committed
with it; ``bench/pybamm_compare.py`` repeats the comparison live when PyBaMM is installed.
"""

from pathlib import Path

import numpy as np
import pytest

from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

DATA = Path(__file__).parent.parent / "data" / "pybamm_thevenin"


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_terminal_voltage_rmse_against_pybamm_is_at_most_2_mv(engine: str) -> None:
    """Both engines hold the physics to PyBaMM (the fast one runs its quiet cycles compiled)."""
    scenario, steps = load_scenario(DATA / "scenario.yaml")
    runner = ScenarioRunner(scenario, steps, engine=engine)
    result = runner.run()
    assert result.passed, [e.message for e in result.expectations]
    telemetry = result.telemetry.array()
    reference = np.loadtxt(DATA / "reference.csv", delimiter=",", skiprows=1)
    t_twin, v_twin = telemetry[:, 0], telemetry[:, 7]
    assert np.allclose(t_twin, reference[:, 0])
    rmse_v = float(np.sqrt(np.mean((v_twin - reference[:, 1]) ** 2)))
    assert rmse_v <= 0.002, f"RMSE {rmse_v * 1000:.3f} mV"
    # The same charge throughput: the cell ends at PyBaMM's SOC.
    assert abs(float(runner.twin.pack.cells.soc[0, 0]) - reference[-1, 2]) < 1e-5
