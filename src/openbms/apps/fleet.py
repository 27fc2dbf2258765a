"""Fleet campaigns: one base scenario played by many packs drawn from the spread a fleet has, under
one or more settings (arms), and what each arm did to them.

A campaign file (YAML)::

    name: under-voltage limit, stock vs 2.8 V
    scenario: ../scenarios/undervoltage-load.yaml   # relative to this file
    packs: 200                                      # per arm; every arm gets the same packs
    seed: 1
    batch: 25                                       # packs per task
    arms:
      - {name: stock}
      - {name: early, set: {protections.cell_undervoltage.trip_v: 2.8}}
    draw:
      soc: [0.2, 0.9]            # initial SOC, uniform
      ambient_c: [0, 40]         # ambient temperature, uniform, from the start
      capacity_spread: [0.0, 0.04]   # cell-to-cell spread within a pack, uniform
      resistance_spread: [0.0, 0.10]
      soh: [0.8, 1.0]            # ageing: every cell's capacity as this share of new
      faults: {cell_internal_short: 0.02, cooling_failure: 0.05}  # chance a pack has it from the start
      usage: {generator: evening, current_a: [20, 60], duration_s: [3600, 7200], start_s: 0}
      # ambient: {generator: day_night, mean_c: [5, 35], amplitude_c: [2, 8]}   # a series, instead of ambient_c

``usage`` is the pack's current profile, played from the start as a ``profile`` step plays a CSV:
one of ``csv: [FILE, ...]`` (columns t_s, current_a, positive charging) picked per pack, or a
generator of ``openbms.apps.fleet_series`` (``evening``: current_a for duration_s from start_s;
``pulses``: current_a for on_s, off for off_s, for duration_s from start_s), each parameter a
number or a range. ``mode: replace`` (the default) drops the base's load and profile steps;
``add`` keeps its load. ``ambient`` is a temperature series applied as ``ambient`` steps at its
times (the runs of the base split there; the base may then hold no ``run_until``), the pack
starting at its first value: ``csv: [FILE, ...]`` (columns t_s, temperature_c) or the
``day_night`` generator (mean_c + amplitude_c cos(2 pi (t - peak_s) / period_s), a step every
step_s). Files are relative to the campaign file and read when it is loaded: a missing or bad
one, an unknown generator or parameter, or a bad range is refused in one sentence.

Pack ``k`` draws from ``numpy.random.default_rng([seed, k])``: its draws do not depend on the
number of workers, the batch size or the arm, so arms are compared on the same packs and a
campaign is reproduced from its seed alone. ``usage``, ``ambient`` and ``soh`` are drawn after
every other key, in that order, so adding them changes no earlier draw. Both ends of each range
must be values the scenario accepts for the field it sets. Each pack runs on the fast engine when it may.

Per pack the result says: the trips (fault and time), the time to protect (first trip), nuisance
trips (a voltage or temperature protection that tripped while no cell's true value had come within
the board's sensor error of its limit in the protection's delay before), missed or late protections
(a cell's true value beyond the limit itself for longer than the delay and two cycles, without, or
before, the trip), the
final state, the diagnosis's recommendation, the faults still active and ``reset_needed``: what
the pack needs before it works again, ``none``, ``soft_reset``, ``hard_reset`` or ``service``, the
most of the recommendation (``replace_cells`` is a service visit; ``fix_root_cause`` alone needs
no reset) and the arm's recovery class of each fault still active (docs/behaviour.md §4.1:
``soft`` a soft reset, ``latched`` a hard reset, ``persistent`` service). The report gives each
arm's share of packs needing a hard reset or service, with its Wilson interval like every share.
The safe windows are the base scenario's own profile (its thresholds and delays), whatever an arm
sets: the arms are judged against the cells' limits, not against themselves. Ground truth is the
twin's own physics: its true cell extremes at every cycle (``Truth``, the runner's telemetry sink;
the telemetry kept in memory is decimated on long runs).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from openbms.apps.fleet_series import (
    AMBIENT_MAX_C,
    AMBIENT_MIN_C,
    MAX_SERIES_POINTS,
    AmbientDraw,
    DrawnSeries,
    SeriesDraw,
    UsageDraw,
    ambient_extremes,
    ambient_series,
    at_times,
    draw_series,
    read_temperature_csv,
    run_length_s,
    usage_series,
    worst_points,
)
from openbms.bms.protections import ProtectionTable
from openbms.files import atomic_path
from openbms.profiles import load_profile
from openbms.scenario.runner import read_profile_csv
from openbms.scenario.schema import (
    InjectSpec,
    PackSpec,
    Scenario,
    ScenarioError,
    SpreadSpec,
    Step,
    load_scenario,
    parse_steps,
    read_document,
)
from openbms.twin.board import load_board

MAX_PACKS = 1_000_000
# Injectable from a campaign, with the parameters each needs. Every fault draws a cell; ``cell``
# passes it on, and a text parameter gets it in place of ``{cell}`` (the drifting sensor's name).
FAULT_STEPS: dict[str, dict[str, Any]] = {
    "cell_internal_short": {"resistance_ohm": 20.0, "cell": True},
    "capacity_fade": {"soh": 0.7, "cell": True},
    "cooling_failure": {"cell": True},
    "sensor_drift": {"sensor": "cell_v_{cell}", "per_hour": 0.01},
    "open_balance_wire": {"cell": True},
}
# The quantities whose ground truth the telemetry carries: name -> its column in ``Truth.values``.
TRUTH = {"max_cell_v": 0, "min_cell_v": 1, "max_cell_t": 2, "min_cell_t": 3}
# How many standard deviations of a sensor's noise count as its measurement error in the judge.
NOISE_SIGMAS = 4.0


Judgement = tuple[list[str], list[str], list[str]]  # nuisance trips, missed, late protections
Task = tuple[str, dict[str, Any], dict[str, Any], list[int], int, str]  # base, campaign, arm, packs, series, engine


class CampaignError(ValueError):
    """A campaign file that cannot be run; one sentence. A line break or other invisible character
    that comes from the file (a key, a file name) is shown escaped, so the sentence stays one line."""

    def __init__(self, message: str) -> None:
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Range = tuple[float, float]
DrawT = TypeVar("DrawT", bound=SeriesDraw)


class Draws(_Strict):
    soc: Range | None = None
    ambient_c: Range | None = None
    capacity_spread: Range | None = None
    resistance_spread: Range | None = None
    faults: dict[str, float] = Field(default_factory=dict)
    usage: UsageDraw | None = None
    ambient: AmbientDraw | None = None
    soh: Range | None = None  # ageing: every cell's capacity as a share of new (the BMS still counts the rated)

    @model_validator(mode="after")
    def _one_ambient(self) -> Draws:
        if self.ambient_c is not None and self.ambient is not None:
            raise ValueError("give ambient_c (one temperature) or ambient (a series), not both")
        return self

    @field_validator("faults")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        for name, chance in value.items():
            if name not in FAULT_STEPS:
                raise ValueError(f"{name!r} cannot be drawn; use one of {', '.join(FAULT_STEPS)}")
            if not 0 <= chance <= 1:
                raise ValueError(f"{name}: a chance is from 0 to 1")
        return value


class ArmSpec(_Strict):
    name: str = Field(min_length=1, max_length=60)
    set: dict[str, Any] = Field(default_factory=dict)


class Campaign(_Strict):
    name: str = Field(max_length=200)
    scenario: str
    packs: int = Field(ge=1, le=MAX_PACKS)
    seed: int = Field(default=0, ge=0)
    batch: int = Field(default=25, ge=1, le=100_000)
    arms: list[ArmSpec] = Field(default_factory=lambda: [ArmSpec(name="settings")], min_length=1, max_length=20)
    draw: Draws = Field(default_factory=Draws)


def load_campaign(path: Path | str) -> tuple[Campaign, Path]:
    """The campaign and its base scenario's path; refused in one sentence."""
    try:
        return _load_campaign(Path(path))
    except UnicodeEncodeError:  # a lone surrogate escape ("\ud800") in a name, a key or a path
        raise CampaignError(f"{path}: holds text that is not valid Unicode (a lone surrogate escape)") from None


