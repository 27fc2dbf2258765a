"""Many packs in the lanes kernel (``fast.lanes``, windows of cycles per block of packs) behave as
the Python reference does.

Why: a fleet of thousands of packs runs in ``fast.lanes``: its state transposed, a window of cycles
on one block of packs before the next block, and, when any pack stops (a trip, a warning, a charger
noticed), every block rerun to end on that cycle. A mistake there shows only with many packs and
stops at awkward places, which no one-pack scenario of test_engine.py reaches. The oracle is the
reference itself: an identical twin stepped cycle by cycle in Python (``Twin.step``), with the same
timeline of loads, chargers, heat and shorts applied to random packs at random cycles. Both must
log the same events at the same times and end every stretch with the same state (within 1e-9).

The windows and blocks are made tiny here (a few packs, a few cycles) so that stops fall inside
windows, in late blocks after early ones ran past them, and on a window's first cycle.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engine_diff import differences as engine_differences

from openbms.chemistry import load_chemistry
from openbms.fast import lanes
from openbms.fast.engine import FastEngine
from openbms.profiles import load_profile
from openbms.twin.cells import Spread
from openbms.twin.pack import Topology
from openbms.twin.simulator import Twin, TwinConfig

ROOT = Path(__file__).resolve().parents[2]
PACKS = 24
SERIES = 8
TOLERANCE = 1e-9
LANES_FROM = 1  # every batch in the lanes kernel (the engine picks it from LANES_MIN_PACKS packs)

Action = Callable[[Twin], None]


def make_twin() -> Twin:
    return Twin(
        TwinConfig(
            cell=load_chemistry("lfp").scaled_to(100.0),
            topology=Topology(SERIES, 1),
            profile=load_profile("lfp"),
            packs=PACKS,
            soc=0.55,
            spread=Spread(capacity=0.03, resistance=0.08, soc=0.04, seed=11),
            dt_s=0.5,
        )
    )


def random_timeline(rnd: random.Random, cycles: int) -> list[tuple[int, str, Action]]:
    """Actions at random cycles on random packs: loads up to past the over-current trip, chargers
    that top packs up (over-voltage warnings and trips, balancing), heat and cold, dead shorts."""
    timeline: list[tuple[int, str, Action]] = []
    for _ in range(rnd.randint(6, 14)):
        at = rnd.randrange(1, cycles)
        packs = sorted(rnd.sample(range(PACKS), rnd.randint(1, PACKS)))
        kind = rnd.choice(["load", "load", "heavy", "charger", "off", "ambient", "short", "clear"])
        amps = rnd.uniform(10.0, 90.0) if kind == "load" else rnd.uniform(110.0, 260.0)
        volts = rnd.uniform(3.45, 3.75) * SERIES
        temp = rnd.choice([-15.0, 5.0, 25.0, 48.0, 62.0])
        actions: dict[str, Action] = {
            "load": lambda t, p=packs, a=amps: t.connect_load(p, current_a=a),
            "heavy": lambda t, p=packs, a=amps: t.connect_load(p, current_a=a),
            "charger": lambda t, p=packs, v=volts: t.connect_charger(p, v, 60.0),
            "off": lambda t, p=packs: (t.disconnect_load(p), t.disconnect_charger(p)),
            "ambient": lambda t, p=packs, c=temp: t.set_ambient(p, c),
            "short": lambda t, p=packs[:1]: t.short(p, 0.002),
            "clear": lambda t, p=packs: t.clear_short(p),
        }
        timeline.append((at, f"{kind} on {packs}", actions[kind]))
    return sorted(timeline, key=lambda x: x[0])


def fast_to(twin: Twin, engine: FastEngine, cycles: int) -> None:
    """Advance ``cycles`` cycles: in the compiled engine where it may run, else in Python."""
    done = 0
    while done < cycles:
        if engine.why_not() is None:
            done += engine.run(cycles - done).cycles
        else:
            twin.step()
            done += 1


# Working values the reference recomputes each step before reading them (not state).
SCRATCH = {"cells._decay", "cells.extra_leak_a", "cells._factor", "pack.cell_current_a"}


def state_arrays(twin: Twin) -> dict[str, np.ndarray]:
    holders = {
        "cells": twin.pack.cells,
        "pack": twin.pack,
        "brain": twin.bms.brain,
        "sensors": twin.bms.sensors,
        "soc": twin.bms.soc,
        "counters": twin.bms.soc.counters,
        "health": twin.bms.health,
    }
    out = {}
    for name, holder in holders.items():
        for key, value in vars(holder).items():
            if isinstance(value, np.ndarray) and value.dtype != object and f"{name}.{key}" not in SCRATCH:
                out[f"{name}.{key}"] = value
    return out


def differences(ref: Twin, fast: Twin) -> list[str]:
    problems = []
    if ref.t_s != fast.t_s:
        problems.append(f"clock {ref.t_s} vs {fast.t_s}")
    ref_events = [(e.pack, e.as_dict()) for e in ref.events]
    fast_events = [(e.pack, e.as_dict()) for e in fast.events]
    if ref_events != fast_events:
        first = next(
            (i for i, (a, b) in enumerate(zip(ref_events, fast_events, strict=False)) if a != b),
            min(len(ref_events), len(fast_events)),
        )
        problems.append(
            f"events differ from #{first}: reference {ref_events[first : first + 2]}, "
            f"lanes {fast_events[first : first + 2]} ({len(ref_events)} vs {len(fast_events)} events)"
        )
    a, b = state_arrays(ref), state_arrays(fast)
    for key in sorted(a.keys() & b.keys()):
        x, y = a[key], b[key]
        if x.shape != y.shape:
            problems.append(f"{key}: shape {x.shape} vs {y.shape}")
            continue
        if x.dtype == bool or y.dtype == bool or x.dtype.kind in "iu":
            if not np.array_equal(x, y):
                problems.append(f"{key} differs")
            continue
        same_nan = np.isnan(x) == np.isnan(y)
        close = np.isclose(x, y, rtol=0.0, atol=TOLERANCE) | (np.isnan(x) & np.isnan(y)) | (x == y)
        if not (same_nan.all() and close.all()):
            worst = float(np.nanmax(np.abs(np.where(close, 0.0, x - y)))) if same_nan.all() else math.nan
            problems.append(f"{key} differs by {worst}")
    return problems


@pytest.fixture
def tiny_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 5 packs and windows of 7 cycles: many blocks, many windows, stops inside them."""
    monkeypatch.setattr(lanes, "WINDOW_PACKS", 5)
    monkeypatch.setattr(lanes, "WINDOW_CYCLES", 7)


