"""The brain's protection debounce as one compiled kernel: many control cycles per call, every pack,
returning at the first cycle where anything discrete may happen.

Why: ``faults.update_faults`` and ``faults.update_warnings`` are vectorised over packs but pay
NumPy's per-call overhead every cycle, although on almost every cycle all they do is move timers.
This kernel moves the same timers (trip, release, warning, warning-gone) over a whole sequence of
per-cycle quantity rows and stops *before* the first cycle where, in any pack, a fault would be
set (a trip timer elapses for an inactive fault), an active fault would clear by itself (its
release timer elapses, its class lets it, and it is not tripping), or a warning would rise or fall.
It returns that cycle's index (or the number of cycles) and the timers as they stand before it, so
the Python brain processes that cycle itself, with its events and hooks.

What it reproduces, operation by operation (``reference_cycle`` below is the same thing written
with ``protections.debounce`` / ``elapsed`` / the ``ProtectionTable`` conditions, as
``faults.py`` calls them): the quiet-cycle shortcuts of ``faults.py`` included, i.e. trip timers
(and ``trip_seen``) are left alone in a cycle where no trip condition holds in any pack, no trip
timer is running and no trip condition was seen last cycle, release timers only move while some
fault is active, and warning timers (and ``warn_seen`` / ``warn_gone_s``) only move while a warning
is running, one was seen last cycle or some warning condition holds. Whether a cycle takes these
shortcuts is decided over the whole batch, so the kernel loops cycles outermost; a skipped cycle
changes nothing the counting path would have.

What it does not cover, and the caller must not hand it: cycles where the AFE's short-circuit
detector tripped (hardware trips; ``in_afe`` rows never trip here), brains with faults presumed
at boot (``judge_presumed`` acts on every trip), and a change of trust or of the active set
within the span (``GuardContext`` is constant over a call; untrusted readings are passed as
``warn_allowed``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from openbms.bms.protections import _TIMER_EPSILON_S, ProtectionTable, debounce, elapsed, running_after, trip_timers

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class GuardState:
    """The timers the kernel moves, shaped (packs, protections), and the two "is anything counting"
    flags ``faults.py`` keeps to skip quiet cycles (the names are ``BrainState``'s)."""

    trip_timer_s: FloatArray
    trip_seen: BoolArray
    release_timer_s: FloatArray
    release_seen: BoolArray
    warn_timer_s: FloatArray
    warn_seen: BoolArray
    warn_gone_s: FloatArray
    warning_active: BoolArray
    timers_running: bool = True
    warnings_running: bool = True

    @staticmethod
    def zeros(packs: int, protections: int) -> GuardState:
        f = np.zeros((packs, protections))
        b = np.zeros((packs, protections), dtype=bool)
        return GuardState(f, b, f.copy(), b.copy(), f.copy(), b.copy(), f.copy(), b.copy(), False, False)

    def arrays(self) -> tuple[npt.NDArray[np.float64] | npt.NDArray[np.bool_], ...]:
        return (
            self.trip_timer_s,
            self.trip_seen,
            self.release_timer_s,
            self.release_seen,
            self.warn_timer_s,
            self.warn_seen,
            self.warn_gone_s,
            self.warning_active,
        )

    def copy(self) -> GuardState:
        f = [np.array(a, dtype=np.float64, order="C") for a in self.arrays()[0::2]]
        b = [np.array(a, dtype=np.bool_, order="C") for a in self.arrays()[1::2]]
        return GuardState(
            f[0], b[0], f[1], b[1], f[2], b[2], f[3], b[3], bool(self.timers_running), bool(self.warnings_running)
        )


@dataclass(frozen=True)
class GuardContext:
    """What is constant over a call, shaped (packs, protections) unless said otherwise.

    ``may_clear`` is ``CLEARS_BY_ITSELF[brain.recovery_class]``; ``warn_allowed`` is
    ``~(brain.untrusted[:, None] & brain.from_cells)``; ``warn_hold_s`` (protections,) is
    ``brain.warn_hold_s``.
    """

    active: BoolArray
    may_clear: BoolArray
    warn_allowed: BoolArray
    warn_hold_s: FloatArray

    @staticmethod
    def of(
        table: ProtectionTable,
        active: BoolArray,
        may_clear: BoolArray | None = None,
        warn_allowed: BoolArray | None = None,
    ) -> GuardContext:
        ones = np.ones(active.shape, dtype=bool)
        return GuardContext(
            active=np.ascontiguousarray(active, dtype=bool),
            may_clear=ones if may_clear is None else np.ascontiguousarray(may_clear, dtype=bool),
            warn_allowed=ones.copy() if warn_allowed is None else np.ascontiguousarray(warn_allowed, dtype=bool),
            warn_hold_s=np.maximum(table.release_delay_s, 2.0),  # as BrainState computes it
        )


# --- the reference: faults.update_faults + update_warnings, timers only --------------------------------


def reference_cycle(
    table: ProtectionTable,
    state: GuardState,
    context: GuardContext,
    quantities: FloatArray,
    load_present: BoolArray,
    charger_gone: BoolArray,
    dt_s: float,
) -> tuple[GuardState, bool]:
    """One control cycle as ``faults.py`` runs it: the timers after it, and whether anything discrete
    (a new fault, a fault clearing by itself, a warning rising or falling) happens in it."""
    s = state.copy()
    values = table.values(quantities)
    condition = table.trip_condition(values)
    s.trip_timer_s, s.trip_seen, s.timers_running, tripping = trip_timers(
        s.trip_timer_s, s.trip_seen, s.timers_running, condition, table.trip_delay_s, dt_s
    )
    if table.in_afe.any():
        tripping = tripping & ~table.in_afe[None, :]
    active = context.active
    new = tripping & ~active
    cleared = np.zeros_like(active)
    if active.any():
        releasing = table.release_condition(values, load_present, charger_gone) & active
        s.release_timer_s = debounce(s.release_timer_s, releasing, s.release_seen, dt_s)
        s.release_seen = releasing
        released = releasing & elapsed(s.release_timer_s, table.release_delay_s)
        cleared = active & ~new & released & context.may_clear & ~tripping
    warn = table.warn_condition(values) & context.warn_allowed
    warning_changes = False
    if s.warnings_running or warn.any():
        s.warn_timer_s = debounce(s.warn_timer_s, warn, s.warn_seen, dt_s)
        s.warn_seen = warn
        gone_s = np.where(warn, 0.0, s.warn_gone_s + dt_s)
        rises = warn & elapsed(s.warn_timer_s, 0.5 * table.trip_delay_s)
        falls = gone_s >= context.warn_hold_s
        now = rises | (s.warning_active & ~falls)
        warning_changes = bool((now != s.warning_active).any())
        s.warn_gone_s = np.where(now, gone_s, 0.0)
        s.warning_active = now
        s.warnings_running = bool(now.any()) or running_after(s.warn_timer_s, warn)
    return s, bool(new.any() or cleared.any() or warning_changes)


def reference_advance(
    table: ProtectionTable,
    state: GuardState,
    context: GuardContext,
    quantities: FloatArray,
    load_present: BoolArray,
    charger_gone: BoolArray,
    dt_s: float,
) -> tuple[int, GuardState]:
    """``reference_cycle`` cycle by cycle until the first discrete change: what the kernel returns."""
    for cycle in range(quantities.shape[0]):
        after, changes = reference_cycle(
            table, state, context, quantities[cycle], load_present[cycle], charger_gone[cycle], dt_s
        )
        if changes:
            return cycle, state
        state = after
    return quantities.shape[0], state


# --- the kernel ----------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _debounce(timer: float, condition: bool, previous: bool, dt_s: float) -> float:
    if condition:
        return timer + (dt_s if previous else 0.0)
    down = timer - dt_s
    return down if down > 0.0 else 0.0


@njit(cache=True)
def due_times(trip_delay_s: FloatArray, release_delay_s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """When each protection's trip, release and warning timers have elapsed: the expressions
    ``protections.elapsed`` evaluates (delay less its epsilon; a warning at half the trip delay),
    so a compiled comparison rounds as the brain's does."""
    n = trip_delay_s.shape[0]
    trip_due = np.empty(n)
    release_due = np.empty(n)
    warn_due = np.empty(n)
    for j in range(n):
        trip_due[j] = trip_delay_s[j] - _TIMER_EPSILON_S
        release_due[j] = release_delay_s[j] - _TIMER_EPSILON_S
        warn_due[j] = 0.5 * trip_delay_s[j] - _TIMER_EPSILON_S
    return trip_due, release_due, warn_due


@njit(cache=True)
def _guard_kernel(  # noqa: PLR0912, PLR0913, PLR0915, C901
    quantity_index: npt.NDArray[np.intp],
    sign: FloatArray,
    enabled: BoolArray,
    trip: FloatArray,
    trip_delay_s: FloatArray,
    release: FloatArray,
    release_delay_s: FloatArray,
    release_mode: npt.NDArray[np.intp],
    warn: FloatArray,
    in_afe: BoolArray,
    active: BoolArray,
    may_clear: BoolArray,
    warn_allowed: BoolArray,
    warn_hold_s: FloatArray,
    quantities: FloatArray,
    load_present: BoolArray,
    charger_gone: BoolArray,
    dt_s: float,
    trip_timer_s: FloatArray,
    trip_seen: BoolArray,
    release_timer_s: FloatArray,
    release_seen: BoolArray,
    warn_timer_s: FloatArray,
    warn_seen: BoolArray,
    warn_gone_s: FloatArray,
    warning_active: BoolArray,
    running: BoolArray,  # [timers_running, warnings_running], updated in place
) -> int:
    cycles, packs = quantities.shape[0], quantities.shape[1]
    n = sign.shape[0]
    trip_due, release_due, warn_due = due_times(trip_delay_s, release_delay_s)
    any_active = bool(active.any())
    for c in range(cycles):
        # Pass 0: the batch-wide shortcuts of faults.py need "any condition in any pack".
        any_condition = False
        any_warn = False
        for p in range(packs):
            for j in range(n):
                if enabled[j]:
                    v = quantities[c, p, quantity_index[j]]
                    if sign[j] * (v - trip[j]) >= 0.0:
                        any_condition = True
                    if warn_allowed[p, j] and sign[j] * (v - warn[j]) >= 0.0:
                        any_warn = True
        do_trip = any_condition or running[0]
        do_warn = any_warn or running[1]
        if not (do_trip or do_warn or any_active):
            continue  # nothing moves and nothing can happen
        # Pass 1: would anything discrete happen in this cycle? Nothing is written yet.
        for p in range(packs):
            for j in range(n):
                v = quantities[c, p, quantity_index[j]]
                condition = enabled[j] and sign[j] * (v - trip[j]) >= 0.0
                tripping = False
                if do_trip:
                    t = _debounce(trip_timer_s[p, j], condition, trip_seen[p, j], dt_s)
                    tripping = condition and t >= trip_due[j] and not in_afe[j]
                if tripping and not active[p, j]:
                    return c
                if any_active and active[p, j] and may_clear[p, j] and not tripping:
                    releasing = _releasing(
                        v, sign[j], release[j], release_mode[j], load_present[c, p], charger_gone[c, p]
                    )
                    if releasing:
                        r = _debounce(release_timer_s[p, j], True, release_seen[p, j], dt_s)
                        if r >= release_due[j]:
                            return c
                if do_warn:
                    w_on = enabled[j] and warn_allowed[p, j] and sign[j] * (v - warn[j]) >= 0.0
                    w = _debounce(warn_timer_s[p, j], w_on, warn_seen[p, j], dt_s)
                    gone = 0.0 if w_on else warn_gone_s[p, j] + dt_s
                    rises = w_on and w >= warn_due[j]
                    now = rises or (warning_active[p, j] and not gone >= warn_hold_s[j])
                    if now != warning_active[p, j]:
                        return c
        # Pass 2: nothing happens, so the cycle's timers become the state.
        trip_running = False
        warn_running = False
        for p in range(packs):
            for j in range(n):
                v = quantities[c, p, quantity_index[j]]
                if do_trip:
                    condition = enabled[j] and sign[j] * (v - trip[j]) >= 0.0
                    t = _debounce(trip_timer_s[p, j], condition, trip_seen[p, j], dt_s)
                    trip_timer_s[p, j] = t
                    trip_seen[p, j] = condition
                    if t != 0.0 or condition:  # protections.running_after
                        trip_running = True
                if any_active:
                    releasing = active[p, j] and _releasing(
                        v, sign[j], release[j], release_mode[j], load_present[c, p], charger_gone[c, p]
                    )
                    release_timer_s[p, j] = _debounce(release_timer_s[p, j], releasing, release_seen[p, j], dt_s)
                    release_seen[p, j] = releasing
                if do_warn:
                    w_on = enabled[j] and warn_allowed[p, j] and sign[j] * (v - warn[j]) >= 0.0
                    w = _debounce(warn_timer_s[p, j], w_on, warn_seen[p, j], dt_s)
                    warn_timer_s[p, j] = w
                    warn_seen[p, j] = w_on
                    # No warning changes in this cycle: kept only while a warning is up.
                    gone = 0.0 if w_on else warn_gone_s[p, j] + dt_s
                    warn_gone_s[p, j] = gone if warning_active[p, j] else 0.0
                    if w != 0.0 or w_on or warning_active[p, j]:
                        warn_running = True
        if do_trip:
            running[0] = trip_running
        if do_warn:
            running[1] = warn_running
    return cycles


@njit(cache=True, inline="always")
def _releasing(v: float, sign: float, release: float, mode: int, load: bool, charger_gone: bool) -> bool:
    if mode == 0:
        return sign * (v - release) <= 0.0
    if mode == 1:
        return not load
    if mode == 2:
        return charger_gone
    return False


def advance_guard(
    table: ProtectionTable,
    state: GuardState,
    context: GuardContext,
    quantities: FloatArray,
    load_present: BoolArray,
    charger_gone: BoolArray,
    dt_s: float,
) -> tuple[int, GuardState]:
    """Run the kernel over ``quantities`` (cycles, packs, len(QUANTITIES)) with the per-cycle
    ``load_present`` and ``charger_gone`` (cycles, packs); return the first cycle where anything
    discrete happens (or the number of cycles) and a new state holding the timers before it.
    ``state`` is not changed."""
    quantities = np.ascontiguousarray(quantities, dtype=np.float64)
    if quantities.ndim != 3:
        raise ValueError("quantities must be shaped (cycles, packs, quantities)")
    cycles, packs = quantities.shape[:2]
    shape = (packs, table.size)
    load = np.ascontiguousarray(load_present, dtype=np.bool_)
    gone = np.ascontiguousarray(charger_gone, dtype=np.bool_)
    if load.shape != (cycles, packs) or gone.shape != (cycles, packs):
        raise ValueError("load_present and charger_gone must be shaped (cycles, packs)")
    out = state.copy()
    for a in (*out.arrays(), context.active, context.may_clear, context.warn_allowed):
        if a.shape != shape:
            raise ValueError(f"state and context arrays must be shaped {shape}, got {a.shape}")
    running = np.array([out.timers_running, out.warnings_running], dtype=np.bool_)
    stop = _guard_kernel(
        np.ascontiguousarray(table.quantity_index, dtype=np.intp),
        np.ascontiguousarray(table.sign, dtype=np.float64),
        np.ascontiguousarray(table.enabled, dtype=np.bool_),
        np.ascontiguousarray(table.trip, dtype=np.float64),
        np.ascontiguousarray(table.trip_delay_s, dtype=np.float64),
        np.ascontiguousarray(table.release, dtype=np.float64),
        np.ascontiguousarray(table.release_delay_s, dtype=np.float64),
        np.ascontiguousarray(table.release_mode, dtype=np.intp),
        np.ascontiguousarray(table.warn, dtype=np.float64),
        np.ascontiguousarray(table.in_afe, dtype=np.bool_),
        np.ascontiguousarray(context.active, dtype=np.bool_),
        np.ascontiguousarray(context.may_clear, dtype=np.bool_),
        np.ascontiguousarray(context.warn_allowed, dtype=np.bool_),
        np.ascontiguousarray(context.warn_hold_s, dtype=np.float64),
        quantities,
        load,
        gone,
        float(dt_s),
        out.trip_timer_s,
        out.trip_seen,
        out.release_timer_s,
        out.release_seen,
        out.warn_timer_s,
        out.warn_seen,
        out.warn_gone_s,
        out.warning_active,
        running,
    )
    out.timers_running, out.warnings_running = bool(running[0]), bool(running[1])
    return int(stop), out