def _load_campaign(path: Path) -> tuple[Campaign, Path]:
    try:
        raw, _ = read_document(path)
    except ScenarioError as err:
        raise CampaignError(f"cannot read the campaign: {err}") from None
    try:
        campaign = Campaign.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise CampaignError(f"{path}: {where}: {str(first['msg']).removeprefix('Value error, ')}") from None
    names = [a.name for a in campaign.arms]
    if len(set(names)) != len(names):
        raise CampaignError(f"{path}: arms need different names")
    base = (path.parent / campaign.scenario).resolve()
    try:
        scenario, steps = load_scenario(base)
    except ScenarioError as err:
        raise CampaignError(f"{path}: its scenario: {err}") from None
    draw = campaign.draw
    _check_ranges(path, draw, scenario)
    _check_arms(path, campaign, scenario)
    usage = None if draw.usage is None else _checked_usage(path, draw.usage, steps)
    ambient = None if draw.ambient is None else _checked_ambient(path, draw.ambient, steps)
    return campaign.model_copy(update={"draw": draw.model_copy(update={"usage": usage, "ambient": ambient})}), base


# A drawn key and the scenario field it sets: both ends of its range must be valid there (the
# scenario schema's own bounds, not restated here).
RANGE_FIELDS = {
    "soc": ("pack", "soc"),
    "ambient_c": ("pack", "temperature_c"),
    "capacity_spread": ("spread", "capacity"),
    "resistance_spread": ("spread", "resistance"),
    "soh": ("inject", "soh"),
}


