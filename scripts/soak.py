"""A month in the life of a spread 16S pack: does the BMS stay right when left alone?

Two soaks, each a batch of packs that differ only in their cells (one seeded draw of the spread
of capacity, resistance, SOC and self-discharge for the whole batch):

* ``full``: daily full cycles, as an off-grid store lives: an evening-and-night discharge until the
  lowest cell reaches 2.9 V under load (an inverter's low-voltage cut-off), a rest, then a day of
  CC/CV charging at 3.45 V per cell that stays connected for 8 h (the top of charge, when a
  top-balancing BMS does its work), then a rest until the next evening.
* ``partial``: partial cycles around 50 % SOC that never reach a full point, so the BMS's SOC is
  never recalibrated: four times a day 20 A out for an hour and 20 A back in for an hour.

Per day it reports the faults set (by kind), the top-of-charge spread (the cells' true SOC spread
and their voltage spread at the end of the charge window), the SOC error (the BMS's pack SOC
minus the twin's true pack SOC), healthy packs locked or condemned, and the process's RSS.

Usage::

    python scripts/soak.py --mode full --days 30 --packs 4
    python scripts/soak.py --mode partial --days 30 --packs 4 --json soak-partial.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openbms.chemistry import load_chemistry
from openbms.profiles import load_profile
from openbms.twin.cells import Spread
from openbms.twin.pack import Topology
from openbms.twin.simulator import ALL_PACKS, Twin, TwinConfig

SERIES = 16
CAPACITY_AH = 100.0
DAY_S = 86400.0
CHARGE_V_PER_CELL = 3.45  # the lfp profile's charge voltage limit: what a configured charger uses
CUTOFF_V = 2.9  # an inverter's low-voltage cut-off, per cell, under load


@dataclass
class Day:
    day: int
    faults: dict[str, int]
    top_soc_spread: list[float | None]  # per pack: max − min cell SOC at the end of the charge window (full mode)
    top_v_spread_mv: list[float | None]
    soc_error: list[float]  # BMS pack SOC − true pack SOC, per pack, end of day
    states: list[str]
    failed_cells: list[list[int]]
    rss_mb: float
    wall_s: float


@dataclass
class Soak:
    mode: str
    packs: int
    dt_s: float
    days: list[Day] = field(default_factory=list)


def make_twin(packs: int, soc: float, dt_s: float, seed: int) -> Twin:
    return Twin(
        TwinConfig(
            cell=load_chemistry("lfp").scaled_to(CAPACITY_AH),
            topology=Topology(SERIES, 1),
            profile=load_profile("lfp"),
            packs=packs,
            soc=soc,
            temperature_c=25.0,
            spread=Spread(capacity=0.02, resistance=0.05, soc=0.01, self_discharge=0.2, seed=seed),
            dt_s=dt_s,
        ),
        keep_events=True,
    )


def true_pack_soc(twin: Twin) -> np.ndarray:
    """The same definition the BMS uses, on the twin's true group SOCs (in Ah of rated capacity)."""
    cells = twin.pack.cells
    charge = cells.soc * cells.capacity_ah / cells.params.capacity_ah
    low, high = np.clip(charge.min(axis=1), 0, 1), np.clip(charge.max(axis=1), 0, 1)
    result: np.ndarray = np.clip(low / np.maximum(1.0 - high + low, 1e-9), 0.0, 1.0)
    return result


