"""Measure how many cell-steps per second the twin plus the BMS brain sustain, next to PyBaMM.

Why this exists: the twin is meant to run whole fleets faster than real time (aims: 300,000
cell-steps/s for one 16-cell pack and 10 million for 10,000 such packs), and a claim of speed
means little without a yardstick. So the same run also times PyBaMM's Thevenin model (the one
``bench/pybamm_reference.py`` validates the twin against) on comparable work: one cell, and a
batch of M cells solved in one call, both with output every 0.1 s. Everything lands in one
table so the comparison is read in one place::

    python bench/throughput.py                  # a simulated hour; the 160,000-cell case ~15 min
    python bench/throughput.py --duration 60    # a quick look

A cell-step is one cell advanced by one 0.1 s step: the twin rows count packs x 16 x steps
(each step is pack physics + AFE + brain: protections, SOC, balancing, limits); the PyBaMM rows
count cells x (duration / 0.1 s) output samples. PyBaMM's adaptive integrator takes far fewer
internal steps than it reports samples, which is PyBaMM's advantage and is left in on purpose.
Only the stepping/solving is timed: building the twin or discretising the PyBaMM model is not.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).parent))

import pybamm_reference as ref  # noqa: E402  (bench/ is not a package)

from openbms.chemistry import load_chemistry  # noqa: E402
from openbms.profiles import load_profile  # noqa: E402
from openbms.twin.cells import Spread  # noqa: E402
from openbms.twin.pack import Topology  # noqa: E402
from openbms.twin.simulator import ALL_PACKS, Twin, TwinConfig  # noqa: E402

FloatArray = npt.NDArray[np.float64]

DT_S = 0.1
SERIES = 16
CAPACITY_AH = 100.0  # twin cell; 0.5 C = 50 A
C_RATE = 0.5
START_SOC = 0.9  # 0.9 -> ~0.4 after an hour at 0.5 C: no protection should trip
SPREAD = Spread(capacity=0.02, resistance=0.05, soc=0.01, seed=7)
WARMUP_STEPS = 10
AIM_SMALL = 300_000.0  # cell-steps/s, 1 pack x 16 cells
AIM_LARGE = 10_000_000.0  # cell-steps/s, 160,000 cells
PYBAMM_RTOL = 1e-10  # as pybamm_reference.run_pybamm; on this linear ECM the speed barely moves
PYBAMM_ATOL = 1e-10


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    case: str
    cells: int
    steps: int
    wall_s: float
    aim: float | None = None

    @property
    def rate(self) -> float:
        """Cell-steps per wall second."""
        return self.cells * self.steps / self.wall_s if self.wall_s > 0 else math.inf


def make_twin(packs: int, dt_s: float = DT_S, soc: float = START_SOC) -> Twin:
    """``packs`` 16S1P LFP packs of ``CAPACITY_AH`` cells with the bench's cell spread, no load yet
    (also used by ``bench/engine.py``)."""
    return Twin(
        TwinConfig(
            cell=load_chemistry("lfp").scaled_to(CAPACITY_AH),
            topology=Topology(SERIES, 1),
            profile=load_profile("lfp"),
            packs=packs,
            soc=soc,
            temperature_c=25.0,
            spread=SPREAD,
            dt_s=dt_s,
        ),
        keep_events=False,
    )


def time_twin(packs: int, steps: int, aim: float, notes: list[str]) -> Row:
    """Run ``packs`` 16S1P LFP packs at 0.5 C discharge for ``steps`` cycles; time the stepping."""
    twin = make_twin(packs)
    twin.connect_load(ALL_PACKS, current_a=C_RATE * CAPACITY_AH)
    twin.run(WARMUP_STEPS)

    label = f"openbms {packs:,}x{SERIES}"
    done = 0
    start = time.perf_counter()
    for tenth in range(1, 11):  # progress every 10 %, on stderr so stdout keeps only the table
        target = steps * tenth // 10
        twin.run(target - done)
        done = target
        elapsed = time.perf_counter() - start
        print(f"  {label}: {tenth * 10:3d} %  {elapsed:7.1f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start

    # The load must still be on for the whole batch, or the rate was measured on idle packs.
    on = int(np.count_nonzero(twin.pack.discharge_fet))
    current = np.asarray(twin.last_measurements.current_a, dtype=np.float64)
    soc = float(np.mean(twin.pack.cells.soc))
    notes.append(
        f"{label}: discharge FET on in {on:,}/{packs:,} packs, measured current "
        f"{current.min():.1f}..{current.max():.1f} A, mean cell SOC {START_SOC} -> {soc:.3f}"
    )
    return Row(f"openbms {packs:,}x{SERIES}", packs * SERIES, steps, wall, aim)


def time_pybamm(
    duration_s: float, batch: int, threads: int, load: str, notes: list[str], drive_scale: float = 1.0
) -> list[Row]:
    """Time PyBaMM's Thevenin model (1 RC pair): one cell, then ``batch`` cells in one solve.

    The current is an input parameter (a constant 0.5 C, or ``drive_scale`` times the +-3 C drive
    cycle of ``pybamm_reference.make_drive_cycle``), and so
    are capacity, R0 and initial SOC, drawn with the twin's spread; R1, C1 and the OCV table are
    those of ``pybamm_reference.py``. IDAKLU gets all input sets in one call (its batched
    path) and returns only the voltage, sampled every 0.1 s.
    """
    os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")  # no interactive opt-in prompt
    import pybamm

    ocv_soc, ocv_v = ref.load_ocv_table(ref.DEFAULT_OCV)
    n_out = int(round(duration_s / DT_S))
    t_interp = np.linspace(0.0, n_out * DT_S, n_out + 1)
    t_end = float(t_interp[-1])

    if load == "drive":
        cycle = ref.make_drive_cycle()
        seconds = int(math.ceil(t_end))
        cycle = np.tile(cycle, -(-seconds // len(cycle)))[:seconds]
        knots = ref.step_current_breakpoints(-cycle)  # PyBaMM: positive = discharge
        t_eval = knots[:, 0]
        t_eval[-1] = t_end  # no-op unless the duration is not a whole second

        def drive_current(t: object) -> object:
            profile = pybamm.Interpolant(knots[:, 0], knots[:, 1], t, name="drive cycle")
            return pybamm.InputParameter("Current scale") * profile

        current: object = drive_current
        current_key, current_value, soc0 = "Current scale", drive_scale, ref.INITIAL_SOC
    else:
        t_eval = np.array([0.0, t_end])
        current = "[input]"
        current_key, current_value = "Current function [A]", C_RATE * ref.CAPACITY_AH
        soc0 = START_SOC

    def ocv_function(soc: object) -> object:
        return pybamm.Interpolant(ocv_soc, ocv_v, soc, name="OCV Prada2013", interpolator="linear")

    started = time.perf_counter()
    model = pybamm.equivalent_circuit.Thevenin(options={"number of rc elements": 1})
    parameters = model.default_parameter_values
    parameters.update(
        {
            "Cell capacity [A.h]": "[input]",
            "Nominal cell capacity [A.h]": ref.CAPACITY_AH,
            "Initial SoC": "[input]",
            "Open-circuit voltage [V]": ocv_function,
            "R0 [Ohm]": "[input]",
            "R1 [Ohm]": ref.R1_OHM,
            "C1 [F]": ref.C1_F,
            "Element-1 initial overpotential [V]": 0.0,
            "Current function [A]": current,
            "Entropic change [V/K]": 0.0,
            "Initial temperature [K]": ref.TEMPERATURE_K,
            "Ambient temperature [K]": ref.TEMPERATURE_K,
            "Cell thermal mass [J/K]": 1e12,
            "Jig thermal mass [J/K]": 1e12,
            "Lower voltage cut-off [V]": 0.0,
            "Upper voltage cut-off [V]": 10.0,
        }
    )
    solver = pybamm.IDAKLUSolver(
        rtol=PYBAMM_RTOL,
        atol=PYBAMM_ATOL,
        output_variables=["Voltage [V]"],  # the full state of 1,000 cells x 36,001 samples is GBs
        options={"num_threads": threads},
    )
    simulation = pybamm.Simulation(model, parameter_values=parameters, solver=solver)
    simulation.build()
    built = simulation.built_model

    rng = np.random.default_rng(SPREAD.seed)
    inputs = [
        {
            current_key: current_value,
            "Cell capacity [A.h]": float(ref.CAPACITY_AH * (1 + SPREAD.capacity * rng.standard_normal())),
            "R0 [Ohm]": float(ref.R0_OHM * (1 + SPREAD.resistance * rng.standard_normal())),
            "Initial SoC": float(soc0 + SPREAD.soc * rng.standard_normal()),
        }
        for _ in range(batch)
    ]
    # Warm-up: the first solve sets the solver up (casadi functions, IDA memory); not timed.
    solver.solve(built, np.array([0.0, 1.0]), inputs=inputs[:1], t_interp=np.array([0.0, 1.0]))
    setup_s = time.perf_counter() - started

    rows: list[Row] = []
    for label, sets in (("1 cell", inputs[:1]), (f"batch of {batch:,}", inputs)):
        print(f"  PyBaMM {label}: solving ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        solutions = solver.solve(built, t_eval, inputs=sets, t_interp=t_interp)
        wall = time.perf_counter() - start
        if not isinstance(solutions, list):
            solutions = [solutions]
        voltage = np.array([s["Voltage [V]"](t_interp) for s in solutions])
        if voltage.shape != (len(sets), n_out + 1) or not np.all(np.isfinite(voltage)):
            raise RuntimeError(f"PyBaMM returned voltages of shape {voltage.shape}")
        integration = float(solutions[0].integration_time.value)
        notes.append(
            f"PyBaMM {label}: solver integration time {integration:.4f} s of {wall:.4f} s wall; "
            f"V {voltage.min():.4f}..{voltage.max():.4f} V"
        )
        rows.append(Row(f"PyBaMM Thevenin, {label}", len(sets), n_out, wall))
    notes.append(
        f"PyBaMM {pybamm.__version__}: {load} load, IDAKLU rtol={PYBAMM_RTOL:g} atol={PYBAMM_ATOL:g}"
        f", num_threads={threads}; model build + discretisation + solver set-up {setup_s:.2f} s"
        " (not timed)"
    )
    return rows


def pybamm_missing() -> str | None:
    """Return why PyBaMM cannot be imported, or None when it can."""
    os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")  # no interactive opt-in prompt
    try:
        import pybamm  # noqa: F401
    except ImportError as err:
        return str(err)
    return None


def print_table(rows: list[Row], small: Row, large: Row) -> None:
    """Print every row with its ratio to the aim and to the two openbms rows."""
    headers = (
        "case",
        "cells",
        "steps",
        "wall s",
        "cell-steps/s",
        "vs aim",
        f"vs {small.case}",
        f"vs {large.case}",
    )
    lines = [
        (
            row.case,
            f"{row.cells:,}",
            f"{row.steps:,}",
            f"{row.wall_s:.4f}",
            f"{row.rate:,.0f}",
            f"{row.rate / row.aim:.3f} (aim {row.aim:,.0f})" if row.aim else "-",
            f"{row.rate / small.rate:.3f}",
            f"{row.rate / large.rate:.3f}",
        )
        for row in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(fmt(headers))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(fmt(line))
    print("ratios: this row's cell-steps/s divided by the aim's or the named row's (> 1 = faster)")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: time the twin cases, then PyBaMM if it is installed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=3600.0,
        help="simulated seconds per case, at dt = 0.1 s (default: 3600)",
    )
    parser.add_argument("--packs", type=int, default=10_000, help="packs in the big batch (default: 10000)")
    parser.add_argument(
        "--pybamm-batch",
        type=int,
        default=1000,
        help="cells (input sets) in PyBaMM's batched solve (default: 1000)",
    )
    parser.add_argument(
        "--pybamm-threads",
        type=int,
        default=1,
        help="IDAKLU num_threads for the batch; 1 matches the twin's single thread (default: 1)",
    )
    parser.add_argument(
        "--pybamm-load",
        choices=("constant", "drive"),
        default="constant",
        help="PyBaMM current: constant 0.5 C like the twin, or the +-3 C drive cycle",
    )
    parser.add_argument("--no-pybamm", action="store_true", help="skip the PyBaMM rows")
    args = parser.parse_args(argv)
    steps = int(round(args.duration / DT_S))
    if steps < 1 or args.packs < 1 or args.pybamm_batch < 1:
        parser.error("--duration must be >= 0.1 s and --packs, --pybamm-batch >= 1")

    print(
        f"openbms twin + brain, 16S1P LFP {CAPACITY_AH:g} Ah, {C_RATE} C discharge, cell spread, "
        f"dt = {DT_S} s, {steps:,} steps ({steps * DT_S:g} s simulated); "
        f"numpy {np.__version__}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}",
        flush=True,
    )
    load1, _, _ = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs, 1-minute load average {load1:.2f} at start (other busy processes slow every row)",
        flush=True,
    )
    notes: list[str] = []
    small = time_twin(1, steps, AIM_SMALL, notes)
    large = time_twin(args.packs, steps, AIM_LARGE, notes)
    rows = [small, large]

    if args.no_pybamm:
        notes.append("PyBaMM rows skipped (--no-pybamm)")
    elif (missing := pybamm_missing()) is not None:
        notes.append(f"PyBaMM is not installed ({missing}): its rows are skipped (pip install 'openbms[pybamm]')")
    else:
        rows += time_pybamm(args.duration, args.pybamm_batch, args.pybamm_threads, args.pybamm_load, notes)

    print()
    print_table(rows, small, large)
    print()
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