def _check_ranges(path: Path, draw: Draws, scenario: Scenario) -> None:
    """Each drawn range is low to high, and both of its ends are what the field it sets accepts."""
    for key, (where, name) in RANGE_FIELDS.items():
        drawn: Range | None = getattr(draw, key)
        if drawn is None:
            continue
        if drawn[0] > drawn[1]:
            raise CampaignError(f"{path}: draw.{key}: [{drawn[0]:g}, {drawn[1]:g}] runs from high to low")
        for end in drawn:
            try:
                if where == "pack":
                    PackSpec.model_validate({**scenario.pack.model_dump(), name: end})
                elif where == "spread":
                    SpreadSpec.model_validate({**scenario.pack.spread.model_dump(), name: end})
                else:
                    InjectSpec.model_validate({"fault": "capacity_fade", "cell": 1, name: end})
            except ValidationError as err:
                says = str(err.errors()[0]["msg"]).lower()
                raise CampaignError(f"{path}: draw.{key}: {end:g} cannot be drawn: {says}") from None


def _check_arms(path: Path, campaign: Campaign, scenario: Scenario) -> None:
    """Each arm's settings over the base scenario's make a valid profile (checked here once, not
    failing in every pack's run)."""
    for arm in campaign.arms:
        try:
            load_profile(scenario.bms.profile, {**scenario.bms.set, **arm.set})
        except (KeyError, ValueError) as err:
            says = err.args[0] if err.args else err  # a KeyError's str() would quote its message
            raise CampaignError(f"{path}: arm {arm.name!r}: {says}") from None


def _with_files(path: Path, spec: DrawT, key: str, read: Callable[[Path], Any]) -> DrawT:
    """``spec`` with its CSV files as absolute paths (a worker knows no campaign folder), each read
    once here so that a missing or malformed file is refused before any pack runs."""
    if spec.csv is None:
        return spec
    files = [str((path.parent / name).resolve()) for name in spec.csv]
    for name in files:
        try:
            read(Path(name))
        except ScenarioError as err:
            raise CampaignError(f"{path}: draw.{key}.csv: {err}") from None
    return spec.model_copy(update={"csv": files})


def _checked_usage(path: Path, spec: UsageDraw, steps: list[Step]) -> UsageDraw:
    if spec.mode == "add" and any(s.kind == "profile" for s in steps):
        raise CampaignError(
            f"{path}: draw.usage: mode add needs a base scenario without a profile step (one profile plays at a time)"
        )
    if spec.generator is not None and worst_points(spec, 0.0) > MAX_SERIES_POINTS:
        raise CampaignError(f"{path}: draw.usage: more than {MAX_SERIES_POINTS:,} pulses; lengthen on_s or off_s")
    return _with_files(path, spec, "usage", read_profile_csv)


