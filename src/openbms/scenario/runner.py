"""Runs a scenario: builds the twin, plays the timeline, checks expectations, keeps telemetry."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from openbms.bms.events import Event
from openbms.bms.nvm import NonVolatileMemory
from openbms.chemistry import CellParams, ChemistryError, load_chemistry, load_user_cell
from openbms.inputs import InputLimitError, read_text_limited
from openbms.profiles import load_profile
from openbms.scenario.schema import (
    MAX_DURATION_S,
    ChargerSpec,
    Conditions,
    LoadSpec,
    RunUntil,
    Scenario,
    ScenarioError,
    ServiceClear,
    Step,
    event_pattern,
    parse_steps,
    resolve_relative,
)
from openbms.twin.board import load_board
from openbms.twin.cells import Spread
from openbms.twin.faults import FaultSpec, inject, repair
from openbms.twin.pack import Topology
from openbms.twin.simulator import Twin, TwinConfig, TwinError
from openbms.units import format_duration

if TYPE_CHECKING:
    from openbms.fast.engine import FastEngine, RunOutcome

FloatArray = npt.NDArray[np.float64]
Progress = Callable[[float], None]
# What the diagnosis recommends for pack ``pack`` of the twin, and the first reason why. The
# runner checks a ``diagnosis`` expectation with it; the CLI passes
# ``openbms.diagnose.from_twin.diagnosis_of`` (the scenario layer imports no diagnosis).
Diagnoser = Callable[[Twin, int], tuple[str, str]]


@dataclass(frozen=True)
class ExpectationResult:
    index: int
    line: int | None
    t_s: float
    ok: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "line": self.line,
            "t_s": round(self.t_s, 3),
            "ok": self.ok,
            "message": self.message,
        }


ENGINES = ("reference", "fast")
# The compiled engine's first call after a discrete cycle while a current profile plays (its currents
# are computed for every cycle asked); doubles while quiet. Without a profile a call asks for the
# most: the kernel stops at the next discrete cycle anyway, and each call costs a fixed ~0.3 ms.
MIN_CHUNK_CYCLES = 64
ACTION_REFUSED = frozenset({"run", "run_until", "expect", "note", "profile"})  # ScenarioRunner.act
MAX_CHUNK_CYCLES = 1 << 16
PROGRESS_EVERY_CYCLES = 500
DISCRETE_CONDITIONS = frozenset(
    {"state", "faults", "faults_absent", "charge_fet", "discharge_fet", "events", "warnings"}
)
# Where recorded rows stream as they come: a block of rows (rows, columns) that share one state.
TelemetrySink = Callable[[FloatArray, str], None]
MAX_TELEMETRY_ROWS = 20_000  # kept in memory for the plot; a 16S row is about 0.45 kB


def telemetry_columns(series: int) -> list[str]:
    """The telemetry's column names for a pack of ``series`` cells (numbered from 1)."""
    return (
        ["t_s", "pack_v", "current_a", "soc", "state", "charge_fet", "discharge_fet"]
        + [f"cell_v_{i}" for i in range(1, series + 1)]
        + [f"cell_t_c_{i}" for i in range(1, series + 1)]
    )


