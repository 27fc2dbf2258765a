"""Compare the twin's cell voltage with a live PyBaMM Thevenin run on the same drive cycle.

Why this exists: ``tests/twin/test_pybamm_reference.py`` checks the twin against a PyBaMM trace
committed to ``tests/data/pybamm_thevenin`` so the test suite does not need PyBaMM. This script
is the live version of that test: it runs PyBaMM now (``pybamm_reference.run_pybamm``) and the
twin (the same scenario file the test plays), so a change on either side -- a new PyBaMM, a
new twin -- is seen without regenerating the reference files first::

    python bench/pybamm_compare.py

It prints the RMSE and the largest error of the twin's cell voltage against PyBaMM's (mV), and
each side's wall time. Exit status: 1 if the RMSE exceeds 2 mV (or the scenario's own
expectations fail, or the drive cycle no longer matches the committed one), 0 otherwise,
including when PyBaMM is not installed (the comparison is then skipped).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import pybamm_reference as ref  # noqa: E402  (bench/ is not a package)

from openbms.scenario.runner import ScenarioRunner  # noqa: E402
from openbms.scenario.schema import load_scenario  # noqa: E402

DATA = ref.REPO_ROOT / "tests" / "data" / "pybamm_thevenin"
# Telemetry columns: t_s, pack_v, current_a, soc, state, charge_fet, discharge_fet, cell_v_1, ...
CELL_V_1 = 7
RMSE_LIMIT_MV = 2.0
SEED = 42  # the seed the committed drive_cycle.csv was made with


def main(argv: list[str] | None = None) -> int:
    """Run both models, print the errors and wall times; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        type=Path,
        default=DATA / "scenario.yaml",
        help="twin scenario (default: tests/data/pybamm_thevenin/scenario.yaml)",
    )
    parser.add_argument(
        "--limit-mv",
        type=float,
        default=RMSE_LIMIT_MV,
        help=f"largest RMSE that passes, mV (default: {RMSE_LIMIT_MV})",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")  # no interactive opt-in prompt
    try:
        import pybamm  # noqa: F401
    except ImportError as err:
        print(f"PyBaMM is not installed ({err}); skipping the live comparison.")
        print("Install it with: pip install 'openbms[pybamm]'")
        return 0

    # The twin reads drive_cycle.csv; PyBaMM gets the cycle regenerated. They must agree.
    current = ref.make_drive_cycle(SEED)
    committed = np.loadtxt(DATA / "drive_cycle.csv", delimiter=",", skiprows=1)[:, 1]
    if committed.shape != current.shape or np.max(np.abs(committed - current)) > 5e-4:
        print(f"FAIL: make_drive_cycle({SEED}) no longer matches {DATA / 'drive_cycle.csv'}")
        return 1

    ocv_soc, ocv_v = ref.load_ocv_table(ref.DEFAULT_OCV)
    start = time.perf_counter()
    trace = ref.run_pybamm(current, ocv_soc, ocv_v)
    pybamm_wall = time.perf_counter() - start

    start = time.perf_counter()
    scenario, steps = load_scenario(args.scenario)
    runner = ScenarioRunner(scenario, steps)
    result = runner.run()
    twin_wall = time.perf_counter() - start
    telemetry = result.telemetry.array()
    t_twin, v_twin = telemetry[:, 0], telemetry[:, CELL_V_1]

    # PyBaMM's trace is sampled at t_s = 0..3600; take the twin's rows at the same instants.
    index = np.searchsorted(t_twin, trace.t_s - 1e-6)
    if index.max() >= len(t_twin) or not np.allclose(t_twin[index], trace.t_s, atol=1e-6):
        print(f"FAIL: the twin's telemetry (t_s {t_twin[0]}..{t_twin[-1]}) misses PyBaMM's times")
        return 1
    error_v = v_twin[index] - trace.voltage_v
    rmse_mv = float(np.sqrt(np.mean(error_v**2))) * 1000.0
    worst = int(np.argmax(np.abs(error_v)))
    soc_error = float(runner.twin.pack.cells.soc[0, 0]) - float(trace.soc[-1])

    # How far the live PyBaMM is from the committed reference (a new PyBaMM shows up here).
    reference = np.loadtxt(DATA / "reference.csv", delimiter=",", skiprows=1)
    drift_mv = float(np.max(np.abs(reference[:, 1] - trace.voltage_v))) * 1000.0

    print(f"PyBaMM {trace.pybamm_version} Thevenin vs openbms twin, {len(trace.t_s)} samples")
    print(f"  RMSE            {rmse_mv:.3e} mV (limit {args.limit_mv:g} mV)")
    print(f"  max |error|     {abs(error_v[worst]) * 1000.0:.3e} mV at t = {trace.t_s[worst]:g} s")
    print(f"  final SOC error {soc_error:+.2e}")
    print(f"  live PyBaMM vs committed reference.csv: max {drift_mv:.3e} mV (6-decimal CSV)")
    print(
        f"  wall time: PyBaMM {pybamm_wall:.2f} s (solve {trace.solve_wall_time_s:.2f} s, "
        f"integration {trace.integration_time_s:.2f} s); twin {twin_wall:.2f} s "
        f"(scenario load + {len(t_twin) - 1} steps + brain)"
    )

    status = 0
    if not result.passed:
        failed = [e.message for e in result.expectations if not e.ok]
        print(f"FAIL: the scenario's expectations failed: {failed or result.error}")
        status = 1
    if rmse_mv > args.limit_mv:
        print(f"FAIL: RMSE {rmse_mv:.3e} mV exceeds {args.limit_mv:g} mV")
        status = 1
    if status == 0:
        print("PASS")
    return status


if __name__ == "__main__":
    sys.exit(main())
