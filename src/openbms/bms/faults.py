"""Faults and warnings over (packs, protections): trip, release, clear, and whether a fault's
condition is still present (docs/behaviour.md §3–§4).

Everything here is array arithmetic over the whole batch; Python loops run only over the few
(pack, fault) pairs that changed this cycle, to log them. The per-fault consequences (SOC
points, a damaged AFE, …) come from ``fault_hooks.FAULT_HOOKS``; what may clear a fault of
which recovery class comes from ``recovery_classes.CLEARERS``. A fault presumed at boot (judged
over time, docs/behaviour.md §4) is confirmed or cleared here too, in ``judge_presumed``. Every function acts
on the ``BrainState`` it is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from openbms.bms.events import Event, rounded
from openbms.bms.fault_hooks import Trip, hooks_of
from openbms.bms.interface import Measurements
from openbms.bms.protections import RELEASE_MODES, debounce, elapsed, running_after, trip_timers
from openbms.bms.recovery_classes import CLEARERS, CLEARS_BY_ITSELF, LATCHED, RECOVERY_CLASSES
from openbms.bms.state import BrainState

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_HYSTERESIS, _LOAD_REMOVED, _CHARGER_REMOVED, _NEVER = (RELEASE_MODES.index(m) for m in RELEASE_MODES)


def present(brain: BrainState, values: FloatArray | None = None, m: Measurements | None = None) -> BoolArray:
    """(packs, protections): is each fault's *condition* still there?

    A reset may clear a fault only where this is false: the value has not come back past its
    release threshold, the load or charger that caused it is still connected, or (for faults
    that never clear by themselves) the trip condition holds right now.
    """
    values = brain.last_values if values is None else values
    m = brain.last_measurements if m is None else m
    table = brain.table
    trip_now = table.trip_condition(values)
    with np.errstate(invalid="ignore"):
        not_back = ~(table.sign * (values - table.release) <= 0.0)
    mode = table.release_mode
    if m is None:
        load = np.zeros(brain.packs, dtype=bool)
        charging = np.zeros(brain.packs, dtype=bool)
    else:
        load = m.load_present
        charging = m.charger_present & (np.nan_to_num(m.current_a) > 0.0)
    found = trip_now.copy()
    found |= brain.untrusted[:, None] & brain.from_cells  # cannot verify: assume still there
    found |= brain.presumed  # judged over time and not yet judged again since a boot
    found |= (mode == _HYSTERESIS) & not_back
    found |= (mode == _LOAD_REMOVED) & load[:, None]
    found |= (mode == _CHARGER_REMOVED) & charging[:, None]
    return found


def update_faults(
    brain: BrainState,
    m: Measurements,
    t_s: float,
    dt_s: float,
    values: FloatArray,
    condition: BoolArray,
    fet_stuck: BoolArray,
    events: list[Event],
) -> None:
    """Debounce the trip conditions, set new faults, release those whose class lets them go."""
    tripping = _tripping(brain, m, dt_s, condition)
    if brain.presumed.any():
        judge_presumed(brain, tripping, t_s, events)
    new = tripping & ~brain.active
    damaged = m.afe_damaged | fet_stuck
    if not brain.active.any():
        brain.just_cleared = brain.no_faults
        if new.any():
            record_trips(brain, new, m, t_s, values, damaged, events)
        return
    table = brain.table
    # docs/behaviour.md §3: charger removed or I ≤ 0 (read with the rest-current tolerance, so sensor noise
    # around zero with the charge FET open counts as "not charging").
    charger_gone = ~m.charger_present | (m.current_a <= brain.rest_current_a)
    releasing = table.release_condition(values, m.load_present, charger_gone) & brain.active
    brain.release_timer_s = debounce(brain.release_timer_s, releasing, brain.release_seen, dt_s)
    brain.release_seen = releasing
    released = releasing & elapsed(brain.release_timer_s, table.release_delay_s)
    cleared = brain.active & ~new & released & CLEARS_BY_ITSELF[brain.recovery_class] & ~tripping
    if new.any():
        record_trips(brain, new, m, t_s, values, damaged, events)
    brain.just_cleared = cleared
    if cleared.any():
        clear(brain, cleared, t_s, None, events)


def _tripping(brain: BrainState, m: Measurements, dt_s: float, condition: BoolArray) -> BoolArray:
    """(packs, protections): conditions that held for their trip delay, or that the AFE's own
    hardware detectors (short circuit) tripped inside the cycle."""
    table = brain.table
    brain.trip_timer_s, brain.trip_seen, brain.timers_running, tripping = trip_timers(
        brain.trip_timer_s, brain.trip_seen, brain.timers_running, condition, table.trip_delay_s, dt_s
    )
    if m.short_circuit_tripped.any():
        # Hardware detectors trip inside the cycle, at the time the AFE reports.
        afe_trip = (table.in_afe & table.enabled)[None, :] & m.short_circuit_tripped[:, None]
        return np.where(table.in_afe[None, :], afe_trip, tripping)
    if table.in_afe.any():
        return tripping & ~table.in_afe[None, :]
    return tripping


def record_trips(
    brain: BrainState,
    new: BoolArray,
    m: Measurements,
    t_s: float,
    values: FloatArray,
    damaged: BoolArray,
    events: list[Event],
) -> None:
    """Set the ``new`` faults: their time, recovery class (escalated if they repeat) and event."""
    table = brain.table
    brain.active |= new
    # The release is counted from the first releasing sample after the trip.
    brain.release_timer_s[new] = 0.0
    brain.release_seen[new] = False
    for pack_index, j_index in zip(*np.nonzero(new), strict=True):
        pack, j = int(pack_index), int(j_index)
        by_afe = bool(table.in_afe[j] and m.short_circuit_tripped[pack])
        at_s = float(m.short_circuit_at_s[pack]) if by_afe else t_s
        brain.since_s[pack, j] = at_s
        recovery_class = _trip_recovery_class(brain, pack, j, at_s, bool(damaged[pack]))
        brain.recovery_class[pack, j] = recovery_class
        value = float(m.short_circuit_peak_a[pack] / brain.pack.capacity_ah) if by_afe else float(values[pack, j])
        fields: dict[str, Any] = {
            "fault": table.names[j],
            "class": RECOVERY_CLASSES[recovery_class],
            "value": rounded(value),
            "threshold": float(table.trip[j]),
        }
        on_trip = hooks_of(table.names[j]).on_trip
        if on_trip is not None:
            on_trip(brain, Trip(pack, j, t_s, at_s, m, fields, events))
        events.append(Event(at_s, pack, "fault_set", fields))


def _trip_recovery_class(brain: BrainState, pack: int, j: int, at_s: float, damaged: bool) -> int:
    """The row's class, latched once it tripped ``escalate_count`` times within the window,
    unless the fault's hook decides otherwise."""
    table = brain.table
    recovery_class = int(brain.base_recovery_class[j])
    history = brain.trip_history_s[pack, j]
    history[:-1] = history[1:].copy()
    history[-1] = at_s
    count = int(table.escalate_count[j])
    if count and history[-count] >= at_s - table.escalate_window_s[j]:
        recovery_class = LATCHED
    hook = hooks_of(table.names[j]).trip_recovery_class
    override = hook(brain, pack, damaged) if hook is not None else None
    return recovery_class if override is None else override