@dataclass
class Telemetry:
    """One row per recorded control cycle; cells numbered from 1 in the column names.

    Every row goes to ``sink`` (e.g. the CSV file of ``--out``) as it is recorded; memory keeps a
    decimated copy for the plot that never holds more than ``max_rows``: when full, every other
    row is dropped and from then on only every ``stride``-th row is kept. A long run would
    otherwise grow by a row per cycle (0.4 GB per simulated day at 100 ms).
    """

    series: int
    every_s: float
    rows: list[FloatArray] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    sink: TelemetrySink | None = None
    max_rows: int = MAX_TELEMETRY_ROWS
    stride: int = 1  # memory keeps the recorded rows whose number is a multiple of this
    recorded: int = 0  # rows recorded in all, the ones memory dropped included

    def columns(self) -> list[str]:
        return telemetry_columns(self.series)

    def add(self, row: FloatArray, state: str) -> None:
        if self.sink is not None:
            self.sink(row[np.newaxis, :], state)
        if self.recorded % self.stride == 0:
            self.rows.append(row)
            self.states.append(state)
            if len(self.rows) >= max(self.max_rows, 2):
                self.rows, self.states = self.rows[::2], self.states[::2]
                self.stride *= 2
        self.recorded += 1

    def add_block(self, block: FloatArray, state: str) -> None:
        """``add`` for each row of ``block`` (rows in time order, one state), at array speed: a
        simulated year at 1 s is 31 million rows, which must not cost a Python call each."""
        if self.sink is not None and len(block):
            self.sink(block, state)
        start, count = 0, len(block)
        while start < count:
            # The rows this block contributes before memory next fills (then it halves and the
            # stride doubles), exactly those ``add`` would keep one by one.
            first = (-self.recorded) % self.stride  # offset of the next kept row in the block
            room = max(self.max_rows, 2) - len(self.rows)
            kept = np.arange(start + first, count, self.stride)[:room]
            if kept.size == 0:
                self.recorded += count - start
                return
            self.rows.extend(block[kept].copy())
            self.states.extend([state] * kept.size)
            taken = int(kept[-1]) + 1 - start
            self.recorded += taken
            start += taken
            if len(self.rows) >= max(self.max_rows, 2):
                self.rows, self.states = self.rows[::2], self.states[::2]
                self.stride *= 2

    def array(self) -> FloatArray:
        width = 7 + 2 * self.series
        return np.vstack(self.rows) if self.rows else np.zeros((0, width))


@dataclass
class RunResult:
    name: str
    source: str | None
    expectations: list[ExpectationResult]
    events: list[dict[str, Any]]
    final: dict[str, Any]
    telemetry: Telemetry
    error: str | None = None
    capacity_ah: float | None = None  # what the BMS counts C-rates against (for the plot's amps)

    @property
    def passed(self) -> bool:
        return self.error is None and all(e.ok for e in self.expectations)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "passed": self.passed,
            "error": self.error,
            "expectations": [e.as_dict() for e in self.expectations],
            "events": self.events,
            "final": self.final,
        }


def cell_params(scenario: Scenario) -> CellParams:
    """The cell the scenario asks for, at the capacity it names."""
    spec = scenario.pack
    cell = spec.cell
    try:
        if cell is None or isinstance(cell, str):
            params = load_chemistry(cell or spec.chemistry)
            return params.scaled_to(spec.capacity_ah) if spec.capacity_ah else params
        params = load_user_cell(
            capacity_ah=cell.capacity_ah,
            r0_ohm=cell.r0_ohm,
            rc=cell.rc,
            ocv_csv=resolve_relative(scenario, cell.ocv_csv),
            thermal_mass_j_per_k=cell.thermal_mass_j_per_k,
            cooling_w_per_k=cell.cooling_w_per_k,
        )
    except ChemistryError as err:
        raise ScenarioError(f"{scenario.source}: pack.cell: {err}") from None
    return params


# A day of current at 10 Hz is under 20 MB of CSV; beyond that a profile file is a mistake.
MAX_PROFILE_BYTES = 20_000_000
MAX_PROFILE_CURRENT_A = 1e6


def read_profile_csv(path: Path) -> tuple[FloatArray, FloatArray]:
    """A current profile: columns t_s and current_a (positive charging), t_s increasing."""
    return read_series_csv(path, "profile", "current_a", (-MAX_PROFILE_CURRENT_A, MAX_PROFILE_CURRENT_A), "±1e6 A")