def _checked_ambient(path: Path, spec: AmbientDraw, steps: list[Step]) -> AmbientDraw:
    if any(s.kind == "run_until" for s in steps):
        raise CampaignError(
            f"{path}: draw.ambient: a series needs a base scenario without run_until (its times must be known)"
        )
    if spec.generator is not None:
        low, high = ambient_extremes(spec)
        if low < AMBIENT_MIN_C or high > AMBIENT_MAX_C:
            raise CampaignError(f"{path}: draw.ambient: mean_c ± amplitude_c must stay within -60..120 °C")
        if worst_points(spec, run_length_s(steps)) > MAX_SERIES_POINTS:
            raise CampaignError(
                f"{path}: draw.ambient: more than {MAX_SERIES_POINTS:,} ambient steps over the run; lengthen step_s"
            )
    return _with_files(path, spec, "ambient", read_temperature_csv)


@dataclass(frozen=True)
class PackDraw:
    pack: int
    soc: float | None
    ambient_c: float | None
    capacity_spread: float | None
    resistance_spread: float | None
    spread_seed: int
    faults: tuple[tuple[str, int], ...]  # (fault, 1-based cell)
    usage: DrawnSeries | None = None
    ambient: DrawnSeries | None = None
    soh: float | None = None


def draw_pack(campaign: Campaign, pack: int, series: int) -> PackDraw:
    rng = np.random.default_rng([campaign.seed, pack])
    d = campaign.draw

    def uniform(r: Range | None) -> float | None:
        return None if r is None else float(rng.uniform(min(r), max(r)))

    soc, ambient, capacity, resistance = (
        uniform(d.soc),
        uniform(d.ambient_c),
        uniform(d.capacity_spread),
        uniform(d.resistance_spread),
    )
    spread_seed = int(rng.integers(0, 2**31 - 1))
    faults = tuple(
        (name, int(rng.integers(1, series + 1))) for name, chance in sorted(d.faults.items()) if rng.random() < chance
    )
    # Drawn after every older draw, so the packs of a campaign without these keys do not change.
    usage = draw_series(rng, d.usage)
    ambient_drawn = draw_series(rng, d.ambient)
    soh = uniform(d.soh)
    return PackDraw(pack, soc, ambient, capacity, resistance, spread_seed, faults, usage, ambient_drawn, soh)


USAGE_STEP_INDEX = -1_000_000  # the drawn usage's profile step (the campaign's own steps count down from -1)
AMBIENT_STEP_INDEX = -2_000_000  # and its ambient series' steps, counting down from there


def _steps_for(draw: PackDraw, series: int) -> list[Step]:
    """The steps a pack's draws add before the base timeline, at 0 s."""
    raw: list[dict[str, Any]] = []
    if draw.ambient_c is not None:
        raw.append({"ambient": {"temperature_c": draw.ambient_c}})
    if draw.soh is not None:  # ageing: every cell faded alike (a drawn capacity_fade then sets its cell to 70 %)
        raw += [{"inject": {"fault": "capacity_fade", "cell": k, "soh": draw.soh}} for k in range(1, series + 1)]
    for name, cell in draw.faults:
        params = {k: v.format(cell=cell) if isinstance(v, str) else v for k, v in FAULT_STEPS[name].items()}
        if params.pop("cell", False):
            params["cell"] = cell
        raw.append({"inject": {"fault": name, **params}})
    steps = parse_steps(raw, "campaign", {})
    steps = [s.model_copy(update={"index": -1 - i}) for i, s in enumerate(steps)]
    if draw.usage is not None:
        label = draw.usage.csv or f"generated by {draw.usage.generator}"
        (usage,) = parse_steps([{"profile": {"csv": label}}], "campaign", {})
        steps.append(usage.model_copy(update={"index": USAGE_STEP_INDEX}))
    return steps


def _without_load(steps: list[Step]) -> list[Step]:
    """The base timeline without its load: its load and profile steps and their disconnections."""
    return [
        s
        for s in steps
        if s.kind not in ("load", "profile") and not (s.kind == "disconnect" and s.value in ("load", "profile"))
    ]


def _ambient_steps(times: Any, temps: Any) -> list[tuple[float, Step]]:
    raw = [{"ambient": {"temperature_c": float(c)}} for c in temps]
    steps = parse_steps(raw, "campaign", {})
    return [
        (float(t), s.model_copy(update={"index": AMBIENT_STEP_INDEX - i}))
        for i, (t, s) in enumerate(zip(times, steps, strict=True))
    ]


