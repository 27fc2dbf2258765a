"""The compiled guard kernel stops where the brain's debounce would first act, with the same timers.

Why a differential test: ``faults.update_faults`` / ``update_warnings`` (through
``protections.debounce``, ``elapsed`` and the ``ProtectionTable`` conditions) define when a fault
trips, clears or a warning changes; ``openbms.fast.guard`` only earns its place by finding the same
first cycle faster. ``reference_advance`` steps those Python functions cycle by cycle, as
``faults.py`` calls them; the kernel must return the same stop cycle and timers within 1e-9. Each
random case is run in segments: after a stop, the stop cycle is processed by the reference (as the
brain would) and both go on from there, so every stop of a long sequence is checked.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from openbms.bms.protections import QUANTITIES, ProtectionTable  # noqa: E402
from openbms.fast import GuardContext, GuardState, advance_guard, reference_advance  # noqa: E402
from openbms.fast.guard import reference_cycle  # noqa: E402
from openbms.profiles import load_profile  # noqa: E402

FloatArray = npt.NDArray[np.float64]
TOL = 1e-9
SAFE = {  # quantities well inside every built-in profile's limits
    "max_cell_v": 3.3,
    "min_cell_v": 3.3,
    "charge_c_rate": 0.0,
    "discharge_c_rate": 0.0,
    "max_cell_t": 25.0,
    "min_cell_t": 25.0,
    "fet_t": 25.0,
    "imbalance_v": 0.0,
}


@cache
def table_of(chemistry: str) -> ProtectionTable:
    return ProtectionTable.from_profile(load_profile(chemistry))


def assert_same_state(got: GuardState, want: GuardState, where: str) -> None:
    for a, b in zip(got.arrays(), want.arrays(), strict=True):
        if a.dtype == np.bool_:
            np.testing.assert_array_equal(a, b, err_msg=where)
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=TOL, err_msg=where)
    assert (got.timers_running, got.warnings_running) == (want.timers_running, want.warnings_running), where


def run_both(
    table: ProtectionTable,
    state: GuardState,
    context: GuardContext,
    q: FloatArray,
    load: npt.NDArray[np.bool_],
    gone: npt.NDArray[np.bool_],
    dt_s: float,
) -> list[int]:
    """Every stop over the whole sequence, kernel against reference; the stops (absolute cycles)."""
    stops = []
    start = 0
    while start < q.shape[0]:
        before = state.copy()
        stop, got = advance_guard(table, state, context, q[start:], load[start:], gone[start:], dt_s)
        assert_same_state(state, before, "the kernel changed the state it was given")
        want_stop, want = reference_advance(table, state, context, q[start:], load[start:], gone[start:], dt_s)
        assert stop == want_stop, f"kernel stopped at {start + stop}, reference at {start + want_stop}"
        assert_same_state(got, want, f"timers before cycle {start + stop}")
        if start + stop == q.shape[0]:
            break
        stops.append(start + stop)
        state, changes = reference_cycle(
            table, want, context, q[start + stop], load[start + stop], gone[start + stop], dt_s
        )
        assert changes
        start += stop + 1
    return stops


def random_quantities(table: ProtectionTable, cycles: int, packs: int, rng: np.random.Generator) -> FloatArray:
    """Each quantity wanders, with noise, around one of the thresholds of a protection watching it or
    well inside them."""
    q = np.zeros((cycles, packs, len(QUANTITIES)))
    for k in range(len(QUANTITIES)):
        rows = np.flatnonzero(table.quantity_index == k)
        if rows.size == 0:
            continue
        thresholds = np.concatenate([table.trip[rows], table.release[rows], table.warn[rows]])
        thresholds = thresholds[np.isfinite(thresholds)]
        center = float(rng.choice(thresholds))
        span = float(np.ptp(thresholds)) if thresholds.size > 1 else 0.0
        scale = max(0.3 * span, 0.02 * abs(center), 0.01)
        if rng.random() < 0.6:  # most quantities sit well inside their limits, as in a real run
            center = float(thresholds.min() - 4 * scale if table.sign[rows[0]] > 0 else thresholds.max() + 4 * scale)
        walk = np.cumsum(rng.normal(0.0, 0.15 * scale, (cycles, packs)), axis=0)
        noise = rng.normal(0.0, rng.choice([0.0, 0.05, 0.3]) * scale, (cycles, packs))
        q[:, :, k] = center + rng.uniform(-1.0, 1.0, packs) * scale + walk + noise
        if rng.random() < 0.1:
            q[rng.random((cycles, packs)) < 0.05, k] = np.nan  # a missing reading compares false
    return q


def random_state(packs: int, n: int, rng: np.random.Generator) -> GuardState:
    if rng.random() < 0.5:
        return GuardState.zeros(packs, n)
    timer = rng.uniform(0.0, 3.0, (packs, n)) * (rng.random((packs, n)) < 0.3)
    return GuardState(
        trip_timer_s=timer,
        trip_seen=rng.random((packs, n)) < 0.3,
        release_timer_s=rng.uniform(0.0, 3.0, (packs, n)) * (rng.random((packs, n)) < 0.3),
        release_seen=rng.random((packs, n)) < 0.3,
        warn_timer_s=rng.uniform(0.0, 1.0, (packs, n)) * (rng.random((packs, n)) < 0.3),
        warn_seen=rng.random((packs, n)) < 0.3,
        warn_gone_s=rng.uniform(0.0, 5.0, (packs, n)),
        warning_active=rng.random((packs, n)) < 0.1,
        timers_running=bool(timer.any()) or bool(rng.random() < 0.5),
        warnings_running=bool(rng.random() < 0.5),
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chemistry=st.sampled_from(["lfp", "nmc", "lto"]),
    packs=st.integers(1, 5),
    cycles=st.integers(1, 150),
    dt_s=st.floats(0.1, 1.0),
    active_fraction=st.sampled_from([0.0, 0.0, 0.1, 0.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernel_stops_where_the_reference_first_acts(
    chemistry: str, packs: int, cycles: int, dt_s: float, active_fraction: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    table = table_of(chemistry)
    n = table.size
    q = random_quantities(table, cycles, packs, rng)
    load = rng.random((cycles, packs)) < rng.choice([0.0, 0.5, 1.0])
    gone = rng.random((cycles, packs)) < rng.choice([0.0, 0.5, 1.0])
    context = GuardContext.of(
        table,
        active=rng.random((packs, n)) < active_fraction,
        may_clear=rng.random((packs, n)) < 0.7,
        warn_allowed=rng.random((packs, n)) < 0.9,
    )
    run_both(table, random_state(packs, n, rng), context, q, load, gone, dt_s)


def safe_run(table: ProtectionTable, cycles: int, packs: int) -> FloatArray:
    q = np.zeros((cycles, packs, len(QUANTITIES)))
    for name, value in SAFE.items():
        q[:, :, QUANTITIES.index(name)] = value
    return q


def test_an_overvoltage_held_trips_when_its_delay_has_elapsed() -> None:
    """LFP cell_overvoltage: trip 3.65 V after 1 s. Held at 3.7 V from cycle 3 at 0.1 s, time counts
    from the first sample that sees it (cycle 3), so the timer reaches 1 s at cycle 13. Its warning
    (3.6 V, half the delay) is suppressed here so only the trip stops the kernel."""
    table = table_of("lfp")
    j = table.index("cell_overvoltage")
    q = safe_run(table, 40, 1)
    q[3:, 0, QUANTITIES.index("max_cell_v")] = 3.7
    allowed = np.ones((1, table.size), dtype=bool)
    allowed[0, j] = False
    context = GuardContext.of(table, np.zeros((1, table.size), dtype=bool), warn_allowed=allowed)
    load = np.zeros((40, 1), dtype=bool)
    stop, state = advance_guard(table, GuardState.zeros(1, table.size), context, q, load, load, 0.1)
    assert stop == 13
    assert state.trip_timer_s[0, j] == pytest.approx(0.9, abs=TOL)
    assert state.trip_seen[0, j] and state.timers_running
    assert run_both(table, GuardState.zeros(1, table.size), context, q, load, load, 0.1)[0] == 13


def test_the_warning_rises_at_half_the_delay_then_the_trip() -> None:
    table = table_of("lfp")
    q = safe_run(table, 40, 1)
    q[:, 0, QUANTITIES.index("max_cell_v")] = 3.7
    context = GuardContext.of(table, np.zeros((1, table.size), dtype=bool))
    load = np.zeros((40, 1), dtype=bool)
    stops = run_both(table, GuardState.zeros(1, table.size), context, q, load, load, 0.1)
    assert stops[:2] == [5, 10]  # warning at 0.5 s, trip at 1 s (counted from cycle 0)


def test_an_active_fault_releases_after_its_release_delay() -> None:
    """cell_overvoltage active, value back under its 3.4 V release: 2 s at 0.5 s is cycle 4."""
    table = table_of("lfp")
    j = table.index("cell_overvoltage")
    q = safe_run(table, 20, 2)
    active = np.zeros((2, table.size), dtype=bool)
    active[1, j] = True
    context = GuardContext.of(table, active)
    load = np.zeros((20, 2), dtype=bool)
    stop, state = advance_guard(table, GuardState.zeros(2, table.size), context, q, load, load, 0.5)
    assert stop == 4
    assert state.release_timer_s[1, j] == pytest.approx(1.5, abs=TOL)
    # A fault whose class does not let it clear by itself never stops the kernel.
    latched = GuardContext.of(table, active, may_clear=np.zeros_like(active))
    stop, state = advance_guard(table, GuardState.zeros(2, table.size), latched, q, load, load, 0.5)
    assert stop == 20
    assert state.release_timer_s[1, j] == pytest.approx(9.5, abs=TOL)


def test_one_pack_stopping_stops_every_pack_and_quiet_runs_go_to_the_end() -> None:
    table = table_of("nmc")
    packs = 3
    q = safe_run(table, 500, packs)
    q[:, :, QUANTITIES.index("max_cell_v")] = 3.9
    load = np.zeros((500, packs), dtype=bool)
    context = GuardContext.of(table, np.zeros((packs, table.size), dtype=bool))
    stop, state = advance_guard(table, GuardState.zeros(packs, table.size), context, q, load, load, 1.0)
    assert stop == 500 and not state.timers_running and not state.warnings_running
    q[200:, 1, QUANTITIES.index("discharge_c_rate")] = 100.0
    stop, _ = advance_guard(table, GuardState.zeros(packs, table.size), context, q, load, load, 1.0)
    assert stop == 200 + 1  # warnings rise after half the delay, which is at least one cycle here
    run_both(table, GuardState.zeros(packs, table.size), context, q, load, load, 1.0)


def test_bad_shapes_are_refused() -> None:
    table = table_of("lfp")
    context = GuardContext.of(table, np.zeros((2, table.size), dtype=bool))
    q = safe_run(table, 5, 2)
    load = np.zeros((5, 2), dtype=bool)
    with pytest.raises(ValueError, match="cycles, packs"):
        advance_guard(table, GuardState.zeros(2, table.size), context, q, load[:, :1], load, 1.0)
    with pytest.raises(ValueError, match="shaped"):
        advance_guard(table, GuardState.zeros(3, table.size), context, safe_run(table, 5, 3), load, load, 1.0)