def read_series_csv(
    path: Path, what: str, column: str, bounds: tuple[float, float], bounds_text: str, max_rows: int | None = None
) -> tuple[FloatArray, FloatArray]:
    """A time series file (a current profile, an ambient series): columns t_s (from 0, increasing,
    within a year) and ``column`` within ``bounds``; refused in one sentence naming the ``what``."""
    try:
        text = read_text_limited(path, MAX_PROFILE_BYTES)
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    except InputLimitError as err:
        raise ScenarioError(f"{path}: {err}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: the {what} is not a text file (not UTF-8)") from None
    t_arr, v_arr = _series_columns(path, text, what, column)
    if t_arr.size == 0 or not np.all(np.isfinite(t_arr)) or not np.all(np.isfinite(v_arr)):
        raise ScenarioError(f"{path}: the {what} is empty or holds a value that is not a number")
    if np.any(np.diff(t_arr) <= 0):
        raise ScenarioError(f"{path}: t_s must increase from row to row")
    if t_arr[0] < 0 or t_arr[-1] > MAX_DURATION_S or np.any(v_arr < bounds[0]) or np.any(v_arr > bounds[1]):
        raise ScenarioError(f"{path}: t_s must lie within 0..366 d and {column} within {bounds_text}")
    if max_rows is not None and t_arr.size > max_rows:
        raise ScenarioError(f"{path}: the {what} has {t_arr.size:,} rows, more than the {max_rows:,} allowed")
    return t_arr, v_arr