def play(seed: int) -> FastEngine:
    """Play seed's random timeline on the reference and in the lanes; fail at the first difference."""
    rnd = random.Random(9100 + seed)
    cycles = 1600
    timeline = random_timeline(rnd, cycles)
    ref, fast = make_twin(), make_twin()
    engine = FastEngine(fast, lanes_min_packs=LANES_FROM)
    done = 0
    for at, what, action in [*timeline, (cycles, "end", lambda t: None)]:
        ref.run(at - done)
        fast_to(fast, engine, at - done)
        done = at
        problems = differences(ref, fast)
        assert not problems, f"seed {seed}, before '{what}' at cycle {at}:\n  " + "\n  ".join(problems)
        action(ref)
        action(fast)
    assert engine.lane_calls > 0, "the lanes kernel never ran: the test would prove nothing"
    assert len(ref.events) > 0
    return engine


@pytest.mark.parametrize("seed", range(8))
def test_a_random_fleet_timeline_runs_in_lanes_as_the_reference_does(seed: int, tiny_windows: None) -> None:
    play(seed)


def test_stops_inside_windows_make_blocks_rerun(tiny_windows: None) -> None:
    """The timelines stop the lanes mid-window after earlier blocks ran past the stop, the path most
    likely to hide a mistake; if a change of the generator stopped that, this says so."""
    assert sum(play(seed).lane_reruns for seed in range(2)) > 5


def test_the_lanes_take_large_batches_and_leave_small_ones_to_the_pack_kernel() -> None:
    """Which kernel runs is the engine's choice by batch size (both give the same results)."""
    small, large = make_twin(), make_twin()
    small_engine = FastEngine(small, lanes_min_packs=PACKS + 1)
    large_engine = FastEngine(large, lanes_min_packs=PACKS)
    for twin, engine in ((small, small_engine), (large, large_engine)):
        twin.connect_load(list(range(PACKS)), current_a=30.0)
        fast_to(twin, engine, 50)
    assert small_engine.lane_calls == 0
    assert large_engine.lane_calls > 0


def test_lane_exp_is_within_one_unit_in_the_last_place() -> None:
    """The vectorised exp the lanes use for the Arrhenius factor against the C library's."""
    from numba import njit

    pow2 = lanes.pow2_table()

    @njit(cache=False)
    def many(xs: Any, out: Any, table: Any) -> None:  # pragma: no cover - compiled
        for i in range(xs.size):
            out[i] = lanes.lane_exp(xs[i], table)

    xs = np.concatenate([np.linspace(-30.0, 30.0, 200_001), np.random.default_rng(3).uniform(-700, 700, 100_000)])
    out = np.empty_like(xs)
    many(xs, out, pow2)
    expected = np.array([math.exp(x) for x in xs])
    ulps = np.abs(out - expected) / np.spacing(expected)
    assert float(ulps.max()) <= 1.0


# Library scenarios of one pack, run with the lanes forced (``LANES_MIN_PACKS`` = 1), each against the
# reference as test_engine.py compares them: together they stop the lanes for a trip and its release,
# warnings, a charger waking a sleeping pack, balancing at the top of a charge, a stuck FET, a
# short, power and resistive loads, and a current profile in both directions. The whole library with
# the lanes forced is ``python scripts/fuzz_engines.py --lanes`` (about 5 minutes).
LANES_LIBRARY = [
    "scenarios/overcurrent-charge.yaml",
    "scenarios/healthy-pack-left-on-the-charger.yaml",
    "scenarios/overvoltage-charge.yaml",
    "scenarios/profile-bidirectional.yaml",
    "scenarios/seed/02-charger-does-not-wake-until-reconnected.yaml",
    "scenarios/overcurrent-escalation.yaml",
    "scenarios/faults/cooling-failure.yaml",
    "scenarios/loads-power-resistive.yaml",
    "scenarios/warnings-before-trip.yaml",
    "scenarios/short-circuit.yaml",
    "scenarios/faults/fet-stuck-closed.yaml",
]


@pytest.mark.parametrize("name", LANES_LIBRARY)
def test_a_library_scenario_runs_alike_with_the_lanes_forced(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes, "LANES_MIN_PACKS", 1)
    calls: list[int] = []
    original = FastEngine._call_lanes

    def counted(self: FastEngine, *args: Any, **kwargs: Any) -> int:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FastEngine, "_call_lanes", counted)
    problems = engine_differences(ROOT / name)
    assert not problems, f"{name}: the lanes differ from the reference:\n  " + "\n  ".join(problems)
    assert calls, f"{name} never ran in the lanes: it proves nothing here"
