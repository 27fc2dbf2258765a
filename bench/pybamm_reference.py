"""Generate the PyBaMM Thevenin reference trace that openbms' cell twin is tested against.

Why this exists: openbms has its own equivalent-circuit twin of a cell. To show that it is
right (and not merely self-consistent) we compare it with an independent, widely used
implementation: PyBaMM's ``pybamm.equivalent_circuit.Thevenin`` model. PyBaMM is an optional
extra of the project, so the unit test does not run PyBaMM; it reads the CSV files this script
writes (``drive_cycle.csv``, ``reference.csv``, ``ocv.csv``) and requires the twin to match the
PyBaMM voltage to an RMSE of 2 mV or better. Re-run this script to regenerate them::

    pip install "pybamm>=25.1"
    python bench/pybamm_reference.py --out tests/data/pybamm_thevenin

The cell is one constant-parameter Thevenin model (one RC pair): capacity 5.0 Ah, initial
SOC 0.5, OCV(SOC) linearly interpolated from the Prada 2013 LFP table, R0 = 8 mOhm,
R1 = 5 mOhm, C1 = 4000 F, coulombic efficiency 1, isothermal at 25 degC (no entropic term, no
temperature dependence of any parameter).

Conventions of the files written:

* ``current_a`` is POSITIVE WHEN CHARGING. PyBaMM's "Current [A]" is positive on discharge, so
  the current is negated on the way into PyBaMM.
* The current is a zero-order hold: ``current_a`` at row ``t_s = k`` is applied over the whole
  interval ``[k, k+1)`` s; there are 3600 rows (k = 0..3599).
* ``reference.csv`` has rows ``t_s = 0..3600`` (3601 rows). ``voltage_v`` at ``t_s = k >= 1`` is
  the terminal voltage at the END of interval ``[k-1, k)``, i.e. the left limit V(k-), after
  ``current_a[k-1]`` has flowed for 1 s; it includes the ohmic drop ``R0 * current_a[k-1]``.
  At ``t_s = 0`` it is the initial rest voltage OCV(0.5) (no current yet, RC pair relaxed).
  ``soc`` is the state of charge at the same instant.

The script is importable: :func:`make_drive_cycle` and :func:`run_pybamm` can be reused by a
benchmark. PyBaMM is imported lazily, so :func:`make_drive_cycle` works without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("tests/data/pybamm_thevenin")
DEFAULT_OCV = REPO_ROOT / DEFAULT_OUT / "ocv.csv"

# Cell and cycle constants (see module docstring).
CAPACITY_AH = 5.0
INITIAL_SOC = 0.5
R0_OHM = 0.008
R1_OHM = 0.005
C1_F = 4000.0
TEMPERATURE_K = 298.15
DURATION_S = 3600
I_MAX_A = 3.0 * CAPACITY_AH  # 3C
SOC_GUARD = (0.3, 0.7)  # generator steers the SOC to stay inside this band
SOC_LIMITS = (0.2, 0.8)  # asserted on the final cycle
CURRENT_DECIMALS = 3  # the drive cycle is rounded to 1 mA so the CSV round-trips exactly
STEP_EPS_S = 1e-6  # width of the linear ramp PyBaMM sees at each current step


def make_drive_cycle(seed: int = 42) -> FloatArray:
    """Return the 1 h, 1 s drive cycle: 3600 currents in A, positive = charging.

    Element ``k`` is held over ``[k, k+1)`` s. Pulses have random durations of 5-60 s and
    random amplitudes in [-15 A, +15 A] (+-3C of a 5 Ah cell); about one pulse in five is a
    rest (0 A). A pulse that would take the estimated SOC outside 0.3-0.7 has its sign
    flipped, then the mean of the non-rest samples is removed (so the net charge is ~0) and
    the values are clipped to +-15 A and rounded to 1 mA. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    current = np.zeros(DURATION_S, dtype=np.float64)
    soc = INITIAL_SOC
    t = 0
    while t < DURATION_S:
        duration = min(int(rng.integers(5, 61)), DURATION_S - t)
        amplitude = 0.0 if rng.random() < 0.2 else float(rng.uniform(-I_MAX_A, I_MAX_A))
        delta_soc = amplitude * duration / 3600.0 / CAPACITY_AH
        if not SOC_GUARD[0] <= soc + delta_soc <= SOC_GUARD[1]:
            amplitude, delta_soc = -amplitude, -delta_soc
        current[t : t + duration] = amplitude
        soc += delta_soc
        t += duration

    active = current != 0.0
    for _ in range(20):
        offset = current.sum() / max(int(active.sum()), 1)
        if abs(offset) < 1e-9:
            break
        current[active] = np.clip(current[active] - offset, -I_MAX_A, I_MAX_A)
    current = np.round(current, CURRENT_DECIMALS) + 0.0  # "+ 0.0" turns -0.0 into 0.0

    soc_trace = INITIAL_SOC + np.concatenate(([0.0], np.cumsum(current))) / 3600.0 / CAPACITY_AH
    if soc_trace.min() < SOC_LIMITS[0] or soc_trace.max() > SOC_LIMITS[1]:
        raise RuntimeError(f"drive cycle leaves the SOC band {SOC_LIMITS}")
    return current