def _series_columns(path: Path, text: str, what: str, column: str) -> tuple[FloatArray, FloatArray]:
    if "\x00" in text:
        raise ScenarioError(f"{path}: the {what} holds a NUL byte, so it is not a text file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or not {"t_s", column} <= set(reader.fieldnames):
            raise ScenarioError(f"{path}: a {what} needs the columns t_s and {column}")
        t, v = [], []
        for line_no, row in enumerate(reader, start=2):
            try:
                t.append(float(row["t_s"]))
                v.append(float(row[column]))
            except (TypeError, ValueError):
                raise ScenarioError(f"{path}, line {line_no}: t_s and {column} must be numbers") from None
    except csv.Error as err:
        raise ScenarioError(f"{path}: not a valid CSV file ({err})") from None
    return np.asarray(t, dtype=float), np.asarray(v, dtype=float)


class ScenarioRunner:
    """Plays one validated scenario on a single-pack twin."""

    def __init__(
        self,
        scenario: Scenario,
        steps: list[Step],
        every_s: float | None = None,
        nvm: NonVolatileMemory | None = None,
        telemetry_sink: TelemetrySink | None = None,
        diagnoser: Diagnoser | None = None,
        engine: str = "reference",
        profiles: Mapping[int, tuple[FloatArray, FloatArray]] | None = None,
    ) -> None:
        """``profiles`` gives current profiles already in memory (times, currents), by the index of
        their ``profile`` step: a fleet campaign generates a pack's usage rather than write a file
        for it. Every other ``profile`` step reads its CSV file."""
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
        self.scenario = scenario
        self.diagnoser = diagnoser
        self.steps = steps
        spec = scenario.pack
        self.profile = load_profile(scenario.bms.profile, scenario.bms.set)
        self.cell = cell_params(scenario)
        given = dict(profiles or {})
        self._profiles = {
            s.index: given[s.index] if s.index in given else read_profile_csv(resolve_relative(scenario, s.value.csv))
            for s in steps
            if s.kind == "profile"
        }
        self.nvm = nvm if nvm is not None else NonVolatileMemory()
        self.nvm.begin_run(scenario.name)
        self.twin = Twin(
            TwinConfig(
                cell=self.cell,
                topology=Topology(spec.series, spec.parallel),
                profile=self.profile,
                packs=1,
                soc=spec.soc,
                temperature_c=spec.temperature_c,
                spread=Spread(**spec.spread.model_dump()),
                dt_s=scenario.dt,
                board=load_board(overrides=scenario.board.set),
            ),
            nvm=self.nvm,
        )
        # The packs a step acts on: every pack of the twin (a scenario describes one pack today;
        # the schema has no key naming one).
        self.packs = range(self.twin.config.packs)
        self.telemetry = Telemetry(series=spec.series, every_s=every_s or scenario.dt, sink=telemetry_sink)
        self._next_record_s = 0.0
        self._events_mark = 0
        self._profile: tuple[float, FloatArray, FloatArray] | None = None
        self.expectations: list[ExpectationResult] = []
        # The compiled engine runs the quiet cycles; the Python reference decides the others.
        self.fast: FastEngine | None = None
        if engine == "fast":  # numba is imported only when asked for (an install may lack it)
            from openbms.fast.engine import FastEngine

            self.fast = FastEngine(self.twin)
        self._chunk = MIN_CHUNK_CYCLES
        self.max_chunk_cycles = MAX_CHUNK_CYCLES  # a caller that acts between calls may lower it
        self._record()

    # ------------------------------------------------------------------ public
    def planned_duration_s(self) -> float:
        """Upper bound of simulated time: runs plus run_until timeouts (for a progress bar)."""
        total = 0.0
        for step in self.steps:
            if step.kind == "run":
                total += float(step.value)
            elif step.kind == "run_until":
                total += step.value.timeout
        return total

    def run(self, progress: Progress | None = None) -> RunResult:
        """Play the whole timeline."""
        cycles = self.cycles(progress)
        while True:
            try:
                next(cycles)
            except StopIteration as done:
                return done.value

    def cycles(self, progress: Progress | None = None) -> Generator[float, None, RunResult]:
        """Play the timeline one control cycle at a time: yields the twin's time after each cycle
        and returns the result. A caller that must act between cycles (the emulator paces the run
        in real time and answers its port) drives this instead of ``run``; the twin is only ever
        touched inside ``next()``, so the caller can hold its lock around that call."""
        error = None
        for step in self.steps:
            stop: str | None = None
            if step.kind == "run":
                yield from self._cycles_for(float(step.value), progress)
            elif step.kind == "run_until":
                stop = yield from self._cycles_until(step, progress)
            else:
                stop = getattr(self, f"_do_{step.kind}")(step, progress)
            if stop:
                error = stop
                break
        return RunResult(
            name=self.scenario.name,
            source=self.scenario.source,
            expectations=self.expectations,
            events=[e.as_dict() for e in self.twin.events],
            final=self.final_state(),
            telemetry=self.telemetry,
            error=error,
            capacity_ah=self.twin.bms.pack.capacity_ah,
        )

    def final_state(self) -> dict[str, Any]:
        """The result's ``final`` block: the first pack's reading, rounded for the JSON."""
        r = self.twin.reading(self.packs[0])
        return {
            "t_s": round(self.twin.t_s, 3),
            "state": r.state,
            "faults": r.faults,
            "fault_details": r.fault_details,
            "warnings": r.warnings,
            "charge_fet": r.charge_fet,
            "discharge_fet": r.discharge_fet,
            "soc": round(_known(r.soc), 4),
            "pack_v": round(_known(r.pack_v), 3),
            "current_a": round(_known(r.current_a), 3),
            "cell_v": [round(v, 4) for v in r.cell_v or []],
            "temperature_c": [round(v, 2) for v in r.temperature_c or []],
            "charge_current_limit_a": round(_known(r.charge_current_limit_a), 2),
            "discharge_current_limit_a": round(_known(r.discharge_current_limit_a), 2),
            "charge_voltage_limit_v": round(_known(r.charge_voltage_limit_v), 3),
            "soc_uncertain": r.soc_uncertain,
            "soh": r.soh,
            "balancing": r.balancing,
            "reset_counts": r.reset_counts,
            "counters": r.counters,
            "failed_cells": r.failed_cells,
            "connectors": {"main_leads": r.main_leads, "balance_connector": r.balance_connector},
        }

    # ------------------------------------------------------------------ stepping
    def _advance(self) -> Iterator[float]:
        twin = self.twin
        if self._profile is not None:
            start_s, t_points, currents = self._profile
            elapsed_s = twin.t_s - start_s + 1e-9
            k = int(np.searchsorted(t_points, elapsed_s, side="right")) - 1
            if k >= len(t_points) - 1 and elapsed_s >= t_points[-1] + (
                t_points[-1] - t_points[-2] if len(t_points) > 1 else twin.dt_s
            ):
                self._profile = None
                for p in self.packs:
                    twin.set_current_profile(p, None)
            else:
                for p in self.packs:
                    twin.set_current_profile(p, float(currents[max(k, 0)]) if k >= 0 else 0.0)
        twin.step()
        if twin.t_s + 1e-9 >= self._next_record_s:
            self._record()
        yield twin.t_s

    def _record(self) -> None:
        """One telemetry row of the first pack. Unlike the checks, which read what the BMS reports
        (``Twin.reading``), telemetry records the pack's true physics (terminal voltage, current,
        group voltages and temperatures before the AFE measures them), so it is no reading."""
        twin, bms = self.twin, self.twin.bms
        pack = twin.pack
        row = np.concatenate(
            [
                [
                    twin.t_s,
                    pack.pack_v[0],
                    pack.current_a[0],
                    bms.pack_soc[0],
                    float(bms.state[0]),
                    float(pack.charge_fet[0]),
                    float(pack.discharge_fet[0]),
                ],
                pack.group_v[0],
                pack.group_temperature_c()[0],
            ]
        )
        self.telemetry.add(row, twin.state_name(0))
        self._next_record_s = twin.t_s + self.telemetry.every_s - 1e-9

    def _run_for(self, duration_s: float, progress: Progress | None) -> None:
        """Run ``duration_s`` of cycles at once (no caller acting between them)."""
        for _ in self._cycles_for(duration_s, progress):
            pass

    def _cycles_for(self, duration_s: float, progress: Progress | None) -> Generator[float, None, None]:
        steps = int(round(duration_s / self.twin.dt_s))
        done = 0
        reported = -PROGRESS_EVERY_CYCLES
        while done < steps:
            done += yield from self._advance_some(steps - done)
            if progress is not None and done - reported >= PROGRESS_EVERY_CYCLES:
                progress(self.twin.t_s)
                reported = done

    def _advance_some(self, most: int) -> Generator[float, None, int]:
        """At least one and at most ``most`` cycles: many in the compiled engine when it may run
        them, else one in Python. Yields the twin's time once; returns the cycles run."""
        if self.fast is None or self.fast.why_not() is not None:
            yield from self._advance()
            return 1
        twin = self.twin
        count = min(most, self._chunk, self.max_chunk_cycles)
        profile = self._profile_currents(count)
        state = twin.state_name(0)  # quiet cycles keep it: a change is a discrete cycle
        outcome = self.fast.run(count, profile, self._next_record_s, self.telemetry.every_s)
        self.telemetry.add_block(outcome.rows, state)
        self._next_record_s = self.fast.next_record_s
        if profile is not None:
            self._profile_ran(profile, outcome.cycles)
        self._adapt_chunk(outcome, count)
        if outcome.stop and twin.t_s + 1e-9 >= self._next_record_s:
            self._record()  # Python decided the last cycle; record it as _advance would
        yield twin.t_s
        return outcome.cycles

    def _adapt_chunk(self, outcome: RunOutcome, asked: int) -> None:
        """The next call's size: with a profile, small again after a discrete cycle (another may
        follow soon), doubling while the engine runs all it was asked; else the most."""
        if self._profile is None:
            self._chunk = self.max_chunk_cycles
        elif outcome.stop:
            self._chunk = MIN_CHUNK_CYCLES
        elif outcome.cycles == asked:
            self._chunk = min(self._chunk * 2, self.max_chunk_cycles)

    def rest_cycles(self, most: int) -> int:
        """After the timeline (the emulator's linger): at least one and at most ``most`` cycles,
        in the compiled engine when it may run them; no telemetry is kept. Returns the cycles run."""
        if self.fast is None or self.fast.why_not() is not None:
            self.twin.step()
            return 1
        count = min(most, self._chunk, self.max_chunk_cycles)
        outcome = self.fast.run(count)
        self._adapt_chunk(outcome, count)
        return outcome.cycles

    def act(self, entry: dict[str, Any]) -> None:
        """A person's action on the running twin, written as one timeline step
        (``{"load": {"current_a": 30}}``): checked by the scenario schema and done as the timeline
        does it. Steps that run time, check or play a file (run, run_until, expect, note,
        profile) are refused. Raises ScenarioError with one sentence; nothing changes then."""
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ScenarioError('an action is one step with exactly one key, e.g. {"load": {"current_a": 30}}')
        kind = str(next(iter(entry)))
        if kind in ACTION_REFUSED:
            raise ScenarioError(f"{kind!r} is a timeline step, not an action")
        try:
            (step,) = parse_steps([entry], "action", {})
        except ScenarioError as err:  # the schema names the place as in a file: timeline.0.…
            raise ScenarioError(str(err).replace("action: timeline.0.", "action: ").replace("timeline.0", "")) from None
        getattr(self, f"_do_{step.kind}")(step, None)

    def _profile_currents(self, count: int) -> FloatArray | None:
        """The current profile's current for each of the next ``count`` cycles (NaN once it has
        ended), as ``_advance`` sets it before each step; None when no profile plays."""
        if self._profile is None:
            return None
        start_s, t_points, currents = self._profile
        twin = self.twin
        before = np.concatenate([[twin.t_s], _next_times(twin.t_s, twin.dt_s, count - 1)])
        elapsed_s = before - start_s + 1e-9
        k = np.searchsorted(t_points, elapsed_s, side="right") - 1
        tail_s = t_points[-1] - t_points[-2] if len(t_points) > 1 else twin.dt_s
        ended = (k >= len(t_points) - 1) & (elapsed_s >= t_points[-1] + tail_s)
        values = np.where(k >= 0, currents[np.maximum(k, 0)], 0.0)
        if ended.any():
            values[int(np.argmax(ended)) :] = np.nan
        return values

    def _profile_ran(self, values: FloatArray, cycles: int) -> None:
        """After ``cycles`` cycles of ``values``: the twin's profile and the runner's as ``_advance``
        would have left them."""
        last = float(values[cycles - 1])
        if np.isnan(last):
            self._profile = None
        for p in self.packs:
            self.twin.set_current_profile(p, None if np.isnan(last) else last)

    # ------------------------------------------------------------------ conditions
    def check(self, cond: Conditions) -> list[str]:
        """What does not hold of ``cond`` now (empty when everything holds), on every pack; with
        more than one pack each problem names its pack."""
        problems: list[str] = []
        for p in self.packs:
            prefix = f"pack {p + 1}: " if len(self.packs) > 1 else ""
            problems.extend(prefix + problem for problem in self._check_pack(cond, p))
        return problems + self._check_events(cond)

    def _check_pack(self, cond: Conditions, pack: int) -> list[str]:
        r = self.twin.reading(pack)
        problems: list[str] = []
        faults = set(r.faults)
        state = r.state
        if cond.state is not None and state != cond.state:
            problems.append(f"state is {state}, expected {cond.state}")
        if cond.faults is not None:
            missing = [f for f in cond.faults if f not in faults]
            if missing:
                problems.append(f"fault(s) {', '.join(missing)} not active (active: {_names(faults)})")
        if cond.faults_absent is not None:
            present = [f for f in cond.faults_absent if f in faults]
            if present:
                problems.append(f"fault(s) {', '.join(present)} still active")
        if cond.warnings is not None:
            warned = set(r.warnings or [])
            missing = [w for w in cond.warnings if w not in warned]
            if missing:
                problems.append(f"warning(s) {', '.join(missing)} not active (active: {_names(warned)})")
        for name, wanted, actual in (
            ("charge FET", cond.charge_fet, bool(r.charge_fet)),
            ("discharge FET", cond.discharge_fet, bool(r.discharge_fet)),
        ):
            if wanted is not None and wanted != actual:
                problems.append(f"{name} is {'on' if actual else 'off'}, expected {'on' if wanted else 'off'}")
        ranges = (
            ("soc", cond.soc, np.array([r.soc], dtype=float)),
            ("cell_v", cond.cell_v, np.array(r.cell_v, dtype=float)),
            ("pack_v", cond.pack_v, np.array([r.pack_v], dtype=float)),
            ("temperature_c", cond.temperature_c, np.array(r.temperature_c, dtype=float)),
        )
        for name, rng, values in ranges:
            if rng is not None and not np.all((values >= rng[0]) & (values <= rng[1])):
                shown = f"{values.min():.4g}..{values.max():.4g}" if values.size > 1 else f"{values[0]:.4g}"
                problems.append(f"{name} is {shown}, expected within [{rng[0]}, {rng[1]}]")
        if cond.diagnosis is not None:
            problems.extend(self._check_diagnosis(cond.diagnosis, pack))
        return problems

    def _check_events(self, cond: Conditions) -> list[str]:
        problems: list[str] = []
        if cond.events is not None:
            seen = self.twin.events[self._events_mark :]
            for item in cond.events:
                kind, fields = event_pattern(item)
                if not any(e.kind == kind and _fields_match(e, fields) for e in seen):
                    want = kind + (f" {fields}" if fields else "")
                    problems.append(f"no event {want} since the previous expect")
        return problems

    def _check_diagnosis(self, expected: str, pack: int) -> list[str]:
        if self.diagnoser is None:
            # The diagnosis is a layer above the scenario: its caller (the CLI) passes it in.
            return [f"diagnosis cannot be checked (expected {expected}): this runner was given no diagnoser"]
        recommendation, reason = self.diagnoser(self.twin, pack)
        if recommendation == expected:
            return []
        return [f"diagnosis is {recommendation} ({reason}), expected {expected}"]

    # ------------------------------------------------------------------ steps
    def _do_note(self, step: Step, progress: Progress | None) -> None:
        return None

    def _cycles_until(self, step: Step, progress: Progress | None) -> Generator[float, None, str | None]:
        cond: RunUntil = step.value
        deadline = self.twin.t_s + cond.timeout
        k = 0
        reported = 0
        # Conditions on states, faults, FETs, warnings and events change only in a cycle the
        # Python brain decides, after which the compiled engine returns: it may run up to the
        # deadline. Others (SOC, voltages, temperatures, the diagnosis) are checked every cycle.
        discrete = cond.model_fields_set - {"timeout"} <= DISCRETE_CONDITIONS
        while self.check(cond):
            if self.twin.t_s >= deadline - 1e-9:
                message = f"run_until (line {step.line}) timed out after {format_duration(cond.timeout)}: " + "; ".join(
                    self.check(cond)
                )
                self.expectations.append(ExpectationResult(step.index, step.line, self.twin.t_s, False, message))
                return message
            most = self._cycles_before(deadline) if discrete and self.fast is not None else 1
            k += yield from self._advance_some(most)
            if progress is not None and k - reported >= PROGRESS_EVERY_CYCLES:
                progress(self.twin.t_s)
                reported = k
        return None

    def _cycles_before(self, deadline_s: float) -> int:
        """How many cycles the reference runs before ``t_s`` reaches ``deadline_s`` (at least 1)."""
        twin = self.twin
        guess = int((deadline_s - twin.t_s) / twin.dt_s) + 2
        times = _next_times(twin.t_s, twin.dt_s, min(max(guess, 1), MAX_CHUNK_CYCLES))
        reached = np.nonzero(times >= deadline_s - 1e-9)[0]
        return int(reached[0]) + 1 if reached.size else int(times.size)

    def _do_expect(self, step: Step, progress: Progress | None) -> None:
        problems = self.check(step.value)
        at = format_duration(self.twin.t_s)
        message = (
            f"expect (line {step.line}) holds at t={at}"
            if not problems
            else f"expect (line {step.line}) failed at t={at}: " + "; ".join(problems)
        )
        self.expectations.append(ExpectationResult(step.index, step.line, self.twin.t_s, not problems, message))
        self._events_mark = len(self.twin.events)

    def _do_load(self, step: Step, progress: Progress | None) -> None:
        spec: LoadSpec = step.value
        for p in self.packs:
            self.twin.connect_load(
                p, current_a=spec.current_a, power_w=spec.power_w, resistance_ohm=spec.resistance_ohm
            )

    def _do_charger(self, step: Step, progress: Progress | None) -> None:
        spec: ChargerSpec = step.value
        for p in self.packs:
            self.twin.connect_charger(p, spec.voltage_v, spec.current_a, spec.min_battery_v)

    def _do_short(self, step: Step, progress: Progress | None) -> None:
        for p in self.packs:
            self.twin.short(p, step.value.resistance_ohm)

    def _do_ambient(self, step: Step, progress: Progress | None) -> None:
        for p in self.packs:
            self.twin.set_ambient(p, step.value.temperature_c)

    def _do_profile(self, step: Step, progress: Progress | None) -> None:
        t_points, currents = self._profiles[step.index]
        self._profile = (self.twin.t_s - t_points[0], t_points, currents)

    def _do_disconnect(self, step: Step, progress: Progress | None) -> None:
        twin, target = self.twin, step.value
        if target == "profile":
            self._profile = None
        for p in self.packs:
            if target == "load":
                twin.disconnect_load(p)
            elif target == "charger":
                twin.disconnect_charger(p)
            elif target == "short":
                twin.clear_short(p)
            elif target == "profile":
                twin.set_current_profile(p, None)
            elif target == "main_leads":
                twin.disconnect_main_leads(p)
            else:
                twin.disconnect_balance_connector(p)

    def _do_connect(self, step: Step, progress: Progress | None) -> None:
        for p in self.packs:
            if step.value == "main_leads":
                self.twin.connect_main_leads(p)
            else:
                self.twin.connect_balance_connector(p)

    def _fault_spec(self, value: Any) -> FaultSpec:
        fields = value.model_dump()
        cell = fields.pop("cell", None)
        known = {k: v for k, v in fields.items() if k in FaultSpec.__dataclass_fields__}
        return FaultSpec(cell=None if cell is None else cell - 1, **known)

    def _do_inject(self, step: Step, progress: Progress | None) -> None:
        try:
            for p in self.packs:
                inject(self.twin, p, self._fault_spec(step.value))
        except TwinError as err:
            raise ScenarioError(f"{self.scenario.source}, line {step.line}: {err}") from None

    def _do_repair(self, step: Step, progress: Progress | None) -> None:
        try:
            for p in self.packs:
                repair(self.twin, p, self._fault_spec(step.value))
        except TwinError as err:
            raise ScenarioError(f"{self.scenario.source}, line {step.line}: {err}") from None

    def _do_replace_cell(self, step: Step, progress: Progress | None) -> None:
        for p in self.packs:
            self.twin.replace_cell(p, step.value.cell - 1, step.value.soc)

    def _do_press(self, step: Step, progress: Progress | None) -> None:
        for p in self.packs:
            self.twin.press_reset_button(p)

    def _do_command(self, step: Step, progress: Progress | None) -> None:
        for p in self.packs:
            if isinstance(step.value, ServiceClear):
                self.twin.command_service_clear(p, step.value.service_clear, step.value.authenticated)
            else:
                self.twin.command_soft_reset(p)


def _next_times(t_s: float, dt_s: float, cycles: int) -> FloatArray:
    """The twin's clock after each of the next ``cycles`` cycles (compiled: only the fast engine
    needs many of them at once)."""
    from openbms.fast.cycle import next_times

    return next_times(t_s, dt_s, cycles)


def _known(value: float | None) -> float:
    """A value the twin always reports (its reading leaves nothing unknown)."""
    assert value is not None, "the twin's reading lacks a value it always reports"
    return value


def _names(items: set[str]) -> str:
    return ", ".join(sorted(items)) or "none"


def _fields_match(event: Event, fields: dict[str, Any]) -> bool:
    for key, want in fields.items():
        have = event.t_s if key == "t_s" else event.fields.get(key)
        if isinstance(want, int | float) and isinstance(have, int | float) and not isinstance(want, bool):
            if not np.isclose(float(have), float(want), rtol=1e-6, atol=1e-9):
                return False
        elif have != want:
            return False
    return True


__all__ = [
    "Diagnoser",
    "RunResult",
    "ScenarioRunner",
    "ServiceClear",
    "Telemetry",
    "TelemetrySink",
    "telemetry_columns",
]