class Runner:
    """Steps the twin, keeping only counts of what happened (memory stays flat)."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.faults: Counter[str] = Counter()

    def run(self, seconds: float, stop: Any = None) -> None:
        steps = round(seconds / self.twin.dt_s)
        for _ in range(steps):
            self.twin.step()
            if self.twin.events:
                for event in self.twin.events:
                    if event.kind == "fault_set":
                        self.faults[str(event.fields["fault"])] += 1
                self.twin.events.clear()
            if stop is not None:
                stop(self.twin)

    def load(self, current_a: float | np.ndarray) -> None:
        self.twin.connect_load(ALL_PACKS, current_a=current_a)

    def no_load(self) -> None:
        self.twin.disconnect_load(ALL_PACKS)

    def charger(self, voltage_v: float, current_a: float) -> None:
        self.twin.connect_charger(ALL_PACKS, voltage_v, current_a)

    def no_charger(self) -> None:
        self.twin.disconnect_charger(ALL_PACKS)


def cut_off_low_packs(twin: Twin) -> None:
    """An inverter stops drawing from a pack whose lowest cell sags to the cut-off."""
    twin.disconnect_load(twin.pack.group_v.min(axis=1) <= CUTOFF_V)


def full_day(r: Runner) -> tuple[np.ndarray, np.ndarray]:
    r.load(50.0)
    r.run(2.2 * 3600, stop=cut_off_low_packs)
    r.no_load()
    r.run(1 * 3600)
    r.charger(CHARGE_V_PER_CELL * SERIES, 50.0)
    r.run(8 * 3600)
    soc = r.twin.pack.cells.soc  # each cell's own state of charge: top-balanced means equal at the top
    soc_spread = soc.max(axis=1) - soc.min(axis=1)
    r.no_charger()
    r.run(30 * 60)
    v = r.twin.last_measurements.cell_v
    v_spread = (v.max(axis=1) - v.min(axis=1)) * 1000.0
    r.run(DAY_S - (2.2 + 1 + 8 + 0.5) * 3600)
    return soc_spread, v_spread


def partial_day(r: Runner) -> tuple[np.ndarray, np.ndarray]:
    for _ in range(4):
        r.load(20.0)
        r.run(3600)
        r.no_load()
        r.charger(3.60 * SERIES, 20.0)  # CC all the way: the cells stay on the plateau
        r.run(3600)
        r.no_charger()
        r.run(4 * 3600)
    nothing = np.full(r.twin.config.packs, np.nan)  # no top of charge in this mode
    return nothing, nothing


def _finite(x: float, digits: int) -> float | None:
    """Strict JSON has no NaN: a figure that does not apply is null."""
    return round(float(x), digits) if np.isfinite(x) else None


def rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def soak(mode: str, days: int, packs: int, dt_s: float, seed: int, out: Any) -> Soak:
    twin = make_twin(packs, 0.9 if mode == "full" else 0.5, dt_s, seed)
    r = Runner(twin)
    result = Soak(mode, packs, dt_s)
    day_fn = full_day if mode == "full" else partial_day
    started = time.perf_counter()
    for day in range(1, days + 1):
        before = Counter(r.faults)
        soc_spread, v_spread = day_fn(r)
        soc_error = twin.bms.pack_soc - true_pack_soc(twin)
        record = Day(
            day=day,
            faults=dict(r.faults - before),
            top_soc_spread=[_finite(x, 4) for x in soc_spread],
            top_v_spread_mv=[_finite(x, 1) for x in v_spread],
            soc_error=[round(float(x), 5) for x in soc_error],
            states=[twin.state_name(p) for p in range(packs)],
            failed_cells=[[int(c) + 1 for c in np.nonzero(twin.bms.health.failed[p])[0]] for p in range(packs)],
            rss_mb=round(rss_mb(), 1),
            wall_s=round(time.perf_counter() - started, 1),
        )
        result.days.append(record)
        print(json.dumps(record.__dict__), file=out, flush=True)
    return result


def summary(result: Soak) -> dict[str, Any]:
    total: Counter[str] = Counter()
    for d in result.days:
        total.update(d.faults)
    first, last = result.days[0], result.days[-1]
    errors = np.array([d.soc_error for d in result.days])
    drift = np.polyfit(np.arange(1, len(result.days) + 1), errors, 1)[0] if len(result.days) > 1 else errors[0]
    return {
        "mode": result.mode,
        "packs": result.packs,
        "days": len(result.days),
        "dt_s": result.dt_s,
        "faults_by_kind": dict(total),
        "locked_or_condemned": sum(1 for s in last.states if s == "locked") + sum(bool(c) for c in last.failed_cells),
        "top_soc_spread_first_last": [first.top_soc_spread, last.top_soc_spread],
        "top_v_spread_mv_first_last": [first.top_v_spread_mv, last.top_v_spread_mv],
        "soc_error_last": last.soc_error,
        "soc_drift_per_day": [round(float(x), 6) for x in np.atleast_1d(drift)],
        "rss_mb_first_last": [first.rss_mb, last.rss_mb],
        "wall_s": last.wall_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("full", "partial"), default="full")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--packs", type=int, default=4)
    parser.add_argument("--dt", type=float, default=1.0, help="control cycle in seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args(argv)
    if args.days < 1 or args.packs < 1 or not 0 < args.dt <= 10:
        parser.error("--days and --packs must be at least 1, --dt between 0 and 10 s")
    result = soak(args.mode, args.days, args.packs, args.dt, args.seed, sys.stdout)
    report = summary(result)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"summary": report, "days": [d.__dict__ for d in result.days]}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
