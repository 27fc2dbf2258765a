"""Play one scenario file on the reference and the fast engine and name the first difference.

Shared by tests/fast/test_engine.py and scripts/fuzz_engines.py. The fast engine must be
behaviourally identical to the reference, so the comparison is strict: the same events at the
same times (the event dicts equal), the same expectation results, the same ``final`` block, the
same error, the same snapshots in the non-volatile memory (saved at the same times), and
telemetry of the same shape with every value within ``TOLERANCE``. Only the
first difference of each kind is named: after one, everything downstream usually differs too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from openbms.diagnose.from_twin import diagnosis_of
from openbms.scenario.runner import RunResult, ScenarioRunner, telemetry_columns
from openbms.scenario.schema import ScenarioError, load_scenario

TOLERANCE = 1e-9  # V, A, °C, SOC: the compiled kernel reorders no arithmetic that matters more


Saves = list[tuple[int, float, dict[str, Any]]]


def run_engine(path: Path, engine: str) -> tuple[RunResult, Saves] | str:
    """The scenario's result on ``engine`` (a fresh runner, in-memory NVM) and the snapshots its
    memory holds at the end, or the error message it stopped with (both engines must then stop
    with the same one)."""
    scenario, steps = load_scenario(path)
    try:
        runner = ScenarioRunner(scenario, steps, engine=engine, diagnoser=diagnosis_of)
        return runner.run(), runner.nvm.saves()
    except ScenarioError as err:
        return f"ScenarioError: {err}"


def same(a: Any, b: Any) -> bool:
    """Exact equality in which NaN equals NaN (a stuck sensor may report NaN in an event)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def differences(path: Path) -> list[str]:
    """What differs between the two engines' runs of ``path`` (empty when they agree)."""
    ref_run = run_engine(path, "reference")
    fast_run = run_engine(path, "fast")
    if isinstance(ref_run, str) or isinstance(fast_run, str):
        if ref_run == fast_run:
            return []
        return [f"run outcome differs: reference {_short(ref_run)}, fast {_short(fast_run)}"]
    (ref, ref_saves), (fast, fast_saves) = ref_run, fast_run
    problems: list[str] = []
    problems += _first_event_difference(ref.events, fast.events)
    problems += _first_expectation_difference(ref, fast)
    if not same(ref.final, fast.final):
        keys = [k for k in ref.final if not same(ref.final.get(k), fast.final.get(k))]
        problems.append(
            "final differs in "
            + ", ".join(f"{k}: reference {ref.final.get(k)!r}, fast {fast.final.get(k)!r}" for k in keys)
        )
    if ref.error != fast.error:
        problems.append(f"error differs: reference {ref.error!r}, fast {fast.error!r}")
    problems += _first_telemetry_difference(ref, fast)
    if not same(ref_saves, fast_saves):
        problems.append(f"the memory's snapshots differ: reference {ref_saves}, fast {fast_saves}")
    return problems


def _short(outcome: tuple[RunResult, Saves] | str) -> str:
    return outcome if isinstance(outcome, str) else f"ran to t={outcome[0].final['t_s']} s"


def _first_event_difference(ref: list[dict[str, Any]], fast: list[dict[str, Any]]) -> list[str]:
    for i, (a, b) in enumerate(zip(ref, fast, strict=False)):
        if not same(a, b):
            return [f"event {i} differs: reference {a}, fast {b}"]
    if len(ref) != len(fast):
        longer, name = (ref, "reference") if len(ref) > len(fast) else (fast, "fast")
        extra = longer[min(len(ref), len(fast))]
        return [f"{len(ref)} events on the reference, {len(fast)} on fast; the first extra ({name}): {extra}"]
    return []


def _first_expectation_difference(ref: RunResult, fast: RunResult) -> list[str]:
    a = [e.as_dict() for e in ref.expectations]
    b = [e.as_dict() for e in fast.expectations]
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if not same(x, y):
            return [f"expectation {i} differs: reference {x}, fast {y}"]
    if len(a) != len(b):
        return [f"{len(a)} expectation results on the reference, {len(b)} on fast"]
    return []


def _first_telemetry_difference(ref: RunResult, fast: RunResult) -> list[str]:
    a, b = ref.telemetry.array(), fast.telemetry.array()
    if a.shape != b.shape:
        return [f"telemetry shape differs: reference {a.shape}, fast {b.shape}"]
    close = np.isclose(a, b, rtol=0.0, atol=TOLERANCE, equal_nan=True)
    if close.all():
        return []
    row, col = (int(k) for k in np.argwhere(~close)[0])
    name = telemetry_columns(ref.telemetry.series)[col]
    return [
        f"telemetry row {row} (t_s reference {float(a[row, 0])!r}, fast {float(b[row, 0])!r}) differs first in "
        f"{name}: reference {float(a[row, col])!r}, fast {float(b[row, col])!r} "
        f"({int((~close).any(axis=1).sum())} rows differ)"
    ]
