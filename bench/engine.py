"""Cell-steps per second of the fast engine, next to the Python reference, PyBaMM and memory bandwidth.

Why this exists: the compiled engine (``openbms.fast.engine.FastEngine``: the whole control cycle,
physics + AFE + the brain's quiet work, in one numba kernel, handing every discrete cycle to the
Python brain) is only worth its complexity if it is much faster than the reference it is tested
equal to (``Twin.step``), and a claim of speed needs yardsticks. One run times, on the same twins
and the same currents, both engines, PyBaMM's Thevenin model (``bench/pybamm_reference.py``) and a
plain NumPy copy of the kernel's per-cell state (roughly the fastest any per-cycle pass over that
state could go), and prints one table::

    PYTHONPATH=src python bench/engine.py                     # everything, about 10 minutes
    PYTHONPATH=src python bench/engine.py --duration 360      # a quick look (a tenth)
    PYTHONPATH=src python bench/engine.py --rows fast,memory  # only some rows (see --help)

How to read it. A cell-step is one cell advanced by one control cycle (physics + AFE + brain):
cells x cycles / wall seconds of stepping only (building twins, PyBaMM's model set-up and the
kernel's compile are never timed; the compile is printed on its own line). "vs <baseline>" is the
row's rate over the baseline row's (``--baseline``; > 1 = faster); "fast/ref" is the fast row's
rate over the reference row of the same case. The reference's long rows run fewer cycles than the
fast ones (the label says how many) and are rated per cycle: its cost per cycle is NumPy overhead,
nearly the same every cycle. The day row (dt = 1 s) is sampled for the reference in windows spread
over the day, the fast engine carrying the twin (untimed) between them, so it sees rest, discharge
and charge alike. PyBaMM rows count cells x output samples every 0.1 s; its adaptive integrator
takes far fewer internal steps than that (its advantage, left in on purpose). "target" is the aim
the project measures itself against; "met" says whether this run reached it (nothing is asserted).
Peak memory is measured in a child process so the other rows do not inflate it. "Where the time
goes" splits the fast 1 x 16 constant-current row into the compiled kernel (timed around the kernel
function itself), the engine's Python around it (argument set-up, the brain deciding each handed-over
cycle) and cycles stepped in Python (``why_not`` said the kernel may not run them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).parent))

import pybamm_reference as ref  # noqa: E402  (bench/ is not a package)
import throughput as tp  # noqa: E402

from openbms.fast import cycle as kernel_module  # noqa: E402
from openbms.fast.engine import FastEngine, why_not  # noqa: E402
from openbms.twin.simulator import ALL_PACKS, Twin  # noqa: E402

FloatArray = npt.NDArray[np.float64]

SERIES = tp.SERIES
CAPACITY_AH = tp.CAPACITY_AH
DT_S = tp.DT_S  # 0.1 s, as throughput.py and PyBaMM's output interval
DAY_DT_S = 1.0
DAY_S = 86_400.0
CONSTANT_A = tp.C_RATE * CAPACITY_AH  # 0.5 C discharge
DRIVE_SCALE = 0.25  # the +-3 C drive cycle of pybamm_reference at a quarter: +-0.75 C, under every warning
DRIVE_SOC = ref.INITIAL_SOC
MAX_CHUNK = 1 << 16
WARMUP_CYCLES = 10
TARGET_SMALL = 3_000_000.0
TARGET_LARGE = 40_000_000.0
DEFAULT_DURATION_S = 3600.0
BIG_PACKS = 10_000
PYBAMM_DRIVE_BATCH_SHORTEN = 20
MID_PACKS = 100


# ----------------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    """One twin workload: packs, current, dt and simulated length (at the default duration)."""

    name: str
    packs: int
    load: str  # "constant", "drive" or "day"
    cycles: int  # fast engine's cycles
    reference_cycles: int  # the reference's cycles (fewer on the long rows; rated per cycle)


def cases(duration_s: float) -> list[Case]:
    """The twin cases at ``duration_s`` simulated seconds for the 0.1 s rows (the day scales too)."""
    scale = duration_s / DEFAULT_DURATION_S
    n = max(int(round(duration_s / DT_S)), 1)  # 36,000 by default

    def part(cycles: float) -> int:
        return max(int(round(cycles)), 1)

    day = part(DAY_S / DAY_DT_S * scale)  # 86,400 at dt = 1 s by default
    return [
        Case("1x16-const", 1, "constant", n, part(n / 4)),
        Case("1x16-drive", 1, "drive", n, part(n / 4)),
        Case("1x16-day", 1, "day", day, part(day / 10)),
        Case(f"{MID_PACKS}x16", MID_PACKS, "constant", n, part(n / 10)),
        Case(f"{BIG_PACKS}x16", BIG_PACKS, "constant", part(n / 40), part(n / 180)),
    ]


def drive_currents(cycles: int, dt_s: float = DT_S) -> FloatArray:
    """The twin's drive cycle, one current per control cycle (A, positive charging): PyBaMM's 1 h,
    1 s drive cycle scaled from its 5 Ah cell to ours at ``DRIVE_SCALE``, each second held for
    1/dt cycles, repeated as needed."""
    per_s = ref.make_drive_cycle() * (CAPACITY_AH / ref.CAPACITY_AH) * DRIVE_SCALE
    hold = max(int(round(1.0 / dt_s)), 1)
    one = np.repeat(per_s, hold)
    return np.ascontiguousarray(np.tile(one, -(-cycles // len(one)))[:cycles])


Action = Callable[[Twin], None]


def day_schedule(cycles: int) -> dict[int, Action]:
    """A realistic day at dt = 1 s, squeezed into ``cycles``: rest overnight, 0.3 C discharge
    07:00-09:00, rest, a 0.3 C / 55.2 V (3.45 V a cell) CC/CV charger 17:00-22:00, rest."""
    hour = cycles / 24.0
    amps = 0.3 * CAPACITY_AH

    def at(h: float) -> int:
        return int(round(h * hour))

    return {
        at(7): lambda t: t.connect_load(ALL_PACKS, current_a=amps),
        at(9): lambda t: t.disconnect_load(ALL_PACKS),
        at(17): lambda t: t.connect_charger(ALL_PACKS, voltage_v=3.45 * SERIES, current_a=amps),
        at(22): lambda t: t.disconnect_charger(ALL_PACKS),
    }


@dataclass
class Prepared:
    """A twin ready to time (warmed up), with what to apply while it runs."""

    twin: Twin
    profile: FloatArray | None = None  # per-cycle profile current from cycle 0, or None
    schedule: dict[int, Action] = field(default_factory=dict)  # actions due before a cycle


def prepare(case: Case, cycles: int) -> Prepared:
    """Build the twin of ``case`` for ``cycles`` timed cycles and run its first cycles in Python (the
    brain must have run a cycle before the kernel may take over)."""
    if case.load == "day":
        twin = tp.make_twin(case.packs, dt_s=DAY_DT_S, soc=tp.START_SOC)
        prepared = Prepared(twin, schedule=day_schedule(cycles))
    elif case.load == "drive":
        twin = tp.make_twin(case.packs, soc=DRIVE_SOC)
        prepared = Prepared(twin, profile=drive_currents(cycles + WARMUP_CYCLES))
    else:
        twin = tp.make_twin(case.packs)
        twin.connect_load(ALL_PACKS, current_a=CONSTANT_A)
        prepared = Prepared(twin)
    for c in range(WARMUP_CYCLES):
        if prepared.profile is not None:
            twin.set_current_profile(0, float(prepared.profile[c]))
        twin.step()
    if prepared.profile is not None:
        prepared.profile = prepared.profile[WARMUP_CYCLES:]
    return prepared


@dataclass
class Split:
    """Where the wall time of a fast run went (filled only when asked)."""

    kernel_s: float = 0.0
    engine_s: float = 0.0  # whole FastEngine.run calls, the kernel included
    python_s: float = 0.0  # Twin.step for cycles the kernel may not run
    python_cycles: int = 0
    calls: int = 0


def advance(prepared: Prepared, engine: FastEngine | None, first: int, cycles: int, split: Split | None = None) -> None:
    """Run cycles ``first`` .. ``first + cycles`` of the prepared twin, in ``engine`` (None: the
    Python reference), applying the schedule's actions and profile currents when due."""
    twin, profile, schedule = prepared.twin, prepared.profile, prepared.schedule
    due = sorted(c for c in schedule if first <= c < first + cycles)
    done, end = first, first + cycles
    clock = time.perf_counter
    while done < end:
        while due and due[0] <= done:  # ``done`` never passes a due cycle: runs stop there
            schedule[due.pop(0)](twin)
        stop = min(due[0] if due else end, end)
        if engine is None or why_not(twin) is not None:
            if profile is not None:
                twin.set_current_profile(0, float(profile[done]))
            if split is None:
                twin.step()
            else:
                t0 = clock()
                twin.step()
                split.python_s += clock() - t0
                split.python_cycles += 1
            done += 1
            continue
        count = min(stop - done, MAX_CHUNK)
        chunk = None if profile is None else profile[done : done + count]
        if split is None:
            done += engine.run(count, profile_a=chunk).cycles
        else:
            t0 = clock()
            done += engine.run(count, profile_a=chunk).cycles
            split.engine_s += clock() - t0
            split.calls += 1


