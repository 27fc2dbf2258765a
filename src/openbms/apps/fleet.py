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
      faults: {cell_internal_short: 0.02, cooling_failure: 0.05}  # chance a pack has it from the start

Pack ``k`` draws from ``numpy.random.default_rng([seed, k])``: its draws do not depend on the
number of workers, the batch size or the arm, so arms are compared on the same packs and a
campaign is reproduced from its seed alone. Each pack runs on the fast engine when it may.

Per pack the result says: the trips (fault and time), the time to protect (first trip), nuisance
trips (a voltage or temperature protection that tripped while no cell's true value had left its
safe window in the protection's delay before), missed or late protections (a cell's true value
outside a window for longer than the delay and two cycles, without, or before, the trip), the
final state and the diagnosis's recommendation. The safe windows are the base scenario's own
profile (its thresholds and delays), whatever an arm sets: the arms are judged against the cells'
limits, not against themselves. Ground truth is the twin's own physics (telemetry rows, one a
cycle up to 20,000 rows, decimated beyond).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from openbms.bms.protections import ProtectionTable
from openbms.profiles import load_profile
from openbms.scenario.schema import Scenario, ScenarioError, Step, load_scenario, parse_steps

MAX_PACKS = 1_000_000
# Injectable from a campaign, with the parameters each needs (a cell is drawn where one is named).
FAULT_STEPS: dict[str, dict[str, Any]] = {
    "cell_internal_short": {"resistance_ohm": 20.0, "cell": True},
    "capacity_fade": {"soh": 0.7, "cell": True},
    "cooling_failure": {"cell": True},
    "sensor_drift": {"sensor": "cell_v", "per_hour": 0.01, "cell": True},
    "open_balance_wire": {"cell": True},
}
# The quantities whose ground truth the telemetry carries: name -> how to reduce a row's cells.
TRUTH = {
    "max_cell_v": ("v", np.max),
    "min_cell_v": ("v", np.min),
    "max_cell_t": ("t", np.max),
    "min_cell_t": ("t", np.min),
}


Judgement = tuple[list[str], list[str], list[str]]  # nuisance trips, missed, late protections
Task = tuple[str, dict[str, Any], dict[str, Any], list[int], int, str]  # base, campaign, arm, packs, series, engine