def clear(brain: BrainState, cleared: BoolArray, t_s: float, by: str | None, events: list[Event]) -> None:
    """Clear faults; ``by`` None means each clears by its own class (auto, charger, …)."""
    for pack, j in zip(*np.nonzero(cleared), strict=True):
        reason = by or CLEARERS[int(brain.recovery_class[pack, j])].released_by
        events.append(Event(t_s, int(pack), "fault_cleared", {"fault": brain.table.names[j], "by": reason}))
        on_clear = hooks_of(brain.table.names[j]).on_clear
        if on_clear is not None:
            on_clear(brain, int(pack))
    brain.active &= ~cleared
    brain.trip_timer_s[cleared] = 0.0
    # A fault no longer active releases nothing: its release count rests at zero, as the release
    # debounce would leave it (which is skipped in a cycle where no pack has a fault).
    brain.release_timer_s[cleared] = 0.0
    brain.release_seen[cleared] = False
    brain.since_s[cleared] = np.nan
    brain.over_time &= ~cleared
    brain.recovery_class = np.where(cleared, brain.base_recovery_class[None, :], brain.recovery_class)


def update_warnings(brain: BrainState, t_s: float, dt_s: float, values: FloatArray, events: list[Event]) -> None:
    """A warning rises after half the trip delay and falls only after its condition has been
    gone for the release delay (at least 2 s), so noise near the threshold does not flicker.

    A quiet cycle (no warning condition, ``warnings_running`` False: no timer counting, no
    condition seen last cycle, no warning up) skips the arithmetic, which would change nothing:
    the time gone is kept only while a warning is up (elsewhere nothing reads it) and rests at 0."""
    table = brain.table
    warn = table.warn_condition(values)
    if brain.untrusted.any():
        warn &= ~(brain.untrusted[:, None] & brain.from_cells)
    if not brain.warnings_running and not warn.any():
        return
    brain.warn_timer_s = debounce(brain.warn_timer_s, warn, brain.warn_seen, dt_s)
    brain.warn_seen = warn
    gone_s = np.where(warn, 0.0, brain.warn_gone_s + dt_s)
    rises = warn & elapsed(brain.warn_timer_s, 0.5 * table.trip_delay_s)
    falls = gone_s >= brain.warn_hold_s
    now = rises | (brain.warning_active & ~falls)
    rising = now & ~brain.warning_active & ~brain.active & ~brain.just_cleared
    brain.warn_gone_s = np.where(now, gone_s, 0.0)
    brain.warning_active = now
    brain.warnings_running = bool(now.any()) or running_after(brain.warn_timer_s, warn)
    for pack, j in zip(*np.nonzero(rising), strict=True):
        fields = {
            "warning": table.names[j],
            "value": rounded(float(values[pack, j])),
            "threshold": float(table.warn[j]),
        }
        events.append(Event(t_s, int(pack), "warning", fields))


def judge_presumed(brain: BrainState, tripping: BoolArray, t_s: float, events: list[Event]) -> None:
    """A fault presumed present at boot is confirmed when its condition trips again with fresh
    readings, and cleared (by the hard reset) once its judgement window has passed."""
    confirmed = brain.presumed & tripping
    for pack, j in zip(*np.nonzero(confirmed), strict=True):
        fields = {"fault": brain.table.names[j], "method": brain.boot_method[pack]}
        events.append(Event(t_s, int(pack), "fault_persisted_after_reset", fields))
    expired = brain.presumed & ~confirmed & (t_s >= brain.presumed_until_s)
    brain.presumed &= ~(confirmed | expired)
    if expired.any():
        clear(brain, expired, t_s, "hard_reset", events)
