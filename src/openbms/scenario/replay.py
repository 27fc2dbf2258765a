"""Replay: real packs' logged measurements fed to the brain alone (no twin), to see what a set of
settings would have done and when.

A log is a CSV file, or a Parquet file with the same columns (the README's "Replay"):

``t_s``
    seconds, increasing (any origin); the brain's timers count the time between rows.
``current_a``
    the pack current, positive when charging.
``cell_v_1`` … ``cell_v_N``
    each series group's voltage (V).
``cell_t_c_1`` … ``cell_t_c_M``
    temperature sensors (°C), at least one.
``stack_v``, ``fet_t_c``, ``charger_present``, ``load_present``
    optional: the stack voltage (default: the sum of the cells), the FET temperature (default: the
    hottest sensor), and the charger and load inputs as 0/1 (default: current above +0.5 A,
    below −0.5 A).

A row that cannot be read (a wrong number of fields, text where a number belongs, time not
increasing) is skipped and reported with its line; a gap longer than ``GAP_FACTOR`` times the
log's usual step is reported (the brain counts it as time passing, as a real BMS would have). An
empty value is a sensor the logger could not read: the brain gets NaN for it, as from its own AFE.

Many logs: the brain is batch-first (arrays of packs × cells, one time per step for all packs),
so logs that share a clock (``clock_key``: the same series and sensor counts, and the same row
times counted from each log's first row, bit for bit) are replayed as ONE brain, each log a pack
(``replay_batch``); logs of other clocks form other groups. Every replay, a lone log included, runs
the brain on the log's own clock from its first row and reports each event at its row's logged
time, so a log's events do not depend on what it is batched with (the brain computes each pack
on its own row; its batch-wide shortcuts for quiet cycles skip only what would change nothing).
``replay_files`` reads the logs, groups them and spreads the groups (split when there are fewer
groups than workers) over a process pool: the results, in the order the logs were given, do not
depend on the number of workers, and a log that cannot be read is reported by its sentence while
the others are replayed.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openbms.bms.brain import Bms
from openbms.bms.events import Event
from openbms.bms.interface import Measurements
from openbms.bms.profile import MAX_CURRENT_A, Profile
from openbms.bms.state import PackConfig
from openbms.chemistry import load_chemistry
from openbms.chemistry.cells import CellParams, ChemistryError
from openbms.inputs import InputLimitError, read_text_limited
from openbms.profiles import load_profile

GAP_FACTOR = 5.0
PRESENCE_A = 0.5  # charger / load inferred from the current when the log has no inputs
MAX_PROBLEMS_LISTED = 20
MAX_LOG_BYTES = 512 * 1024 * 1024


class ReplayError(ValueError):
    """A log or setting that cannot be replayed; one sentence."""


@dataclass
class Log:
    """A parsed log: arrays by column, and what was wrong with it."""

    path: str
    t_s: np.ndarray
    current_a: np.ndarray
    cell_v: np.ndarray  # (rows, series)
    cell_t_c: np.ndarray  # (rows, sensors)
    stack_v: np.ndarray
    fet_t_c: np.ndarray
    charger_present: np.ndarray
    load_present: np.ndarray
    skipped: list[str] = field(default_factory=list)  # "line 12: …"
    gaps: list[str] = field(default_factory=list)


def _number(value: object) -> float:
    """A field as a number: empty or null is NaN (a sensor the logger could not read)."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    return math.nan if text == "" else float(text)


def _csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[str, list[Any]]]]:
    try:
        text = read_text_limited(path, MAX_LOG_BYTES)
    except OSError as err:
        raise ReplayError(f"cannot read the log {path}: {err.strerror or err}") from None
    except (InputLimitError, UnicodeDecodeError) as err:
        raise ReplayError(f"cannot read the log {path}: {err}") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ReplayError(f"{path} is empty; a log starts with a header line (t_s,current_a,cell_v_1,…)") from None
    return header, ((f"line {n}", row) for n, row in enumerate(reader, start=2))