class CampaignError(ValueError):
    """A campaign file that cannot be run; one sentence."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Range = tuple[float, float]


class Draws(_Strict):
    soc: Range | None = None
    ambient_c: Range | None = None
    capacity_spread: Range | None = None
    resistance_spread: Range | None = None
    faults: dict[str, float] = Field(default_factory=dict)

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
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise CampaignError(f"cannot read the campaign {path}: {err}") from None
    try:
        campaign = Campaign.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise CampaignError(f"{path}: {where}: {first['msg']}") from None
    names = [a.name for a in campaign.arms]
    if len(set(names)) != len(names):
        raise CampaignError(f"{path}: arms need different names")
    base = (path.parent / campaign.scenario).resolve()
    try:
        load_scenario(base)
    except ScenarioError as err:
        raise CampaignError(f"{path}: its scenario: {err}") from None
    return campaign, base


@dataclass(frozen=True)
class PackDraw:
    pack: int
    soc: float | None
    ambient_c: float | None
    capacity_spread: float | None
    resistance_spread: float | None
    spread_seed: int
    faults: tuple[tuple[str, int], ...]  # (fault, 1-based cell)


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
    return PackDraw(pack, soc, ambient, capacity, resistance, spread_seed, faults)


def _steps_for(draw: PackDraw) -> list[Step]:
    raw: list[dict[str, Any]] = []
    if draw.ambient_c is not None:
        raw.append({"ambient": {"temperature_c": draw.ambient_c}})
    for name, cell in draw.faults:
        params = {k: v for k, v in FAULT_STEPS[name].items() if k != "cell"}
        raw.append({"inject": {"fault": name, **params, **({"cell": cell} if FAULT_STEPS[name].get("cell") else {})}})
    steps = parse_steps(raw, "campaign", {})
    return [s.model_copy(update={"index": -1 - i}) for i, s in enumerate(steps)]


def run_pack(base: Path, campaign: Campaign, arm: ArmSpec, draw: PackDraw, engine: str) -> dict[str, Any]:
    """One pack of one arm: its scenario with the draws, run, and judged against its physics."""
    from openbms.diagnose.from_twin import diagnosis_of
    from openbms.scenario.runner import ScenarioRunner

    scenario, steps = load_scenario(base)
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
            **({"temperature_c": draw.ambient_c} if draw.ambient_c is not None else {}),
        }
    )
    bms = scenario.bms.model_copy(update={"set": {**scenario.bms.set, **arm.set}})
    variant: Scenario = scenario.model_copy(update={"pack": pack, "bms": bms})
    runner = ScenarioRunner(variant, _steps_for(draw) + steps, diagnoser=diagnosis_of, engine=engine)
    result = runner.run()
    trips = [(float(e["t_s"]), str(e["fault"])) for e in result.events if e["kind"] == "fault_set"]
    # The safe window is the base scenario's own profile, whatever the arm changes: an arm that
    # trips inside it trips a nuisance, an arm that lets a cell stay outside it misses.
    window = ProtectionTable.from_profile(load_profile(scenario.bms.profile, scenario.bms.set))
    nuisance, missed, late = judge(window, result, trips)
    return {
        "arm": arm.name,
        "pack": draw.pack,
        "soc0": draw.soc,
        "ambient_c": draw.ambient_c,
        "capacity_spread": draw.capacity_spread,
        "resistance_spread": draw.resistance_spread,
        "faults_injected": json.dumps([f"{name}@{cell}" for name, cell in draw.faults]),
        "trips": json.dumps([{"t_s": t, "fault": f} for t, f in trips]),
        "trip_count": len(trips),
        "first_trip_s": trips[0][0] if trips else math.nan,
        "nuisance_trips": len(nuisance),
        "missed_protections": len(missed),
        "late_protections": len(late),
        "judgements": json.dumps({"nuisance": nuisance, "missed": missed, "late": late}),
        "final_state": str(result.final.get("state")),
        "recommendation": diagnosis_of(runner.twin, 0)[0],
        "error": result.error or "",
    }


def judge(
    table: ProtectionTable, result: Any, trips: list[tuple[float, str]]
) -> tuple[list[str], list[str], list[str]]:
    """Nuisance trips and missed/late protections: the trips against the twin's true cell values
    and the windows of ``table`` (thresholds and delays of the voltage and temperature protections)."""
    rows = result.telemetry.array()
    if len(rows) < 2:
        return [], [], []
    series = result.telemetry.series
    t = rows[:, 0]
    truth = {"v": rows[:, 7 : 7 + series], "t": rows[:, 7 + series : 7 + 2 * series]}
    dt = float(np.median(np.diff(t)))
    nuisance: list[str] = []
    missed: list[str] = []
    late: list[str] = []
    from openbms.bms.protections import QUANTITIES

    for j, name in enumerate(table.names):
        quantity = QUANTITIES[int(table.quantity_index[j])]
        if quantity not in TRUTH or not bool(table.enabled[j]):
            continue
        kind, reduce = TRUTH[quantity]
        values = reduce(truth[kind], axis=1)
        sign, trip, delay = float(table.sign[j]), float(table.trip[j]), float(table.trip_delay_s[j])
        outside = sign * (values - trip) >= 0
        set_times = [ts for ts, f in trips if f == name]
        for ts in set_times:
            window = (t >= ts - delay - 2 * dt) & (t <= ts)
            if not outside[window].any():
                nuisance.append(f"{name} at {ts:g} s")
        # Excursions: runs of rows outside the window.
        k = 0
        while k < len(t):
            if not outside[k]:
                k += 1
                continue
            start = k
            while k < len(t) and outside[k]:
                k += 1
            begin, end = float(t[start]), float(t[k - 1])
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


def _batch(args: Task) -> list[dict[str, Any]]:
    """One task: a batch of packs of one arm (top-level, so a process pool or Dask can ship it)."""
    base, campaign_doc, arm_doc, packs, series, engine = args
    campaign = Campaign.model_validate(campaign_doc)
    arm = ArmSpec.model_validate(arm_doc)
    return [run_pack(Path(base), campaign, arm, draw_pack(campaign, k, series), engine) for k in packs]


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
        with Client(scheduler) as client:
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


def report(campaign: Campaign, rows: Iterable[dict[str, Any]]) -> str:
    """The arms compared, as markdown: proportions with their 95 % Wilson intervals."""
    rows = list(rows)
    lines = [f"# {campaign.name}", "", f"{campaign.packs} packs per arm, seed {campaign.seed}.", ""]
    head = "| arm | packs | tripped | nuisance trips | missed protections | late | final states | recommendations |"
    lines += [head, "|---|---|---|---|---|---|---|---|"]
    for arm in campaign.arms:
        mine = [r for r in rows if r["arm"] == arm.name]
        n = len(mine)

        def share(count: int, n: int = n) -> str:
            low, high = wilson(count, n)
            return f"{count} ({100 * count / max(n, 1):.1f} %, 95 % CI {100 * low:.1f}–{100 * high:.1f} %)"

        tripped = sum(1 for r in mine if r["trip_count"] > 0)
        nuisance = sum(1 for r in mine if r["nuisance_trips"] > 0)
        missed = sum(1 for r in mine if r["missed_protections"] > 0)
        late = sum(1 for r in mine if r["late_protections"] > 0)
        states = _counts(r["final_state"] for r in mine)
        advice = _counts(r["recommendation"] for r in mine)
        lines.append(
            f"| {arm.name} | {n} | {share(tripped)} | {share(nuisance)} | {share(missed)} | {share(late)} "
            f"| {states} | {advice} |"
        )
    return "\n".join(lines) + "\n"


def _counts(values: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def write_results(rows: list[dict[str, Any]], out: Path, campaign: Campaign) -> tuple[Path, Path]:
    """``results.parquet`` (one row a pack and arm) and ``report.md`` in ``out``."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CampaignError("fleet results are Parquet: pip install '.[parquet]'") from None
    from openbms.files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    parquet = out / "results.parquet"
    partial = out / ".results.parquet.partial"
    pq.write_table(table, partial)
    partial.replace(parquet)
    md = out / "report.md"
    with atomic_write(md) as f:
        f.write(report(campaign, rows))
    return parquet, md