def timeline_for(
    draw: PackDraw, campaign: Campaign, steps: list[Step], dt_s: float, series: int
) -> tuple[list[Step], float | None]:
    """The pack's whole timeline (its draws' steps, then the base's with its usage and ambient
    series applied) and the temperature it starts at when its ambient series says so."""
    mode = campaign.draw.usage.mode if campaign.draw.usage is not None else "add"
    base = _without_load(steps) if draw.usage is not None and mode == "replace" else steps
    timeline = _steps_for(draw, series) + base
    if draw.ambient is None:
        return timeline, None
    times, temps = ambient_series(draw.ambient, run_length_s(steps))
    timeline = at_times(timeline, _ambient_steps(times, temps), dt_s)
    return timeline, float(temps[0]) if round(float(times[0]) / dt_s) == 0 else None


def run_pack(base: Path, campaign: Campaign, arm: ArmSpec, draw: PackDraw, engine: str) -> dict[str, Any]:
    """One pack of one arm: its scenario with the draws, run, and judged against its physics."""
    from openbms.diagnose.from_twin import diagnosis_of
    from openbms.scenario.runner import ScenarioRunner

    scenario, base_steps = load_scenario(base)
    steps, start_c = timeline_for(draw, campaign, base_steps, scenario.dt, scenario.pack.series)
    start_c = draw.ambient_c if start_c is None else start_c
    spread = scenario.pack.spread.model_copy(
        update={
            "seed": draw.spread_seed,
            **({"capacity": draw.capacity_spread} if draw.capacity_spread is not None else {}),
            **({"resistance": draw.resistance_spread} if draw.resistance_spread is not None else {}),
        }
    )
    pack = scenario.pack.model_copy(
        update={
            "spread": spread,
            **({"soc": draw.soc} if draw.soc is not None else {}),
            **({"temperature_c": start_c} if start_c is not None else {}),
        }
    )
    bms = scenario.bms.model_copy(update={"set": {**scenario.bms.set, **arm.set}})
    variant: Scenario = scenario.model_copy(update={"pack": pack, "bms": bms})
    profiles = {} if draw.usage is None else {USAGE_STEP_INDEX: usage_series(draw.usage)}
    truth = Truth(scenario.pack.series)
    runner = ScenarioRunner(
        variant, steps, diagnoser=diagnosis_of, engine=engine, profiles=profiles, telemetry_sink=truth.add
    )
    result = runner.run()
    trips = [(float(e["t_s"]), str(e["fault"])) for e in result.events if e["kind"] == "fault_set"]
    # The safe window is the base scenario's own profile, whatever the arm changes: an arm that
    # trips inside it trips a nuisance, an arm that lets a cell stay outside it misses.
    window = ProtectionTable.from_profile(load_profile(scenario.bms.profile, scenario.bms.set))
    nuisance, missed, late = judge(window, truth, trips, sensor_error(load_board(overrides=scenario.board.set).afe))
    recommendation = diagnosis_of(runner.twin, 0)[0]
    final_faults = [str(f) for f in result.final.get("faults") or []]
    # The arm's own recovery classes: what an arm sets is what its packs then need.
    recovery = {name: p.recovery for name, p in runner.profile.protections.items()}
    return {
        **_drawn_columns(arm, draw),
        "trips": json.dumps([{"t_s": t, "fault": f} for t, f in trips]),
        "trip_count": len(trips),
        "first_trip_s": trips[0][0] if trips else math.nan,
        "nuisance_trips": len(nuisance),
        "missed_protections": len(missed),
        "late_protections": len(late),
        "judgements": json.dumps({"nuisance": nuisance, "missed": missed, "late": late}),
        "final_state": str(result.final.get("state")),
        "recommendation": recommendation,
        "final_faults": json.dumps(final_faults),
        "reset_needed": reset_needed(recommendation, [recovery.get(f, "auto") for f in final_faults]),
        "error": result.error or "",
    }


# What a pack needs before it works again, least to most: nothing (or only its cause fixed: a
# charge, a cool-down), a soft reset, a hard reset, or a service visit (a technician: an
# authenticated service clear, or cells replaced). docs/behaviour.md §4.1 and §10.1.
RESET_KINDS = ("none", "soft_reset", "hard_reset", "service")
RESET_OF_RECOMMENDATION = {
    "none": "none",
    "fix_root_cause": "none",
    "soft_reset": "soft_reset",
    "hard_reset": "hard_reset",
    "replace_cells": "service",
    "service": "service",
}
RESET_OF_RECOVERY = {
    "auto": "none",
    "charger": "none",
    "load-removal": "none",
    "soft": "soft_reset",
    "latched": "hard_reset",
    "persistent": "service",
}