def step_current_breakpoints(current_a: FloatArray, eps: float = STEP_EPS_S) -> FloatArray:
    """Return ``(t, i)`` knots, shape (n, 2), whose linear interpolation is the ZOH current.

    PyBaMM interpolates a drive cycle linearly, so each step is given two knots: the value
    ``current_a[k-1]`` at ``t = k`` and ``current_a[k]`` at ``t = k + eps``. The step therefore
    happens in the first ``eps`` seconds of each interval (a charge error of at most
    ``|dI| * eps / 2`` A s per step, ~1e-5 A s here) and the current at every integer time
    ``k >= 1`` is exactly ``current_a[k-1]``: the voltage PyBaMM reports at ``t = k`` is the
    left limit V(k-) the reference convention asks for. At ``t = 0`` the current is 0 (rest).
    Units are the caller's (sign is not changed here).
    """
    n = len(current_a)
    previous = np.concatenate(([0.0], current_a))  # value at t = 0..n
    t_knots = np.empty(2 * n + 1)
    i_knots = np.empty(2 * n + 1)
    t_knots[0::2] = np.arange(n + 1, dtype=np.float64)
    i_knots[0::2] = previous
    t_knots[1::2] = np.arange(n, dtype=np.float64) + eps
    i_knots[1::2] = current_a
    return np.column_stack((t_knots, i_knots))


@dataclass(frozen=True)
class ReferenceTrace:
    """PyBaMM's result sampled at every second boundary ``t_s = 0..len(current)``."""

    t_s: FloatArray
    voltage_v: FloatArray
    soc: FloatArray
    current_a: FloatArray  # PyBaMM's current at t_s, converted to positive = charging
    current_mid_a: FloatArray  # PyBaMM's current at t_s + 0.5 (t_s < end), positive = charging
    cell_temperature_c: FloatArray
    solve_wall_time_s: float  # time spent in Simulation.solve (build + set-up + integration)
    integration_time_s: float  # the solver's own integration time
    pybamm_version: str


def load_ocv_table(path: Path) -> tuple[FloatArray, FloatArray]:
    """Read an OCV table with header ``soc,ocv_v``; return (soc, ocv_v)."""
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    return data[:, 0].copy(), data[:, 1].copy()


def run_pybamm(
    current_a: FloatArray,
    ocv_soc: FloatArray,
    ocv_v: FloatArray,
    *,
    capacity_ah: float = CAPACITY_AH,
    initial_soc: float = INITIAL_SOC,
    r0_ohm: float = R0_OHM,
    r1_ohm: float = R1_OHM,
    c1_f: float = C1_F,
    temperature_k: float = TEMPERATURE_K,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    eps: float = STEP_EPS_S,
) -> ReferenceTrace:
    """Run ``pybamm.equivalent_circuit.Thevenin`` (1 RC pair) on a 1 s ZOH current profile.

    ``current_a`` is positive = charging, one value per second; it is negated for PyBaMM.
    Every parameter of the ECM_Example set that the model reads is overwritten, so nothing
    of that 100 Ah example cell leaks in. The thermal sub-model cannot be switched off in
    PyBaMM's Thevenin model; it is neutralised instead: R0/R1/C1 ignore temperature, the
    entropic change is 0 and the thermal masses are huge, so the cell stays at 25 degC.
    The IDAKLU solver is stopped at every knot of the current (``t_eval``), so it never
    integrates across a step, and the output is interpolated at the integer seconds.
    """
    os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")  # no interactive opt-in prompt
    import pybamm

    current_a = np.asarray(current_a, dtype=np.float64)
    knots = step_current_breakpoints(-current_a, eps)  # PyBaMM: positive = discharge
    t_end = float(len(current_a))

    def current_function(t: object) -> object:
        return pybamm.Interpolant(knots[:, 0], knots[:, 1], t, name="drive cycle")

    def ocv_function(soc: object) -> object:
        return pybamm.Interpolant(ocv_soc, ocv_v, soc, name="OCV Prada2013", interpolator="linear")

    def r0_function(temperature_c: object, current: object, soc: object) -> float:
        return r0_ohm

    def r1_function(temperature_c: object, current: object, soc: object) -> float:
        return r1_ohm

    def c1_function(temperature_c: object, current: object, soc: object) -> float:
        return c1_f

    def no_entropic_change(ocv: object, temperature_c: object) -> float:
        return 0.0

    model = pybamm.equivalent_circuit.Thevenin(options={"number of rc elements": 1})
    parameters = model.default_parameter_values  # ECM_Example; every entry is replaced below
    parameters.update(
        {
            # "Cell capacity" is what the SoC ODE uses; "Nominal" only sets C-rates.
            "Cell capacity [A.h]": capacity_ah,
            "Nominal cell capacity [A.h]": capacity_ah,
            "Initial SoC": initial_soc,
            "Open-circuit voltage [V]": ocv_function,
            "R0 [Ohm]": r0_function,
            "R1 [Ohm]": r1_function,
            "C1 [F]": c1_function,
            "Element-1 initial overpotential [V]": 0.0,
            "Current function [A]": current_function,
            "Entropic change [V/K]": no_entropic_change,
            "Initial temperature [K]": temperature_k,
            "Ambient temperature [K]": temperature_k,
            "Cell thermal mass [J/K]": 1e12,
            "Jig thermal mass [J/K]": 1e12,
            # Cut-offs far outside the 2.0-3.6 V OCV range: no event may stop the run.
            "Lower voltage cut-off [V]": 0.0,
            "Upper voltage cut-off [V]": 10.0,
        }
    )

    solver = pybamm.IDAKLUSolver(rtol=rtol, atol=atol)
    simulation = pybamm.Simulation(model, parameter_values=parameters, solver=solver)
    t_sample = np.arange(len(current_a) + 1, dtype=np.float64)
    start = time.perf_counter()
    solution = simulation.solve(t_eval=knots[:, 0], t_interp=t_sample)
    wall = time.perf_counter() - start

    if solution.t[-1] < t_end:
        raise RuntimeError(f"PyBaMM stopped early at t = {solution.t[-1]} s")
    integration_time = float(solution.integration_time.value)
    return ReferenceTrace(
        t_s=t_sample,
        voltage_v=np.asarray(solution["Voltage [V]"](t_sample), dtype=np.float64),
        soc=np.asarray(solution["SoC"](t_sample), dtype=np.float64),
        current_a=-np.asarray(solution["Current [A]"](t_sample), dtype=np.float64),
        current_mid_a=-np.asarray(solution["Current [A]"](t_sample[:-1] + 0.5), dtype=np.float64),
        cell_temperature_c=np.asarray(solution["Cell temperature [degC]"](t_sample), dtype=np.float64),
        solve_wall_time_s=wall,
        integration_time_s=integration_time,
        pybamm_version=str(pybamm.__version__),
    )


