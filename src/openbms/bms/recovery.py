"""Recovery (SPEC §4): which reset clears which fault, and the resets, sleep and boot themselves.

Every active fault carries a recovery class that says what may clear it. ``CLEARERS`` is that
rule as one table, so the release, the soft reset, the hard reset and the service clear all ask
the same rows instead of comparing class numbers by hand. No clearer clears a fault whose
condition is still present ("root cause first"): that check is the brain's ``present``.

These functions act on a ``Bms`` (its state arrays are the brain's); ``Bms`` keeps a method for
each entry point other layers or tests call, so the brain stays the one object they talk to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from openbms.bms.events import Event
from openbms.bms.interface import Measurements

if TYPE_CHECKING:
    from openbms.bms.brain import Bms

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

RECOVERY_CLASSES = ("auto", "charger", "load-removal", "soft", "latched", "persistent")
AUTO, CHARGER, LOAD_REMOVAL, SOFT, LATCHED, PERSISTENT = range(len(RECOVERY_CLASSES))
RESET_METHODS = ("soft", "button", "charger", "hard", "service")


@dataclass(frozen=True)
class Clearers:
    """What may clear a fault of one recovery class once its condition is gone (SPEC §4)."""

    recovery_class: str
    by_itself: bool  # its own release (hysteresis, load or charger removed) clears it
    soft_reset: bool  # ``soft`` command, reset ``button``, ``charger`` wake
    hard_reset: bool  # power removed for longer than the hold-up: the boot forgets it
    service: bool  # authenticated service clear (latched: only if the profile allows it)
    released_by: str = "auto"  # ``fault_cleared.by`` when it clears by itself


# SPEC §4's table, in the order of RECOVERY_CLASSES. Written once as data so every clearer reads
# the same rule, and a reviewer can check it against the specification line by line.
CLEARERS: tuple[Clearers, ...] = (
    Clearers("auto", by_itself=True, soft_reset=True, hard_reset=True, service=True),
    Clearers("charger", by_itself=True, soft_reset=True, hard_reset=True, service=True, released_by="charger"),
    Clearers(
        "load-removal", by_itself=True, soft_reset=True, hard_reset=True, service=True, released_by="load_removal"
    ),
    Clearers("soft", by_itself=False, soft_reset=True, hard_reset=True, service=True),
    Clearers("latched", by_itself=False, soft_reset=False, hard_reset=True, service=False),
    Clearers("persistent", by_itself=False, soft_reset=False, hard_reset=False, service=True),
)
assert tuple(c.recovery_class for c in CLEARERS) == RECOVERY_CLASSES

# The table's columns as arrays indexed by recovery class, for whole batches at once.
CLEARS_BY_ITSELF = np.array([c.by_itself for c in CLEARERS])
CLEARS_BY_SOFT_RESET = np.array([c.soft_reset for c in CLEARERS])


def clears_by_hard_reset(recovery_class: str) -> bool:
    return CLEARERS[RECOVERY_CLASSES.index(recovery_class)].hard_reset


# ----------------------------------------------------------------- soft reset and service clear
def soft_reset_one(bms: Bms, pack: int, t_s: float, method: str, events: list[Event]) -> None:
    """A soft reset of one pack: wakes it, clears what its class and its condition allow."""
    present = bms.present()[pack]
    active = bms.active[pack]
    stays_latched = active & ~CLEARS_BY_SOFT_RESET[bms.recovery_class[pack]]
    persists = active & ~stays_latched & present
    clears = active & ~stays_latched & ~present
    if bms.sleeping[pack]:
        bms.sleeping[pack] = False
        bms.sleep_timer_s[pack] = 0.0
        events.append(Event(t_s, pack, "wake", {"by": method}))
    row = np.zeros((bms.packs, bms.table.size), dtype=bool)
    row[pack] = clears
    if clears.any():
        bms._clear(row, t_s, "soft_reset", events)
    for j in np.nonzero(persists)[0]:
        bms.release_timer_s[pack, j] = 0.0
        events.append(Event(t_s, pack, "fault_persisted_after_reset", {"fault": bms.table.names[j], "method": method}))
    # Recovery timers restart; a reading that tripped nothing yet starts its count afresh.
    bms.trip_timer_s[pack] = 0.0
    bms.recovery_blocked[pack] = False
    bms.reset_counts[pack, RESET_METHODS.index(method)] += 1
    latched = [bms.table.names[j] for j in np.nonzero(stays_latched)[0]]
    persisting = [bms.table.names[j] for j in np.nonzero(persists)[0]]
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
    bms.dirty[pack] = True


def service_clear(bms: Bms, pack: int, fault: str, authenticated: bool, t_s: float) -> list[Event]:
    """The maintenance command for latched and persistent faults: refused while the condition
    is present, always logged (SPEC §4)."""
    events: list[Event] = []
    bms.reset_counts[pack, RESET_METHODS.index("service")] += 1
    bms.dirty[pack] = True
    reason = _service_refusal(bms, pack, fault, authenticated)
    if reason:
        fields = {"method": "service", "result": "refused", "fault": fault, "reason": reason}
        events.append(Event(t_s, pack, "reset", fields))
        return events
    row = np.zeros((bms.packs, bms.table.size), dtype=bool)
    row[pack, bms.table.index(fault)] = True
    bms._clear(row, t_s, "service", events)
    events.append(Event(t_s, pack, "reset", {"method": "service", "result": "ok", "fault": fault}))
    return events


def _service_refusal(bms: Bms, pack: int, fault: str, authenticated: bool) -> str:
    """Why a service clear of ``fault`` is refused, or "" if it is not."""
    if fault not in bms.table.names:
        return "unknown fault"
    j = bms.table.index(fault)
    if not bms.active[pack, j]:
        return "fault not active"
    if not authenticated:
        return "not authenticated"
    if not CLEARERS[bms.recovery_class[pack, j]].service and not bms.profile.reset.service_clears_latched:
        return "the profile does not allow a service clear of latched faults"
    hooks = bms.hooks[j]
    if bms.present()[pack, j] or (hooks.still_present is not None and hooks.still_present(bms, pack)):
        return "condition still present"
    return ""


# ----------------------------------------------------------------- sleep
def update_sleep(
    bms: Bms, m: Measurements, current_a: FloatArray, t_s: float, dt_s: float, events: list[Event]
) -> None:
    """Sleep after a long under-voltage with no charge current; wake on a charger's rising edge
    (after it was away ``rearm_s``) or the reset button (SPEC §4)."""
    settings = bms.profile.sleep
    sleepy = bms.active & bms.sleep_columns
    # Charge current counts only once it has flowed ``charge_confirm_s``: measurement noise around
    # 0 A crosses the rest current now and then, and must not keep a flat pack awake for ever.
    bms.charging_s = np.where(current_a > bms.rest_current_a, bms.charging_s + dt_s, 0.0)
    charging = bms.charging_s >= settings.charge_confirm_s
    asleep_soon = sleepy.any(axis=1) & ~charging & ~bms.sleeping
    bms.sleep_timer_s = np.where(asleep_soon, bms.sleep_timer_s + np.where(bms._sleep_seen, dt_s, 0.0), 0.0)
    bms._sleep_seen = asleep_soon
    falling_asleep = (bms.sleep_timer_s >= settings.delay_s) & ~bms.sleeping
    charger = m.charger_present
    away_before = bms.charger_away_s
    rising = charger & ~bms._charger_was_present & (away_before >= settings.rearm_s)
    bms.charger_away_s = np.where(charger, 0.0, away_before + dt_s)
    bms._charger_was_present = charger
    for pack in np.nonzero(falling_asleep)[0]:
        reason = bms.table.names[int(np.argmax(sleepy[pack]))]
        events.append(Event(t_s, int(pack), "sleep", {"reason": reason}))
        # A charger already there does not wake it; one absent now counts as long gone.
        bms.charger_away_s[pack] = 0.0 if charger[pack] else settings.rearm_s
    bms.sleeping |= falling_asleep
    wake_by_charger = bms.sleeping & rising & ~falling_asleep
    for pack in np.nonzero(wake_by_charger | m.reset_button)[0]:
        method = "button" if m.reset_button[pack] else "charger"
        bms.soft_reset_one(int(pack), t_s, method, events)


# ----------------------------------------------------------------- boot
def boot(bms: Bms, packs: BoolArray, remembered: list[dict[str, Any] | None], method: str) -> None:
    """Power came back after a full loss: volatile state is gone, memory is restored. The checks
    happen in the next ``step``: every protection is evaluated before a FET closes."""
    bms._reset_volatile(packs)
    for pack in np.nonzero(packs)[0]:
        bms.restore(int(pack), remembered[int(pack)] if pack < len(remembered) else None)
        bms.booting[pack] = True
        bms.boot_method[pack] = method


def boot_checks(bms: Bms, m: Measurements, t_s: float, events: list[Event]) -> None:
    """First cycle after a boot: detect a replaced cell against the remembered voltages."""
    threshold_v = bms.profile.cell_change.threshold_v
    for pack in np.nonzero(bms.booting)[0]:
        before = bms.remembered_cell_v[pack]
        now = m.cell_v[pack]
        if not (np.isfinite(before).all() and np.isfinite(now).all()):
            continue
        moved = now - before
        # A new cell is a healthy one: a cell that merely sank further (a failing cell
        # discharging itself while the BMS was off) is not a replacement.
        healthy = now >= bms.healthy_min_v
        odd = (np.abs(moved - np.median(moved)) > threshold_v) & healthy
        for cell in np.nonzero(odd)[0]:
            fields = {
                "cell": int(cell) + 1,
                "v_before": round(float(before[cell]), 4),
                "v_now": round(float(now[cell]), 4),
            }
            events.append(Event(t_s, int(pack), "cell_change_detected", fields))
            bms.soc.set_cell_from_ocv(int(pack), int(cell), float(now[cell]))
            bms.health.failed[pack, cell] = False
            bms.health.falling_count[pack, cell] = 0


def boot_trips(
    bms: Bms, m: Measurements, t_s: float, values: FloatArray, condition: BoolArray, events: list[Event]
) -> None:
    """Evaluate every protection before any FET closes; what persists re-trips at once."""
    present = bms.present(values, m)
    table = bms.table
    for pack_index in np.nonzero(bms.booting)[0]:
        pack = int(pack_index)
        method = bms.boot_method[pack]
        was_active = bms.remembered_active[pack]
        kept = bms._persistent_at_boot.get(pack, [])
        at_once = np.zeros((bms.packs, table.size), dtype=bool)
        presume = np.zeros(table.size, dtype=bool)
        for j, name in enumerate(table.names):
            if not table.enabled[j]:
                continue
            # An AFE detector's own condition is not a reading here; its cause (the load or
            # short still connected) is what ``present`` judges for a remembered fault.
            now = condition[pack, j] and not table.in_afe[j]
            if name in kept or now or (name in was_active and present[pack, j]):
                at_once[pack, j] = True
            elif name in bms.remembered_over_time[pack] and table.presumed_after_boot_s[j] > 0:
                presume[j] = True
        bms._record_trips(at_once, m, t_s, values, m.afe_damaged | bms.afe_damaged, events)
        _presume(bms, pack, presume, t_s, events)
        for j_index in np.nonzero(at_once[pack])[0]:
            j = int(j_index)
            name = table.names[j]
            if name in kept:
                bms.recovery_class[pack, j] = PERSISTENT
            if name in was_active:
                events.append(Event(t_s, pack, "fault_persisted_after_reset", {"fault": name, "method": method}))
        for name in sorted(was_active):
            j = table.index(name) if name in table.names else -1
            if j >= 0 and not at_once[pack, j] and not presume[j]:
                events.append(Event(t_s, pack, "fault_cleared", {"fault": name, "by": "hard_reset"}))
        if method == "hard":
            bms.reset_counts[pack, RESET_METHODS.index("hard")] += 1
            events.append(Event(t_s, pack, "reset", {"method": "hard", "result": "ok"}))
        if bms.remembered_sleeping[pack]:
            events.append(Event(t_s, pack, "wake", {"by": "power_on"}))
        bms.booting[pack] = False
        bms.dirty[pack] = True


def _presume(bms: Bms, pack: int, presume: BoolArray, t_s: float, events: list[Event]) -> None:
    """Keep these remembered faults active until judged again: their FETs stay open."""
    if not presume.any():
        return
    table = bms.table
    bms.active[pack] |= presume
    bms.presumed[pack] = presume
    bms.over_time[pack] |= presume
    bms.presumed_until_s[pack] = np.where(presume, t_s + table.presumed_after_boot_s, 0.0)
    bms.since_s[pack] = np.where(presume, t_s, bms.since_s[pack])
    for j in np.nonzero(presume)[0]:
        fields = {
            "fault": table.names[j],
            "class": RECOVERY_CLASSES[int(bms.recovery_class[pack, j])],
            "value": None,
            "threshold": float(table.trip[j]),
            "presumed_s": float(table.presumed_after_boot_s[j]),
        }
        events.append(Event(t_s, pack, "fault_set", fields))


def judge_presumed(bms: Bms, tripping: BoolArray, t_s: float, events: list[Event]) -> None:
    """A fault presumed present at boot is confirmed when its condition trips again with fresh
    readings, and cleared (by the hard reset) once its judgement window has passed."""
    confirmed = bms.presumed & tripping
    for pack, j in zip(*np.nonzero(confirmed), strict=True):
        fields = {"fault": bms.table.names[j], "method": bms.boot_method[pack]}
        events.append(Event(t_s, int(pack), "fault_persisted_after_reset", fields))
    expired = bms.presumed & ~confirmed & (t_s >= bms.presumed_until_s)
    bms.presumed &= ~(confirmed | expired)
    if expired.any():
        bms._clear(expired, t_s, "hard_reset", events)
