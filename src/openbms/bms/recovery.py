"""Recovery (docs/behaviour.md §4): the resets, the service clear, sleep and boot.

Which reset may clear which recovery class is the table ``recovery_classes.CLEARERS``; these
functions apply it, and clear only faults whose condition is gone ("root cause first":
``faults.present``). They act on the ``BrainState`` they are given; ``Bms`` keeps a method for
each entry point other layers or tests call, so the brain stays the one object they talk to.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from openbms.bms import faults
from openbms.bms.events import Event
from openbms.bms.fault_hooks import hooks_of
from openbms.bms.interface import Measurements
from openbms.bms.recovery_classes import (
    CLEARERS,
    CLEARS_BY_SOFT_RESET,
    PERSISTENT,
    RECOVERY_CLASSES,
    RESET_METHODS,
)
from openbms.bms.state import BrainState

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


# ----------------------------------------------------------------- soft reset and service clear
def soft_reset_one(brain: BrainState, pack: int, t_s: float, method: str, events: list[Event]) -> None:
    """A soft reset of one pack: wakes it, clears what its class and its condition allow."""
    present = faults.present(brain)[pack]
    active = brain.active[pack]
    stays_latched = active & ~CLEARS_BY_SOFT_RESET[brain.recovery_class[pack]]
    persists = active & ~stays_latched & present
    clears = active & ~stays_latched & ~present
    if brain.sleeping[pack]:
        brain.sleeping[pack] = False
        brain.sleep_timer_s[pack] = 0.0
        events.append(Event(t_s, pack, "wake", {"by": method}))
    row = np.zeros((brain.packs, brain.table.size), dtype=bool)
    row[pack] = clears
    if clears.any():
        faults.clear(brain, row, t_s, "soft_reset", events)
    for j in np.nonzero(persists)[0]:
        brain.release_timer_s[pack, j] = 0.0
        events.append(
            Event(t_s, pack, "fault_persisted_after_reset", {"fault": brain.table.names[j], "method": method})
        )
    # Recovery timers restart; a reading that tripped nothing yet starts its count afresh.
    brain.trip_timer_s[pack] = 0.0
    brain.recovery_blocked[pack] = False
    brain.reset_counts[pack, RESET_METHODS.index(method)] += 1
    latched = [brain.table.names[j] for j in np.nonzero(stays_latched)[0]]
    persisting = [brain.table.names[j] for j in np.nonzero(persists)[0]]
    if latched:
        result, reason = "refused", "needs a hard reset or service: " + ", ".join(latched)
    elif persisting:
        result, reason = "ok", "condition still present: " + ", ".join(persisting)
    else:
        result, reason = "ok", ""
    fields: dict[str, Any] = {"method": method, "result": result}
    if reason:
        fields["reason"] = reason
    events.append(Event(t_s, pack, "reset", fields))
    brain.dirty[pack] = True


def service_clear(brain: BrainState, pack: int, fault: str, authenticated: bool, t_s: float) -> list[Event]:
    """The maintenance command for latched and persistent faults: refused while the condition
    is present, always logged (docs/behaviour.md §4)."""
    events: list[Event] = []
    brain.reset_counts[pack, RESET_METHODS.index("service")] += 1
    brain.dirty[pack] = True
    reason = _service_refusal(brain, pack, fault, authenticated)
    if reason:
        fields = {"method": "service", "result": "refused", "fault": fault, "reason": reason}
        events.append(Event(t_s, pack, "reset", fields))
        return events
    row = np.zeros((brain.packs, brain.table.size), dtype=bool)
    row[pack, brain.table.index(fault)] = True
    faults.clear(brain, row, t_s, "service", events)
    events.append(Event(t_s, pack, "reset", {"method": "service", "result": "ok", "fault": fault}))
    return events


def _service_refusal(brain: BrainState, pack: int, fault: str, authenticated: bool) -> str:
    """Why a service clear of ``fault`` is refused, or "" if it is not."""
    if fault not in brain.table.names:
        return "unknown fault"
    j = brain.table.index(fault)
    if not brain.active[pack, j]:
        return "fault not active"
    if not authenticated:
        return "not authenticated"
    if not CLEARERS[brain.recovery_class[pack, j]].service and not brain.profile.reset.service_clears_latched:
        return "the profile does not allow a service clear of latched faults"
    hooks = hooks_of(fault)
    if faults.present(brain)[pack, j] or (hooks.still_present is not None and hooks.still_present(brain, pack)):
        return "condition still present"
    return ""


# ----------------------------------------------------------------- sleep
def update_sleep(
    brain: BrainState, m: Measurements, current_a: FloatArray, t_s: float, dt_s: float, events: list[Event]
) -> list[tuple[int, str]]:
    """Sleep after a long under-voltage with no charge current; wake on a charger's rising edge
    (after it was away ``rearm_s``) or the reset button (docs/behaviour.md §4).

    Returns the soft resets this cycle calls for, as (pack, method): the brain does them at once.
    """
    settings = brain.profile.sleep
    sleepy = brain.active & brain.sleep_columns
    # Charge current counts only once it has flowed ``charge_confirm_s``: measurement noise around
    # 0 A crosses the rest current now and then, and must not keep a flat pack awake for ever.
    brain.charging_s = np.where(current_a > brain.rest_current_a, brain.charging_s + dt_s, 0.0)
    charging = brain.charging_s >= settings.charge_confirm_s
    asleep_soon = sleepy.any(axis=1) & ~charging & ~brain.sleeping
    brain.sleep_timer_s = np.where(asleep_soon, brain.sleep_timer_s + np.where(brain.sleep_seen, dt_s, 0.0), 0.0)
    brain.sleep_seen = asleep_soon
    falling_asleep = (brain.sleep_timer_s >= settings.delay_s) & ~brain.sleeping
    charger = m.charger_present
    away_before = brain.charger_away_s
    rising = charger & ~brain.charger_was_present & (away_before >= settings.rearm_s)
    brain.charger_away_s = np.where(charger, 0.0, away_before + dt_s)
    brain.charger_was_present = charger
    for pack in np.nonzero(falling_asleep)[0]:
        reason = brain.table.names[int(np.argmax(sleepy[pack]))]
        events.append(Event(t_s, int(pack), "sleep", {"reason": reason}))
        # A charger already there does not wake it; one absent now counts as long gone.
        brain.charger_away_s[pack] = 0.0 if charger[pack] else settings.rearm_s
    brain.sleeping |= falling_asleep
    wake_by_charger = brain.sleeping & rising & ~falling_asleep
    return [
        (int(pack), "button" if m.reset_button[pack] else "charger")
        for pack in np.nonzero(wake_by_charger | m.reset_button)[0]
    ]


# ----------------------------------------------------------------- boot
def boot(brain: BrainState, packs: BoolArray, method: str) -> None:
    """Power came back after a full loss: volatile state is gone (the brain restores the memory).
    The checks happen in the next ``step``: every protection is evaluated before a FET closes."""
    brain.reset_volatile(packs)
    for pack in np.nonzero(packs)[0]:
        brain.booting[pack] = True
        brain.boot_method[pack] = method


def boot_checks(brain: BrainState, m: Measurements, t_s: float, events: list[Event]) -> None:
    """First cycle after a boot: detect a replaced cell against the remembered voltages."""
    threshold_v = brain.profile.cell_change.threshold_v
    for pack in np.nonzero(brain.booting)[0]:
        before = brain.remembered_cell_v[pack]
        now = m.cell_v[pack]
        if not (np.isfinite(before).all() and np.isfinite(now).all()):
            continue
        moved = now - before
        # A new cell is a healthy one: a cell that merely sank further (a failing cell
        # discharging itself while the BMS was off) is not a replacement.
        healthy = now >= brain.healthy_min_v
        odd = (np.abs(moved - np.median(moved)) > threshold_v) & healthy
        for cell in np.nonzero(odd)[0]:
            fields = {
                "cell": int(cell) + 1,
                "v_before": round(float(before[cell]), 4),
                "v_now": round(float(now[cell]), 4),
            }
            events.append(Event(t_s, int(pack), "cell_change_detected", fields))
            brain.soc.set_cell_from_ocv(int(pack), int(cell), float(now[cell]))
            brain.health.failed[pack, cell] = False
            brain.health.falling_count[pack, cell] = 0


def boot_trips(
    brain: BrainState, m: Measurements, t_s: float, values: FloatArray, condition: BoolArray, events: list[Event]
) -> None:
    """Evaluate every protection before any FET closes; what persists re-trips at once."""
    present = faults.present(brain, values, m)
    table = brain.table
    for pack_index in np.nonzero(brain.booting)[0]:
        pack = int(pack_index)
        method = brain.boot_method[pack]
        was_active = brain.remembered_active[pack]
        kept = brain.persistent_at_boot.get(pack, [])
        at_once = np.zeros((brain.packs, table.size), dtype=bool)
        presume = np.zeros(table.size, dtype=bool)
        for j, name in enumerate(table.names):
            if not table.enabled[j]:
                continue
            # An AFE detector's own condition is not a reading here; its cause (the load or
            # short still connected) is what ``present`` judges for a remembered fault.
            now = condition[pack, j] and not table.in_afe[j]
            if name in kept or now or (name in was_active and present[pack, j]):
                at_once[pack, j] = True
            elif name in brain.remembered_over_time[pack] and table.presumed_after_boot_s[j] > 0:
                presume[j] = True
        faults.record_trips(brain, at_once, m, t_s, values, m.afe_damaged | brain.afe_damaged, events)
        _presume(brain, pack, presume, t_s, events)
        for j_index in np.nonzero(at_once[pack])[0]:
            j = int(j_index)
            name = table.names[j]
            if name in kept:
                brain.recovery_class[pack, j] = PERSISTENT
            if name in was_active:
                events.append(Event(t_s, pack, "fault_persisted_after_reset", {"fault": name, "method": method}))
        for name in sorted(was_active):
            j = table.index(name) if name in table.names else -1
            if j >= 0 and not at_once[pack, j] and not presume[j]:
                events.append(Event(t_s, pack, "fault_cleared", {"fault": name, "by": "hard_reset"}))
        if method == "hard":
            brain.reset_counts[pack, RESET_METHODS.index("hard")] += 1
            events.append(Event(t_s, pack, "reset", {"method": "hard", "result": "ok"}))
        if brain.remembered_sleeping[pack]:
            events.append(Event(t_s, pack, "wake", {"by": "power_on"}))
        brain.booting[pack] = False
        brain.dirty[pack] = True


def _presume(brain: BrainState, pack: int, presume: BoolArray, t_s: float, events: list[Event]) -> None:
    """Keep these remembered faults active until judged again: their FETs stay open."""
    if not presume.any():
        return
    table = brain.table
    brain.active[pack] |= presume
    brain.presumed[pack] = presume
    brain.over_time[pack] |= presume
    brain.presumed_until_s[pack] = np.where(presume, t_s + table.presumed_after_boot_s, 0.0)
    brain.since_s[pack] = np.where(presume, t_s, brain.since_s[pack])
    for j in np.nonzero(presume)[0]:
        fields = {
            "fault": table.names[j],
            "class": RECOVERY_CLASSES[int(brain.recovery_class[pack, j])],
            "value": None,
            "threshold": float(table.trip[j]),
            "presumed_s": float(table.presumed_after_boot_s[j]),
        }
        events.append(Event(t_s, pack, "fault_set", fields))