def reset_needed(recommendation: str, recoveries: Iterable[str]) -> str:
    """The most a pack needs of the diagnosis's recommendation and the recovery classes of the
    faults still active at the end: a diagnosis that says ``fix_root_cause`` (say, a cell still
    over its latched limit) leaves a latched fault that will then need a hard reset all the same."""
    needs = [RESET_OF_RECOMMENDATION.get(recommendation, "none")]
    needs += [RESET_OF_RECOVERY.get(r, "none") for r in recoveries]
    return max(needs, key=RESET_KINDS.index)


class Truth:
    """The twin's true cell extremes at every recorded cycle: the judge's ground truth.

    It is the runner's telemetry sink, so it sees every row (the telemetry kept in memory is
    decimated past 20,000 rows: at 1 s a day keeps one row in eight, and a crossing of a few
    seconds falls between them). It keeps 5 numbers a row (a day at 1 s: 3.5 MB)."""

    def __init__(self, series: int) -> None:
        self.series = series
        self._blocks: list[np.ndarray] = []

    def add(self, block: np.ndarray, state: str) -> None:
        v = block[:, 7 : 7 + self.series]
        t = block[:, 7 + self.series : 7 + 2 * self.series]
        self._blocks.append(np.column_stack([block[:, 0], v.max(axis=1), v.min(axis=1), t.max(axis=1), t.min(axis=1)]))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Times (rows) and values (rows, 4: the columns of ``TRUTH``)."""
        if not self._blocks:
            return np.zeros(0), np.zeros((0, 4))
        rows = np.concatenate(self._blocks)
        return rows[:, 0], rows[:, 1:]


def sensor_error(afe: Any) -> dict[str, float]:
    """How far a reading may be from the truth on this board, by kind ("v", "t"): its offset, one
    ADC step and ``NOISE_SIGMAS`` standard deviations of its noise. A trip within it of the limit is
    the sensors' doing, not the settings'."""
    return {
        "v": abs(afe.cell_v_offset_v) + afe.cell_v_resolution_v + NOISE_SIGMAS * afe.cell_v_noise_v,
        "t": afe.temperature_resolution_c + NOISE_SIGMAS * afe.temperature_noise_c,
    }


def _runs(outside: np.ndarray) -> list[tuple[int, int]]:
    """The runs of consecutive True in ``outside``, as (first, last) row indices."""
    edges = np.diff(np.concatenate(([0], outside.astype(np.int8), [0])))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), (np.nonzero(edges == -1)[0] - 1).tolist(), strict=True))


def judge(
    table: ProtectionTable, truth: Truth, trips: list[tuple[float, str]], error: dict[str, float] | None = None
) -> Judgement:
    """Nuisance trips and missed/late protections: the trips against the twin's true cell values
    and the windows of ``table`` (thresholds and delays of the voltage and temperature protections).

    A trip is a nuisance when no cell's true value came within the sensors' ``error`` of the limit
    in the delay (and two cycles) before it. A protection is missed when a true value stays beyond
    the limit itself (no allowance: safety first) longer than the delay and two cycles with no trip,
    and late when the trip comes after that."""
    t, values_all = truth.arrays()
    if len(t) < 2:
        return [], [], []
    error = error or {"v": 0.0, "t": 0.0}
    dt = float(np.median(np.diff(t)))
    nuisance: list[str] = []
    missed: list[str] = []
    late: list[str] = []
    from openbms.bms.protections import QUANTITIES

    for j, name in enumerate(table.names):
        quantity = QUANTITIES[int(table.quantity_index[j])]
        if quantity not in TRUTH or not bool(table.enabled[j]):
            continue
        values = values_all[:, TRUTH[quantity]]
        sign, trip, delay = float(table.sign[j]), float(table.trip[j]), float(table.trip_delay_s[j])
        margin = error["v" if quantity.endswith("_v") else "t"]
        near = sign * (values - trip) >= -margin
        set_times = [ts for ts, f in trips if f == name]
        for ts in set_times:
            window = (t >= ts - delay - 2 * dt) & (t <= ts)
            if not near[window].any():
                nuisance.append(f"{name} at {ts:g} s")
        for start, last in _runs(sign * (values - trip) >= 0):
            begin, end = float(t[start]), float(t[last])
            allowed = begin + delay + 2 * dt
            if end - begin <= delay + 2 * dt:
                continue
            caught = [ts for ts in set_times if begin - delay - 2 * dt <= ts <= end + dt]
            active_before = any(ts < begin for ts in set_times)
            if not caught and not active_before:
                missed.append(f"{name} from {begin:g} s to {end:g} s")
            elif caught and min(caught) > allowed:
                late.append(f"{name} at {min(caught):g} s, outside from {begin:g} s")
    return nuisance, missed, late


def _drawn_columns(arm: ArmSpec, draw: PackDraw) -> dict[str, Any]:
    """A row's first columns: the arm and what the pack drew."""
    return {
        "arm": arm.name,
        "pack": draw.pack,
        "soc0": draw.soc,
        "ambient_c": draw.ambient_c,
        "capacity_spread": draw.capacity_spread,
        "resistance_spread": draw.resistance_spread,
        "soh": draw.soh,
        "faults_injected": json.dumps([f"{name}@{cell}" for name, cell in draw.faults]),
        "usage": json.dumps(None if draw.usage is None else draw.usage.as_json()),
        "ambient_series": json.dumps(None if draw.ambient is None else draw.ambient.as_json()),
    }


