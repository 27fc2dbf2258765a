"""What the brain commands: FETs, the docs/behaviour.md §5 state, balancing and current limits.

Each output is derived for the whole batch at once from the active faults (which paths they
block, what recovery class they have) and this cycle's readings; only changes are logged.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from openbms.bms import states
from openbms.bms.events import Event
from openbms.bms.interface import Commands, Measurements
from openbms.bms.limits import balancing_mask
from openbms.bms.plausibility import CellStats
from openbms.bms.recovery_classes import LATCHED, PERSISTENT
from openbms.bms.state import BrainState

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

RECOVERY_CHARGE_GRACE = 1.1  # the recovery charge may exceed its rate by 10 % (sensor tolerance)


def update_fets(
    brain: BrainState, t_s: float, dt_s: float, stats: CellStats, m: Measurements, events: list[Event]
) -> None:
    """Open every path an active fault blocks; a deep-discharged pack may still take a small
    recovery charge (docs/behaviour.md §3), and more than that for a second opens the charge FET until the
    charger goes away."""
    charge_blocked, recovery_only, discharge_blocked = paths_blocked(brain)
    if recovery_only.any() or recovery_running(brain):
        over = stats.current_a > brain.recovery_charge_a * RECOVERY_CHARGE_GRACE
        overrate = recovery_only & over
        brain.recovery_overrate_s = np.where(
            overrate, brain.recovery_overrate_s + np.where(brain.overrate_seen, dt_s, 0.0), 0.0
        )
        brain.overrate_seen = overrate
        brain.recovery_blocked |= recovery_only & (brain.recovery_overrate_s >= 1.0)
        brain.recovery_blocked &= recovery_only & m.charger_present
        charge_blocked |= recovery_only & brain.recovery_blocked
    # An operator's FET-off command (monitoring link) can only open a path, never close one.
    charge_fet = ~charge_blocked & ~brain.sleeping & ~brain.operator_charge_off
    discharge_fet = ~discharge_blocked & ~brain.sleeping & ~brain.operator_discharge_off
    for name, old, new in (("charge", brain.charge_fet, charge_fet), ("discharge", brain.discharge_fet, discharge_fet)):
        for pack in np.nonzero(old != new)[0]:
            events.append(Event(t_s, int(pack), "fet_changed", {"fet": name, "on": bool(new[pack])}))
    brain.charge_fet, brain.discharge_fet = charge_fet, discharge_fet
    brain.recovery_only = recovery_only


def recovery_running(brain: BrainState) -> bool:
    """Whether the over-rate count must run although no pack is on a recovery charge: an
    over-rate seen last cycle, or a block, must be forgotten as the counting path forgets them
    (it ends them with the recovery charge). Else they would outlast the quiet cycles and count
    against the next recovery charge, and only when no other pack was on one."""
    return bool(brain.overrate_seen.any() or brain.recovery_blocked.any())


def next_state(brain: BrainState) -> npt.NDArray[np.int8]:
    """docs/behaviour.md §5 from the active faults and sleep: locked (a persistent fault), latched,
    sleep, protected (a blocking fault), normal. Reads the brain, changes nothing."""
    active = brain.active
    locked = (active & (brain.recovery_class == PERSISTENT)).any(axis=1)
    latched = (active & (brain.recovery_class == LATCHED)).any(axis=1)
    blocking = (active & (brain.table.blocks_charge | brain.table.blocks_discharge)).any(axis=1)
    return np.select(
        [locked, latched, brain.sleeping, blocking],
        [states.LOCKED, states.LATCHED, states.SLEEP, states.PROTECTED],
        states.NORMAL,
    ).astype(np.int8)


def paths_blocked(brain: BrainState) -> tuple[BoolArray, BoolArray, BoolArray]:
    """Per pack, from the active faults: (charge blocked, only a recovery charge allowed,
    discharge blocked) (docs/behaviour.md §3)."""
    counts = brain.active.astype(np.float32) @ brain.path_matrix
    return counts[:, 0] > 0, counts[:, 1] > 0, counts[:, 2] > 0


def update_state(brain: BrainState, t_s: float, events: list[Event]) -> None:
    """Set the state ``next_state`` says, logging each change."""
    if not brain.active.any() and not brain.sleeping.any() and not (brain.state != states.NORMAL).any():
        return
    new_state = next_state(brain)
    for pack in np.nonzero(new_state != brain.state)[0]:
        fields = {"from": states.STATES[brain.state[pack]], "to": states.STATES[new_state[pack]]}
        events.append(Event(t_s, int(pack), "state_changed", fields))
    brain.state = new_state


def update_balancing(brain: BrainState, m: Measurements, stats: CellStats, t_s: float, events: list[Event]) -> None:
    """Bleed the high cells during balancing time: from the top of a charge until the pack is
    discharged again, never while a fault stops it, the pack sleeps or its readings are doubtful."""
    bal = brain.profile.balancing
    if not bal.enabled:
        return
    capacity_ah = brain.pack.capacity_ah
    current_c = stats.current_a / capacity_ah
    topping = (current_c > 0) & (stats.max_v >= bal.min_cell_v)
    topping |= (brain.active & brain.full_columns).any(axis=1)
    # Balancing time ends after a net discharge (sensor noise averages out in it) of more than
    # ``top_until_out_soc``.
    out_ah = -stats.current_a * brain.cycle_dt_s / 3600.0
    brain.out_since_top_ah = np.where(topping, 0.0, np.maximum(brain.out_since_top_ah + out_ah, 0.0))
    ended = brain.out_since_top_ah > bal.top_until_out_soc * capacity_ah
    brain.after_top = (brain.after_top | topping) & ~ended
    stopping = (brain.active & brain.table.stops_balancing).any(axis=1)
    allowed = ~stopping & m.afe_ok & ~brain.sleeping & ~brain.untrusted & brain.after_top
    if not allowed.any() and not brain.balance.any():
        return
    rest_c = brain.profile.rest_current_c_rate
    mask = balancing_mask(bal, m.cell_v, stats, capacity_ah, rest_c, allowed, brain.balance)
    changed = (mask != brain.balance).any(axis=1)
    for pack in np.nonzero(changed)[0]:
        cells = [int(c) + 1 for c in np.nonzero(mask[pack])[0]]
        events.append(Event(t_s, int(pack), "balancing", {"cells": cells}))
    brain.balance = mask


def commands(brain: BrainState, charge_limit_a: FloatArray, discharge_limit_a: FloatArray) -> Commands:
    """The cycle's commands; a path whose FET is open is allowed 0 A, a recovery charge its rate."""
    recovery_limit_a = np.minimum(charge_limit_a, brain.recovery_charge_a)
    charge_a = np.where(brain.recovery_only, recovery_limit_a, np.where(brain.charge_fet, charge_limit_a, 0.0))
    return Commands(
        charge_fet=brain.charge_fet,
        discharge_fet=brain.discharge_fet,
        balance=brain.balance,
        charge_current_limit_a=np.where(brain.charge_fet, charge_a, 0.0),
        discharge_current_limit_a=np.where(brain.discharge_fet, discharge_limit_a, 0.0),
        charge_voltage_limit_v=np.full(brain.packs, brain.profile.limits.charge_voltage_cell_v * brain.pack.series),
    )
