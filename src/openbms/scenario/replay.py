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
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openbms.bms.brain import Bms
from openbms.bms.interface import Measurements
from openbms.bms.profile import MAX_CURRENT_A
from openbms.bms.state import PackConfig
from openbms.chemistry import load_chemistry
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
    except (OSError, InputLimitError, UnicodeDecodeError) as err:
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


def replay(log: Log, arm: Arm, chemistry: str, capacity_ah: float, soc: float | None = None) -> ArmResult:
    """Feed the log's rows to a fresh brain with ``arm``'s settings; its events and where it ends."""
    try:
        # The log's current is what the real BMS let through: the replayed brain's own FET
        # commands cannot change it, so current "through a FET it opened" is no evidence of a
        # stuck FET here. The leak check is switched off (its limit at the largest current a
        # profile allows), whatever the arm says.
        profile = load_profile(arm.profile, {**arm.overrides, "sensors.fet_leak_a": MAX_CURRENT_A})
    except (KeyError, ValueError) as err:
        raise ReplayError(f"{arm.name}: {err}") from None
    cell = load_chemistry(chemistry)
    series = log.cell_v.shape[1]
    initial = None if soc is None else np.full((1, series), soc)
    pack = PackConfig(series, capacity_ah, cell.ocv, cell.coulombic_efficiency)
    bms = Bms(profile, pack, packs=1, initial_soc=initial)
    events: list[dict[str, Any]] = []
    one = np.ones(1, dtype=bool)
    zero = np.zeros(1, dtype=bool)
    for k in range(len(log.t_s)):
        m = Measurements(
            cell_v=log.cell_v[k : k + 1],
            cell_t_c=log.cell_t_c[k : k + 1],
            current_a=log.current_a[k : k + 1],
            stack_v=log.stack_v[k : k + 1],
            fet_t_c=log.fet_t_c[k : k + 1],
            afe_ok=one,
            afe_damaged=zero,
            short_circuit_tripped=zero,
            short_circuit_at_s=np.full(1, np.nan),
            short_circuit_peak_a=np.zeros(1),
            charger_present=log.charger_present[k : k + 1].astype(bool),
            load_present=log.load_present[k : k + 1].astype(bool),
            link_ok=one,
            reset_button=zero,
        )
        _, new = bms.step(m, float(log.t_s[k]))
        events += [e.as_dict() for e in new]
    trips = [(float(e["t_s"]), str(e["fault"])) for e in events if e["kind"] == "fault_set"]
    return ArmResult(arm, events, bms.state_name(0), float(bms.pack_soc[0]), trips)