def _parquet_rows(path: Path) -> tuple[list[str], Iterator[tuple[str, list[Any]]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ReplayError("Parquet logs need pyarrow: pip install '.[parquet]' (or give the log as CSV)") from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:
        raise ReplayError(f"cannot read the Parquet log {path}: {err}") from None
    header = [str(name) for name in table.column_names]
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return header, ((f"row {k + 1}", [c[k] for c in columns]) for k in range(table.num_rows))


def read_log(path: Path | str) -> Log:
    """Parse a log (CSV, or Parquet by its ``.parquet`` suffix), skipping (and listing) the rows
    that cannot be read."""
    path = Path(path)
    header, records = _parquet_rows(path) if path.suffix.lower() == ".parquet" else _csv_rows(path)
    cells = sorted((int(h[7:]), i) for i, h in enumerate(header) if h.startswith("cell_v_") and h[7:].isdigit())
    temps = sorted((int(h[9:]), i) for i, h in enumerate(header) if h.startswith("cell_t_c_") and h[9:].isdigit())
    missing = [name for name in ("t_s", "current_a") if name not in header]
    if missing or not cells or not temps:
        need = missing + (["cell_v_1…"] if not cells else []) + (["cell_t_c_1…"] if not temps else [])
        raise ReplayError(f"{path}: the header lacks {', '.join(need)} (see the log format in the README)")
    col = {h: i for i, h in enumerate(header)}
    rows: list[tuple[float, ...]] = []
    skipped: list[str] = []
    last_t = -math.inf
    optional = [col.get(name) for name in ("stack_v", "fet_t_c", "charger_present", "load_present")]
    for where, row in records:
        if not row or all(x is None or not str(x).strip() for x in row):
            continue
        if len(row) != len(header):
            skipped.append(f"{where}: {len(row)} fields, the header has {len(header)}")
            continue
        try:
            t = _number(row[col["t_s"]])
            values = (
                t,
                _number(row[col["current_a"]]),
                *(_number(row[i]) for _, i in cells),
                *(_number(row[i]) for _, i in temps),
                *(math.nan if i is None else _number(row[i]) for i in optional),
            )
        except ValueError as err:
            skipped.append(f"{where}: {err}")
            continue
        if not math.isfinite(t) or t <= last_t:
            skipped.append(f"{where}: t_s {str(row[col['t_s']]).strip()!r} does not follow {last_t:g}")
            continue
        last_t = t
        rows.append(values)
    if len(rows) < 2:
        raise ReplayError(f"{path}: fewer than two readable rows ({len(skipped)} skipped)")
    a = np.array(rows, dtype=float)
    n, m = len(cells), len(temps)
    t_s = a[:, 0]
    cell_v, cell_t = a[:, 2 : 2 + n], a[:, 2 + n : 2 + n + m]
    stack, fet, charger, load = (a[:, 2 + n + m + k] for k in range(4))
    current = a[:, 1]
    stack = np.where(np.isnan(stack), cell_v.sum(axis=1), stack)
    fet = np.where(np.isnan(fet), np.nanmax(np.where(np.isnan(cell_t), -np.inf, cell_t), axis=1), fet)
    charger_present = np.where(np.isnan(charger), current > PRESENCE_A, charger > 0.5)
    load_present = np.where(np.isnan(load), current < -PRESENCE_A, load > 0.5)
    steps = np.diff(t_s)
    usual = float(np.median(steps))
    gaps = [f"{steps[k]:g} s without a row after t={t_s[k]:g} s" for k in np.nonzero(steps > GAP_FACTOR * usual)[0]]
    return Log(str(path), t_s, current, cell_v, cell_t, stack, fet, charger_present, load_present, skipped, gaps)


@dataclass(frozen=True)
class Arm:
    """One set of settings: a profile and its dotted-key overrides."""

    name: str
    profile: str
    overrides: dict[str, Any]


@dataclass
class ArmResult:
    arm: Arm
    events: list[dict[str, Any]]
    final_state: str
    final_soc: float
    trips: list[tuple[float, str]]  # (t_s, fault)
    end_s: float = math.nan  # the log's last row (log time): where a balancing still on ends

    @property
    def warnings(self) -> list[tuple[float, str]]:
        """Each warning the settings raised, with when (log time)."""
        return [(float(e["t_s"]), str(e["warning"])) for e in self.events if e["kind"] == "warning"]

    def balancing(self) -> tuple[float, list[int]]:
        """How long any cell was bled (s) and which cells (numbered from 1), from the brain's
        balancing events: each says the cells bled from then on."""
        changes = [(float(e["t_s"]), list(e["cells"])) for e in self.events if e["kind"] == "balancing"]
        bled_s = 0.0
        cells: set[int] = set()
        ends = [t_s for t_s, _ in changes[1:]] + [self.end_s] if changes else []
        for (t_s, now), t_next in zip(changes, ends, strict=True):
            if now:
                bled_s += max(t_next - t_s, 0.0)
                cells.update(now)
        return bled_s, sorted(cells)


@dataclass(frozen=True)
class PackSpec:
    """What every log of a call shares besides the settings: the cells and the rated capacity."""

    chemistry: str
    capacity_ah: float
    soc: float | None = None  # at the first row; None: from the first rest voltage


@dataclass
class LogOutcome:
    """One log of a call, in the order given: its results per arm, or why it was not replayed."""

    path: str
    log: Log | None
    results: list[ArmResult]
    error: str | None = None
    internal: bool = False  # the error is a failed replay (a bug), not a log that cannot be read


ClockKey = tuple[int, int, bytes]  # series, sensors, the row times relative to the first row


def clock_key(log: Log) -> ClockKey:
    """Logs with equal keys can be stepped as one brain: the brain takes one time per step for all
    its packs, and its timers count the time between rows, so what must match is the shape and the
    row times counted from each log's first row (bit for bit: the brain is fed exactly these)."""
    return (log.cell_v.shape[1], log.cell_t_c.shape[1], _relative_t_s(log).tobytes())


def _relative_t_s(log: Log) -> np.ndarray:
    """The log's clock from its first row. Every replay, alone or batched, runs the brain on this
    clock and reports events at the log's own row times, so a log gives the same events whatever
    it is batched with."""
    return log.t_s - log.t_s[0]


def _brain_profile(arm: Arm) -> Profile:
    try:
        # The log's current is what the real BMS let through: the replayed brain's own FET
        # commands cannot change it, so current "through a FET it opened" is no evidence of a
        # stuck FET here. The leak check is switched off (its limit at the largest current a
        # profile allows), whatever the arm says.
        return load_profile(arm.profile, {**arm.overrides, "sensors.fet_leak_a": MAX_CURRENT_A})
    except (KeyError, ValueError) as err:
        raise ReplayError(f"{arm.name}: {err}") from None


def _cells(chemistry: str) -> CellParams:
    try:
        return load_chemistry(chemistry)
    except ChemistryError as err:
        raise ReplayError(f"--chemistry: {err}") from None


def check_settings(arms: Sequence[Arm], spec: PackSpec) -> None:
    """Refuse bad settings or chemistry before any log is read: they would fail every log alike."""
    _cells(spec.chemistry)
    for arm in arms:
        _brain_profile(arm)


@dataclass(frozen=True)
class _Rows:
    """Logs of one clock stacked as (rows, packs, …): row ``k`` of every log is one brain step."""

    cell_v: np.ndarray
    cell_t_c: np.ndarray
    current_a: np.ndarray
    stack_v: np.ndarray
    fet_t_c: np.ndarray
    charger_present: np.ndarray
    load_present: np.ndarray

    @classmethod
    def of(cls, logs: Sequence[Log]) -> _Rows:
        def stack(name: str, dtype: type = float) -> np.ndarray:
            return np.ascontiguousarray(np.stack([getattr(log, name) for log in logs], axis=1), dtype=dtype)

        return cls(
            stack("cell_v"),
            stack("cell_t_c"),
            stack("current_a"),
            stack("stack_v"),
            stack("fet_t_c"),
            stack("charger_present", bool),
            stack("load_present", bool),
        )

    def measurements(self, k: int) -> Measurements:
        """Row ``k`` of every log, with the inputs a log does not hold as a healthy AFE's."""
        packs = self.current_a.shape[1]
        ok = np.ones(packs, dtype=bool)
        no = np.zeros(packs, dtype=bool)
        return Measurements(
            cell_v=self.cell_v[k],
            cell_t_c=self.cell_t_c[k],
            current_a=self.current_a[k],
            stack_v=self.stack_v[k],
            fet_t_c=self.fet_t_c[k],
            afe_ok=ok,
            afe_damaged=no,
            short_circuit_tripped=no,
            short_circuit_at_s=np.full(packs, np.nan),
            short_circuit_peak_a=np.zeros(packs),
            charger_present=self.charger_present[k],
            load_present=self.load_present[k],
            link_ok=ok,
            reset_button=no,
        )


def replay_batch(logs: Sequence[Log], arm: Arm, spec: PackSpec) -> list[ArmResult]:
    """Feed logs that share a clock (equal ``clock_key``) to ONE brain, each log a pack: its
    events, trips and where it ends, per log. Equal to replaying each log alone (each pack of the
    brain is computed on its own row of the arrays), only far fewer steps."""
    if not logs:
        return []
    keys = {clock_key(log) for log in logs}
    if len(keys) != 1:
        raise ValueError("replay_batch needs logs that share a clock (equal clock_key)")
    profile = _brain_profile(arm)
    cell = _cells(spec.chemistry)
    series = logs[0].cell_v.shape[1]
    initial = None if spec.soc is None else np.full((len(logs), series), spec.soc)
    pack = PackConfig(series, spec.capacity_ah, cell.ocv, cell.coulombic_efficiency)
    bms = Bms(profile, pack, packs=len(logs), initial_soc=initial)
    rows = _Rows.of(logs)
    clock = _relative_t_s(logs[0])
    events: list[list[dict[str, Any]]] = [[] for _ in logs]
    for k in range(len(clock)):
        _, new = bms.step(rows.measurements(k), float(clock[k]))
        for event in new:
            log = logs[event.pack]
            events[event.pack].append(_in_log_time(event, float(clock[k]), log, k))
    return [_arm_result(arm, events[i], bms, i, float(logs[i].t_s[-1])) for i in range(len(logs))]


def _in_log_time(event: Event, step_t_s: float, log: Log, row: int) -> dict[str, Any]:
    """The event as a dict at the log's own time: an event of step ``row`` at the row's logged
    time (exactly, not the first row's time plus the offset, which may round differently)."""
    doc = event.as_dict()
    t_s = float(log.t_s[row]) if event.t_s == step_t_s else float(log.t_s[0]) + event.t_s
    doc["t_s"] = round(t_s, 6)
    return doc


def _arm_result(arm: Arm, events: list[dict[str, Any]], bms: Bms, pack: int, end_s: float) -> ArmResult:
    trips = [(float(e["t_s"]), str(e["fault"])) for e in events if e["kind"] == "fault_set"]
    return ArmResult(arm, events, bms.state_name(pack), float(bms.pack_soc[pack]), trips, end_s)


def replay(log: Log, arm: Arm, chemistry: str, capacity_ah: float, soc: float | None = None) -> ArmResult:
    """Feed the log's rows to a fresh brain of its own with ``arm``'s settings; its events and
    where it ends."""
    return replay_batch([log], arm, PackSpec(chemistry, capacity_ah, soc))[0]


def group_by_clock(logs: Sequence[Log]) -> list[list[int]]:
    """Indices of the logs, grouped by clock (each group one brain), in order of first appearance."""
    groups: dict[ClockKey, list[int]] = {}
    for i, log in enumerate(logs):
        groups.setdefault(clock_key(log), []).append(i)
    return list(groups.values())


@dataclass(frozen=True)
class _Unit:
    """One piece of work for a process: some logs of one clock under one arm."""

    logs: tuple[Log, ...]
    arm: Arm
    spec: PackSpec


def _run_unit(unit: _Unit) -> list[ArmResult] | str:
    """The unit's results, or why its replay failed (a bug): returned, not raised, so the other
    units' logs keep their results."""
    try:
        return replay_batch(unit.logs, unit.arm, unit.spec)
    except Exception as err:  # noqa: BLE001 - reported on each of the unit's logs
        return f"the replay failed: {type(err).__name__}: {err}"


def _read_or_error(path: str) -> Log | str:
    """A log, or the sentence saying why it cannot be replayed (a worker returns it, not raises
    it, so one bad log does not lose the others)."""
    try:
        return read_log(path)
    except ReplayError as err:
        return str(err)


def _pieces(group: list[int], groups: int, workers: int) -> list[list[int]]:
    """A clock's logs split so that every worker has some (fewer groups than workers): equal-ish
    contiguous pieces; with one worker, the whole group on one brain."""
    count = min(len(group), max(1, -(-workers // groups)))
    return [list(piece) for piece in np.array_split(np.array(group), count)]


@contextmanager
def _mapper(workers: int) -> Iterator[Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]]:
    """``map`` in this process (one worker) or over a process pool; results in input order."""
    if workers <= 1:
        yield lambda fn, items: [fn(item) for item in items]
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield lambda fn, items: list(pool.map(fn, items))


def replay_files(
    paths: Sequence[Path | str], arms: Sequence[Arm], spec: PackSpec, workers: int = 1
) -> list[LogOutcome]:
    """Read and replay many logs: those that share a clock on one brain per arm (``replay_batch``),
    the work spread over ``workers`` processes (reading too). One outcome per path, in the order
    given, the same whatever ``workers``; a log that cannot be read carries its sentence and the
    others are replayed. Bad settings raise ``ReplayError`` before anything is read."""
    if workers < 1:
        raise ReplayError("--workers must be at least 1")
    check_settings(arms, spec)
    with _mapper(workers) as run:
        read: list[Log | str] = run(_read_or_error, [str(p) for p in paths])
        logs = [item for item in read if isinstance(item, Log)]
        groups = group_by_clock(logs)
        pieces = [piece for group in groups for piece in _pieces(group, len(groups), workers)]
        units = [_Unit(tuple(logs[i] for i in piece), arm, spec) for piece in pieces for arm in arms]
        done = iter(run(_run_unit, units))
    by_log: dict[int, list[ArmResult]] = {i: [] for i in range(len(logs))}
    broken: dict[int, str] = {}
    for piece in pieces:
        for _ in arms:
            results = next(done)
            for n, i in enumerate(piece):
                if isinstance(results, str):
                    broken.setdefault(i, results)
                else:
                    by_log[i].append(results[n])
    found = iter(range(len(logs)))
    outcomes = []
    for path, item in zip(paths, read, strict=True):
        if isinstance(item, Log):
            i = next(found)
            if i in broken:
                outcomes.append(LogOutcome(item.path, None, [], f"{item.path}: {broken[i]}", internal=True))
            else:
                outcomes.append(LogOutcome(item.path, item, by_log[i]))
        else:
            outcomes.append(LogOutcome(str(path), None, [], item))
    return outcomes