# ------------------------------------------------------------------------------------ results
@dataclass
class Result:
    """One row of the table."""

    key: str
    label: str
    cells: int
    cycles: int
    wall_s: float
    target: float | None = None
    target_text: str = ""
    note: str = ""
    missing: str = ""  # why the row has no figure (e.g. PyBaMM not installed)

    @property
    def rate(self) -> float:
        """Cell-steps per wall second (NaN when the row did not run)."""
        if self.missing or self.wall_s <= 0:
            return math.nan
        return self.cells * self.cycles / self.wall_s


def time_case(case: Case, engine_name: str, notes: list[str]) -> Result:
    """Time one case on one engine; the fast engine is warmed (compiled) by the caller."""
    fast = engine_name in ("fast", "packwise")
    cycles = case.cycles if fast else case.reference_cycles
    key = f"{engine_name}-{case.name}"
    print(f"  {key}: building {case.packs:,} packs ...", file=sys.stderr, flush=True)
    if case.load == "day" and not fast:
        return time_reference_day(case, notes)
    prepared = prepare(case, cycles)
    # "packwise": the fast engine held to its pack-by-pack kernel (fast.cycle) on a batch it would
    # otherwise run in the lanes kernel (fast.lanes), to show what the lanes add.
    lanes_from = 10**9 if engine_name == "packwise" else None
    engine = FastEngine(prepared.twin, lanes_min_packs=lanes_from) if fast else None
    if engine is not None:  # one cycle to let the engine take the twin's arrays over (not timed)
        advance(prepared, engine, 0, 1)
        k0, h0 = engine.kernel_cycles, engine.handoffs
    print(f"  {key}: {cycles - 1:,} cycles ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    advance(prepared, engine, 1, cycles - 1)
    wall = time.perf_counter() - start
    note = describe(prepared.twin)
    if engine is not None:
        note += f"; kernel ran {engine.kernel_cycles - k0:,} cycles, {engine.handoffs - h0:,} handed to Python"
        note += f", {engine.lane_calls:,} calls in the lanes kernel" if engine.lane_calls else ", all pack by pack"
    notes.append(f"{key}: {note}")
    return Result(key, label(case, engine_name, cycles - 1), case.packs * SERIES, cycles - 1, wall)


def time_reference_day(case: Case, notes: list[str], windows: int = 8) -> Result:
    """The reference on the day: ``windows`` timed windows spread over the day, the fast engine
    carrying the twin between them untimed (the two engines leave the twin in the same state)."""
    prepared = prepare(case, case.cycles)
    engine = FastEngine(prepared.twin)
    per = max(case.reference_cycles // windows, 1)
    gap = case.cycles // windows
    wall, timed, done = 0.0, 0, 0
    for w in range(windows):
        start_cycle = w * gap + (gap - per) // 2
        if start_cycle > done:
            advance(prepared, engine, done, start_cycle - done)
        start = time.perf_counter()
        advance(prepared, None, start_cycle, per)
        wall += time.perf_counter() - start
        timed += per
        done = start_cycle + per
    notes.append(
        f"reference-{case.name}: {timed:,} cycles in {windows} windows over the day; {describe(prepared.twin)}"
    )
    return Result(f"reference-{case.name}", label(case, "reference", timed), case.packs * SERIES, timed, wall)


def label(case: Case, engine_name: str, cycles: int) -> str:
    what = {
        "constant": "0.5 C discharge",
        "drive": f"drive cycle +-{3 * DRIVE_SCALE:g} C",
        "day": "a day at dt 1 s",
    }[case.load]
    name = "fast, pack by pack" if engine_name == "packwise" else engine_name
    text = f"{name} {case.packs:,}x{SERIES}, {what}"
    if engine_name == "reference" and cycles < case.cycles - 1:
        text += f" [{cycles:,} of {case.cycles:,} cycles, scaled]"
    return text


def describe(twin: Twin) -> str:
    """A line to check the rate was measured on working packs (FETs on, current flowing)."""
    on = int(np.count_nonzero(twin.pack.discharge_fet))
    current = np.asarray(twin.pack.current_a, dtype=np.float64)
    soc = float(np.mean(twin.pack.cells.soc))
    return (
        f"t={twin.t_s:,.1f} s, discharge FET on in {on:,}/{twin.config.packs:,} packs, "
        f"current {current.min():.1f}..{current.max():.1f} A, mean cell SOC {soc:.3f}"
    )


def where_time_goes(case: Case) -> dict[str, float]:
    """Run the fast 1 x 16 constant case again with the kernel function wrapped in a timer."""
    prepared = prepare(case, case.cycles)
    engine = FastEngine(prepared.twin)
    advance(prepared, engine, 0, 1)
    k0, h0 = engine.kernel_cycles, engine.handoffs
    split = Split()
    real = kernel_module.run_cycles

    def timed_kernel(*args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real(*args)
        finally:
            split.kernel_s += time.perf_counter() - t0

    kernel_module.run_cycles = timed_kernel  # the engine looks it up on every call
    try:
        start = time.perf_counter()
        advance(prepared, engine, 1, case.cycles - 1, split)
        wall = time.perf_counter() - start
    finally:
        kernel_module.run_cycles = real
    return {
        "cycles": case.cycles - 1,
        "kernel_cycles": engine.kernel_cycles - k0,
        "handoffs": engine.handoffs - h0,
        "python_cycles": split.python_cycles,
        "engine_calls": split.calls,
        "wall_s": wall,
        "kernel_s": split.kernel_s,
        "engine_python_s": split.engine_s - split.kernel_s,
        "python_step_s": split.python_s,
        "driver_s": wall - split.engine_s - split.python_s,
    }


# ------------------------------------------------------------------------- the yardsticks
def kernel_state(packs: int) -> list[FloatArray]:
    """Arrays shaped as the kernel's per-cell state of ``packs`` packs: SOC, the RC voltages (2
    pairs), temperature, OCV and cell voltage (float64), as a 1-pack twin lays them out."""
    cells = tp.make_twin(1).pack.cells
    shapes = [a.shape for a in (cells.soc, cells.v_rc, cells.temperature_c, cells._ocv, cells.soc)]
    out = []
    for shape in shapes:
        grown = tuple(packs if n == 1 and i == len(shape) - 2 else n for i, n in enumerate(shape))
        out.append(np.random.default_rng(0).random(grown))
    return out


def time_memory(packs: int, cycles: int) -> Result:
    """Copy the kernel's per-cell state arrays once per simulated cycle (read + write of each)."""
    src = kernel_state(packs)
    dst = [np.empty_like(a) for a in src]
    nbytes = sum(a.nbytes for a in src)
    for a, b in zip(dst, src, strict=True):  # touch the pages first
        np.copyto(a, b)
    start = time.perf_counter()
    for _ in range(cycles):
        for a, b in zip(dst, src, strict=True):
            np.copyto(a, b)
    wall = time.perf_counter() - start
    gbs = 2 * nbytes * cycles / wall / 1e9
    return Result(
        "memory",
        f"NumPy copy of the per-cell state, {packs:,}x{SERIES}",
        packs * SERIES,
        cycles,
        wall,
        note=f"{nbytes / packs / SERIES:.0f} B a cell, {nbytes / 1e6:.1f} MB a cycle copied: {gbs:.1f} GB/s read+write",
    )


def rss_child(packs: int, cycles: int) -> dict[str, float]:
    """Run in the child process: build a ``packs`` x 16 fast twin, run ``cycles`` cycles, report memory."""

    def status_mb(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return math.nan

    def peak_mb() -> float:
        # VmHWM: this process image's own high-water mark. ru_maxrss is not used on Linux: it keeps
        # the parent's peak across fork + exec, so it would report the bench's other rows.
        hwm = status_mb("VmHWM")
        return hwm if not math.isnan(hwm) else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    before = status_mb("VmRSS")
    prepared = prepare(Case("rss", packs, "constant", cycles, cycles), cycles)
    built_peak = peak_mb()
    engine = FastEngine(prepared.twin)
    advance(prepared, engine, 0, cycles)
    return {
        "packs": packs,
        "cycles": cycles,
        "after_imports_mb": before,
        "built_peak_mb": built_peak,
        "peak_mb": peak_mb(),
        "end_mb": status_mb("VmRSS"),
    }


def time_rss(packs: int, cycles: int) -> dict[str, float]:
    """Measure peak memory in a fresh child process (the kernel is already in numba's disk cache)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(packs), str(cycles)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------------- the table
ROW_GROUPS = ("fast", "packwise", "reference", "pybamm", "memory", "rss", "where")


def fmt_rate(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.0f}"


def print_table(results: list[Result], baseline: Result | None) -> None:
    by_key = {r.key: r for r in results}
    headers = ("row", "cells", "cycles", "wall s", "cell-steps/s", f"vs {baseline.key if baseline else '-'}")
    headers += ("fast/ref", "target", "met")
    lines = []
    for r in results:
        ratio = r.rate / baseline.rate if baseline and not math.isnan(baseline.rate) else math.nan
        prefix = r.key.split("-", 1)[0]
        other = by_key.get(r.key.replace(f"{prefix}-", "reference-", 1)) if prefix in ("fast", "packwise") else None
        fr = r.rate / other.rate if other else math.nan
        met = "-" if r.target_text == "" or math.isnan(r.rate) else ("yes" if meets(r, by_key) else "NO")
        lines.append(
            (
                r.label,
                f"{r.cells:,}",
                f"{r.cycles:,}",
                "-" if r.missing else f"{r.wall_s:.3f}",
                r.missing or fmt_rate(r.rate),
                "-" if math.isnan(ratio) else f"{ratio:,.2f}",
                "-" if math.isnan(fr) else (f"{fr:.2f}x" if fr < 10 else f"{fr:,.0f}x"),
                r.target_text or "-",
                met,
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i in (0, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(fmt(headers))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(fmt(line))


def meets(r: Result, by_key: dict[str, Result]) -> bool:
    """Whether ``r`` reached its target (its rate floor, and PyBaMM's single cell where named)."""
    ok = r.target is None or r.rate >= r.target
    for rival in ("pybamm-1-const", "pybamm-1-drive"):
        if rival in r.target_text and rival in by_key and not math.isnan(by_key[rival].rate):
            ok = ok and r.rate > by_key[rival].rate
    return ok


def set_targets(results: list[Result]) -> None:
    for r in results:
        if r.key in ("fast-1x16-const", "fast-1x16-drive"):
            r.target = TARGET_SMALL
            rival = "pybamm-1-const" if r.key.endswith("const") else "pybamm-1-drive"
            r.target_text = f">= {TARGET_SMALL:,.0f} and > {rival}"
        elif r.key == f"fast-{BIG_PACKS}x16":
            r.target = TARGET_LARGE
            r.target_text = f">= {TARGET_LARGE:,.0f}"


def pybamm_rows(duration_s: float, batch: int, notes: list[str]) -> list[Result]:
    """PyBaMM's Thevenin model, 1 cell and ``batch`` cells, on the constant current and the drive
    cycle (rows marked "PyBaMM not installed" when it is not). The batch on the drive cycle is
    solved over ``1 / PYBAMM_DRIVE_BATCH_SHORTEN`` of the duration (its solver restarts at every
    current step and would take ~20 minutes over the full hour); its label says so."""
    missing = tp.pybamm_missing()
    n_out = int(round(duration_s / DT_S))
    short_s = max(round(duration_s / PYBAMM_DRIVE_BATCH_SHORTEN), 1.0)
    drive = f"drive cycle +-{3 * DRIVE_SCALE:g} C"
    plan = [  # key, cells, load, simulated s, label
        ("pybamm-1-const", 1, "constant", duration_s, "PyBaMM Thevenin, 1 cell, 0.5 C discharge"),
        (f"pybamm-{batch}-const", batch, "constant", duration_s, f"PyBaMM Thevenin, {batch:,} cells, 0.5 C discharge"),
        ("pybamm-1-drive", 1, "drive", duration_s, f"PyBaMM Thevenin, 1 cell, {drive}"),
        (
            f"pybamm-{batch}-drive",
            batch,
            "drive",
            short_s,
            f"PyBaMM Thevenin, {batch:,} cells, {drive} [{short_s:g} of {duration_s:g} s, scaled]",
        ),
    ]
    if missing is not None:
        notes.append(f"PyBaMM is not installed ({missing}): pip install 'openbms[pybamm]'")
        return [Result(k, lab, n, n_out, 0.0, missing="PyBaMM not installed") for k, n, _, _, lab in plan]
    results: list[Result] = []
    solved: dict[tuple[str, float, int], list[tp.Row]] = {}
    lengths = {(load, cells): seconds for _, cells, load, seconds, _ in plan}
    for key, cells, load, seconds, text in plan:
        # One call times 1 cell, then the batch: a batch of 1 when the batch runs shorter.
        size = batch if lengths[(load, 1)] == lengths[(load, batch)] else cells
        if (load, seconds, size) not in solved:
            print(f"  pybamm {load}, {size:,} cells over {seconds:g} s ...", file=sys.stderr, flush=True)
            solved[(load, seconds, size)] = tp.time_pybamm(seconds, size, 1, load, notes, drive_scale=DRIVE_SCALE)
        row = solved[(load, seconds, size)][0 if cells == 1 else 1]
        results.append(Result(key, text, cells, row.steps, row.wall_s))
    return results


def warm_up() -> float:
    """Compile (or load from numba's cache) both kernels on a tiny twin (the lanes forced on it);
    returns the seconds it took."""
    start = time.perf_counter()
    prepared = prepare(Case("warm", 1, "constant", 10, 10), 10)
    advance(prepared, FastEngine(prepared.twin), 0, 5)
    advance(prepared, FastEngine(prepared.twin, lanes_min_packs=1), 5, 5)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION_S,
        help="simulated seconds of the 0.1 s rows (default 3600); every other row scales with it "
        "(the day row is a day at the default)",
    )
    parser.add_argument(
        "--rows",
        default=",".join(ROW_GROUPS),
        help=f"comma-separated groups ({', '.join(ROW_GROUPS)}) or row keys such as fast-1x16-const (default: all)",
    )
    parser.add_argument("--baseline", default="reference-1x16-const", help="row key the ratio column divides by")
    parser.add_argument("--pybamm-batch", type=int, default=1000, help="cells in PyBaMM's batched solve")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--rss-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        print(json.dumps(rss_child(*args.rss_child)))
        return 0
    if args.duration <= 0:
        parser.error("--duration must be > 0")
    wanted = {w.strip() for w in args.rows.split(",") if w.strip()}

    def want(key: str) -> bool:
        return key in wanted or key.split("-", 1)[0] in wanted

    started = time.perf_counter()
    load1, _, _ = os.getloadavg()
    print(
        f"openbms engines, 16S1P LFP {CAPACITY_AH:g} Ah packs with cell spread; "
        f"dt {DT_S:g} s (day row {DAY_DT_S:g} s); "
        f"--duration {args.duration:g} s; python {sys.version.split()[0]}, numpy {np.__version__}; "
        f"{os.cpu_count()} CPUs, 1-minute load {load1:.2f} at start",
        flush=True,
    )
    notes: list[str] = []
    results: list[Result] = []
    the_cases = cases(args.duration)
    need_fast = (
        any(want(f"fast-{c.name}") for c in the_cases) or want("where") or want("rss") or want("reference-1x16-day")
    )
    if need_fast:
        print(f"fast kernel warm-up (compile or numba cache load, not timed in any row): {warm_up():.2f} s", flush=True)
    for engine_name in ("fast", "packwise", "reference"):
        for case in the_cases:
            if engine_name == "packwise" and case.packs < MID_PACKS:
                continue  # one pack never runs in the lanes: the fast row is the pack-by-pack kernel
            if want(f"{engine_name}-{case.name}"):
                results.append(time_case(case, engine_name, notes))
    if any(want(k) for k in ("pybamm-1-const", f"pybamm-{args.pybamm_batch}-const")):
        results += pybamm_rows(args.duration, args.pybamm_batch, notes)
    big = the_cases[-1]
    if want("memory"):
        results.append(time_memory(BIG_PACKS, max(big.cycles, 10)))
        notes.append(f"memory: {results[-1].note}")
    set_targets(results)
    split = where_time_goes(the_cases[0]) if want("where") else None
    rss = time_rss(BIG_PACKS, min(big.cycles, 200)) if want("rss") else None

    by_key = {r.key: r for r in results}
    baseline = by_key.get(args.baseline) or (results[0] if results else None)
    print()
    if results:
        print_table(results, baseline)
        print(
            "cell-steps/s = cells x cycles / wall s of stepping only; vs: this row's rate / the baseline's; "
            "fast/ref: fast / reference on the same case; target: the project's aim (not asserted)"
        )
    if split is not None:
        c = split["cycles"]
        print()
        print(f"where the time goes, fast 1x16 0.5 C discharge ({c:,} cycles, {split['wall_s']:.3f} s wall):")
        print(
            f"  cycles: {split['kernel_cycles']:,} quiet in the kernel ({split['kernel_cycles'] / c:.2%}), "
            f"{split['handoffs']:,} handed to the Python brain by the kernel ({split['handoffs'] / c:.2%}), "
            f"{split['python_cycles']:,} stepped in Python because why_not() said so "
            f"({split['python_cycles'] / c:.2%}); "
            f"{split['engine_calls']:,} FastEngine.run calls"
        )
        w = split["wall_s"]
        print(
            f"  wall: kernel {split['kernel_s']:.3f} s ({split['kernel_s'] / w:.1%}), engine's Python around it "
            f"(set-up + hand-overs) {split['engine_python_s']:.3f} s ({split['engine_python_s'] / w:.1%}), "
            f"Twin.step {split['python_step_s']:.3f} s ({split['python_step_s'] / w:.1%}), "
            f"driver loop + why_not {split['driver_s']:.3f} s ({split['driver_s'] / w:.1%})"
        )
    if rss is not None:
        print()
        print(
            f"peak memory (child process, fast engine, {rss['packs']:,}x{SERIES} = {rss['packs'] * SERIES:,} cells, "
            f"{rss['cycles']:,} cycles): peak RSS {rss['peak_mb']:,.0f} MB (VmHWM); "
            f"{rss['after_imports_mb']:,.0f} MB after imports, peak {rss['built_peak_mb']:,.0f} MB once the twin "
            f"was built (before any cycle), {rss['end_mb']:,.0f} MB resident at the end"
        )
    print()
    for note in notes:
        print(note)
    total = time.perf_counter() - started
    print(f"bench wall time {total:.0f} s")
    if args.json:
        payload = {
            "duration_s": args.duration,
            "baseline": baseline.key if baseline else None,
            "rows": [{**asdict(r), "rate": None if math.isnan(r.rate) else r.rate} for r in results],
            "where": split,
            "rss": rss,
            "notes": notes,
            "wall_s": total,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