def write_outputs(out: Path, current_a: FloatArray, trace: ReferenceTrace, ocv: Path) -> None:
    """Write drive_cycle.csv, reference.csv and (if it is not already there) ocv.csv."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "drive_cycle.csv", "w", encoding="utf-8", newline="\n") as f:
        f.write("t_s,current_a\n")
        for k, value in enumerate(current_a):
            f.write(f"{k},{value:.{CURRENT_DECIMALS}f}\n")
    with open(out / "reference.csv", "w", encoding="utf-8", newline="\n") as f:
        f.write("t_s,voltage_v,soc\n")
        for k, (v, s) in enumerate(zip(trace.voltage_v, trace.soc, strict=True)):
            f.write(f"{k},{v:.6f},{s:.6f}\n")
    target = out / "ocv.csv"
    if not target.exists() or not target.samefile(ocv):
        shutil.copyfile(ocv, target)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: build the cycle, run PyBaMM, write the CSV files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output directory (default: <repo>/{DEFAULT_OUT})",
    )
    parser.add_argument(
        "--ocv",
        type=Path,
        default=DEFAULT_OCV,
        help="OCV table, columns soc,ocv_v (default: the ocv.csv already in the reference dir)",
    )
    parser.add_argument("--seed", type=int, default=42, help="drive-cycle seed (default: 42)")
    args = parser.parse_args(argv)
    out: Path = args.out if args.out is not None else REPO_ROOT / DEFAULT_OUT

    current = make_drive_cycle(args.seed)
    ocv_soc, ocv_v = load_ocv_table(args.ocv)
    trace = run_pybamm(current, ocv_soc, ocv_v)

    # PyBaMM must have seen the step-wise current: current[k] inside [k, k+1) (checked at
    # k + 0.5) and current[k-1] at the sample instant t = k (0 A at t = 0).
    expected = np.concatenate(([0.0], current))
    worst = max(
        float(np.max(np.abs(trace.current_a - expected))),
        float(np.max(np.abs(trace.current_mid_a - current))),
    )
    if worst > 1e-9:
        raise RuntimeError(f"PyBaMM current differs from the ZOH profile by {worst} A")

    write_outputs(out, current, trace, args.ocv)
    print(
        f"PyBaMM {trace.pybamm_version}: solve {trace.solve_wall_time_s:.2f} s wall "
        f"(integration {trace.integration_time_s:.2f} s); "
        f"V {trace.voltage_v.min():.4f}..{trace.voltage_v.max():.4f} V, "
        f"SOC {trace.soc.min():.4f}..{trace.soc.max():.4f}, "
        f"T {trace.cell_temperature_c.min():.6f}..{trace.cell_temperature_c.max():.6f} degC; "
        f"wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