def failed(row: dict[str, Any]) -> bool:
    """A pack run that raised instead of finishing: it has its draws and its error, no outcome."""
    return row.get("trip_count") is None


def _run_or_report(base: Path, campaign: Campaign, arm: ArmSpec, draw: PackDraw, engine: str) -> dict[str, Any]:
    """One pack run; one that raises (a bug) becomes a row saying so, so that a campaign of
    thousands of packs keeps the others' results, and the command says how many failed."""
    try:
        return run_pack(base, campaign, arm, draw, engine)
    except Exception as err:  # noqa: BLE001 - any failure of one pack is reported in its row
        return {**_drawn_columns(arm, draw), "error": f"the run failed: {type(err).__name__}: {err}"}


def _batch(args: Task) -> list[dict[str, Any]]:
    """One task: a batch of packs of one arm (top-level, so a process pool or Dask can ship it)."""
    base, campaign_doc, arm_doc, packs, series, engine = args
    campaign = Campaign.model_validate(campaign_doc)
    arm = ArmSpec.model_validate(arm_doc)
    return [_run_or_report(Path(base), campaign, arm, draw_pack(campaign, k, series), engine) for k in packs]


def tasks(
    campaign: Campaign, base: Path, engine: str
) -> list[tuple[str, dict[str, Any], dict[str, Any], list[int], int, str]]:
    scenario, _ = load_scenario(base)
    series = scenario.pack.series
    doc = campaign.model_dump(mode="json")
    out = []
    for arm in campaign.arms:
        for start in range(0, campaign.packs, campaign.batch):
            packs = list(range(start, min(start + campaign.batch, campaign.packs)))
            out.append((str(base), doc, arm.model_dump(mode="json"), packs, series, engine))
    return out


