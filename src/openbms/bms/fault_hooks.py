"""What a few faults do beyond their protection row: the per-fault hook table.

Most faults are fully described by their profile row (quantity, threshold, delays, recovery
class). A few carry consequences of their own: an under-voltage trip is the SOC's empty point, an
over-voltage trip its full point, a damaged AFE makes its fault persistent. Like the callback
column of foxBMS's diagnosis table, ``FAULT_HOOKS`` names those consequences per fault, so the
brain iterates one table instead of testing fault indices by hand, and a reader finds every
special case of a fault in one row. A hook may touch the ``BrainState`` it is given, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from openbms.bms.events import Event
from openbms.bms.interface import Measurements
from openbms.bms.plausibility import JUDGED_OVER_TIME, REASONS
from openbms.bms.recovery_classes import PERSISTENT
from openbms.bms.state import BrainState


@dataclass(frozen=True)
class Trip:
    """One fault newly set on one pack, as a hook sees it. ``fields`` is its ``fault_set``
    event's, still open for the hook to add to; ``events`` takes what the hook reports."""

    pack: int
    column: int  # the fault's column in the protection table
    t_s: float  # the cycle's time
    at_s: float  # when it tripped (a hardware detector trips inside the cycle)
    m: Measurements
    fields: dict[str, Any]
    events: list[Event]


@dataclass(frozen=True)
class FaultHooks:
    """The consequences of one fault beyond its protection row; ``None`` where it has none."""

    # The recovery class a new trip gets instead of the row's (None: keep it), given whether the
    # AFE is damaged.
    trip_recovery_class: Callable[[BrainState, int, bool], int | None] | None = None
    on_trip: Callable[[BrainState, Trip], None] | None = None  # before its fault_set event is logged
    on_clear: Callable[[BrainState, int], None] | None = None
    # Evidence beyond its reading that the condition is still there (the service clear asks it).
    still_present: Callable[[BrainState, int], bool] | None = None
    sends_to_sleep: bool = False  # a long one with no charge current puts the pack to sleep
    marks_full: bool = False  # the pack's charge reached the top: balancing time


NO_HOOKS = FaultHooks()


def _undervoltage_trip(brain: BrainState, trip: Trip) -> None:
    """The SOC's empty point, and the weakest cell's learned capacity."""
    pack, cell_v = trip.pack, trip.m.cell_v[trip.pack]
    learned_ah = brain.soc.empty_point(pack, trip.t_s, trip.events)
    weakest = int(np.nanargmin(np.where(np.isnan(cell_v), np.inf, cell_v)))
    trip.fields["cell"] = weakest + 1
    if learned_ah is not None:
        brain.health.observe_capacity(pack, weakest, learned_ah, brain.pack.capacity_ah)


def _overvoltage_trip(brain: BrainState, trip: Trip) -> None:
    """The SOC's full point, unless a full charge already set it."""
    if not brain.soc.full_done[trip.pack]:
        brain.soc.full_point(trip.pack, trip.at_s, "overvoltage", trip.events)


def _sensor_trip(brain: BrainState, trip: Trip) -> None:
    """Say which reading was implausible; one judged over time is presumed again at boot."""
    reason = REASONS[int(brain.sensors.reason[trip.pack])] or "implausible"
    trip.fields["reason"] = reason
    brain.over_time[trip.pack, trip.column] = reason in JUDGED_OVER_TIME


def _cell_failure_trip(brain: BrainState, trip: Trip) -> None:
    trip.fields["cells"] = [int(c) + 1 for c in np.nonzero(brain.health.failed[trip.pack])[0]]


def _cell_failure_present(brain: BrainState, pack: int) -> bool:
    """A failed cell stays failed until replaced, whatever this cycle's flag says."""
    return bool(brain.health.failed[pack].any())


def _afe_trip_class(brain: BrainState, pack: int, damaged: bool) -> int | None:
    """A damaged AFE cannot be trusted again until serviced: persistent, and remembered."""
    if not damaged:
        return None
    brain.afe_damaged[pack] = True
    return PERSISTENT


def _afe_clear(brain: BrainState, pack: int) -> None:
    brain.afe_damaged[pack] = False


def _afe_present(brain: BrainState, pack: int) -> bool:
    m = brain.last_measurements
    return m is not None and bool(m.afe_damaged[pack])


FAULT_HOOKS: Mapping[str, FaultHooks] = {
    "cell_undervoltage": FaultHooks(on_trip=_undervoltage_trip, sends_to_sleep=True),
    "cell_overvoltage": FaultHooks(on_trip=_overvoltage_trip, marks_full=True),
    "sensor_fault": FaultHooks(on_trip=_sensor_trip),
    "cell_failure": FaultHooks(on_trip=_cell_failure_trip, still_present=_cell_failure_present),
    "afe_fault": FaultHooks(trip_recovery_class=_afe_trip_class, on_clear=_afe_clear, still_present=_afe_present),
}


def hooks_of(fault: str) -> FaultHooks:
    """The hooks of the fault named ``fault`` (``NO_HOOKS`` for most)."""
    return FAULT_HOOKS.get(fault, NO_HOOKS)