def run_campaign(
    campaign: Campaign,
    base: Path,
    workers: int = 1,
    scheduler: str | None = None,
    engine: str = "fast",
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Every pack of every arm, sorted by arm then pack, whatever ran them."""
    work = tasks(campaign, base, engine)
    results: list[dict[str, Any]] = []
    if scheduler is not None:
        try:
            from dask.distributed import Client
        except ImportError:
            raise CampaignError("--scheduler needs dask.distributed: pip install '.[fleet]'") from None
        try:
            client = Client(scheduler)
        except (OSError, ValueError, TimeoutError) as err:
            raise CampaignError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({err})") from None
        with client:
            futures = client.map(_batch, work, pure=False)
            for done, batch in enumerate(client.gather(futures), start=1):
                results += batch
                if progress is not None:
                    progress(done, len(work))
    elif workers <= 1:
        for done, item in enumerate(work, start=1):
            results += _batch(item)
            if progress is not None:
                progress(done, len(work))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for done, batch in enumerate(pool.map(_batch, work), start=1):
                results += batch
                if progress is not None:
                    progress(done, len(work))
    order = {a.name: i for i, a in enumerate(campaign.arms)}
    return sorted(results, key=lambda r: (order[r["arm"]], r["pack"]))


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(centre - half, 0.0), min(centre + half, 1.0))


# The shares the report compares the arms on: a heading and which packs count.
SHARES: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    ("tripped", lambda r: r["trip_count"] > 0),
    ("nuisance trips", lambda r: r["nuisance_trips"] > 0),
    ("missed protections", lambda r: r["missed_protections"] > 0),
    ("late", lambda r: r["late_protections"] > 0),
    ("hard reset or service", lambda r: r["reset_needed"] in ("hard_reset", "service")),
)


def _arm_rows(rows: list[dict[str, Any]], arm: ArmSpec) -> list[dict[str, Any]]:
    """The arm's pack runs that finished (a failed run has no outcome to count)."""
    return [r for r in rows if r["arm"] == arm.name and not failed(r)]


def report(campaign: Campaign, rows: Iterable[dict[str, Any]]) -> str:
    """The arms compared, as markdown: proportions with their 95 % Wilson intervals."""
    rows = list(rows)
    lines = [f"# {campaign.name}", "", f"{campaign.packs} packs per arm, seed {campaign.seed}.", ""]
    head = ["arm", "packs", *(name for name, _ in SHARES), "final states", "recommendations", "resets needed"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in campaign.arms:
        mine = _arm_rows(rows, arm)
        n = len(mine)

        def share(count: int, n: int = n) -> str:
            low, high = wilson(count, n)
            return f"{count} ({100 * count / max(n, 1):.1f} %, 95 % CI {100 * low:.1f}–{100 * high:.1f} %)"

        shares = [share(sum(1 for r in mine if counts(r))) for _, counts in SHARES]
        states = _counts(r["final_state"] for r in mine)
        advice = _counts(r["recommendation"] for r in mine)
        resets = _counts(r["reset_needed"] for r in mine)
        lines.append("| " + " | ".join([arm.name, str(n), *shares, states, advice, resets]) + " |")
    broken = [r for r in rows if failed(r)]
    if broken:
        lines += ["", f"{len(broken)} pack runs failed and are left out of the shares (their `error` column says why):"]
        lines += [f"- {r['arm']}, pack {r['pack']}: {r['error']}" for r in broken[:20]]
    lines += ["", "![The arms compared](report.png)"]
    return "\n".join(lines) + "\n"


def plot_report(campaign: Campaign, rows: list[dict[str, Any]], path: Path) -> None:
    """The report's shares as grouped bars, one colour an arm, each with its 95 % Wilson interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(campaign.arms)
    for k, arm in enumerate(campaign.arms):
        mine = _arm_rows(rows, arm)
        counts = [sum(1 for r in mine if counts(r)) for _, counts in SHARES]
        shares = [100 * c / max(len(mine), 1) for c in counts]
        bounds = [wilson(c, len(mine)) for c in counts]
        low = [max(s - 100 * b[0], 0.0) for s, b in zip(shares, bounds, strict=True)]
        high = [max(100 * b[1] - s, 0.0) for s, b in zip(shares, bounds, strict=True)]
        x = [i + (k - (len(campaign.arms) - 1) / 2) * width for i in range(len(SHARES))]
        axes.bar(x, shares, width, yerr=[low, high], capsize=3, label=f"{arm.name} ({len(mine)} packs)")
    axes.set_xticks(range(len(SHARES)), [name for name, _ in SHARES])
    axes.set_ylabel("packs (%), 95 % CI")
    axes.set_ylim(0, 105)
    axes.set_title(campaign.name, fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")


def _counts(values: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def write_results(rows: list[dict[str, Any]], out: Path, campaign: Campaign) -> tuple[Path, Path, Path]:
    """``results.parquet`` (one row a pack and arm), ``report.md`` and its figure ``report.png``."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CampaignError("fleet results are Parquet: pip install '.[parquet]'") from None
    from openbms.files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    parquet = out / "results.parquet"
    with atomic_path(parquet, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    png = out / "report.png"
    plot_report(campaign, rows, png)
    md = out / "report.md"
    with atomic_write(md) as f:
        f.write(report(campaign, rows))
    return parquet, md, png
