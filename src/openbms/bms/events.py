"""Events the brain reports: the black box's vocabulary (docs/behaviour.md §7)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# docs/behaviour.md §3: the fault vocabulary every part of openbms speaks (profiles, protocols, diagnosis).
FAULT_NAMES = (
    "cell_overvoltage",
    "cell_overvoltage_latched",
    "cell_undervoltage",
    "deep_discharge",
    "charge_overcurrent",
    "discharge_overcurrent",
    "short_circuit",
    "charge_overtemperature",
    "charge_undertemperature",
    "discharge_overtemperature",
    "discharge_undertemperature",
    "fet_overtemperature",
    "cell_imbalance",
    "sensor_fault",
    "afe_fault",
    "comm_error",
    "cell_failure",
)

EVENT_KINDS = (
    "fault_set",
    "fault_cleared",
    "fet_changed",
    "state_changed",
    "sleep",
    "wake",
    "reset",
    "fault_persisted_after_reset",
    "hard_reset_incomplete",
    "reconnect_order_violation",
    "unsafe_disconnect_under_load",
    "cell_change_detected",
    "soc_recalibrated",
    "balancing",
    "warning",
    "control_write",
)


@dataclass(frozen=True)
class Event:
    """One entry of the event log. ``pack`` is 0-based inside code; fields use 1-based cells."""

    t_s: float
    pack: int
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"t_s": round(self.t_s, 6), "kind": self.kind, **self.fields}


def rounded(value: float) -> float | None:
    """An event or snapshot field's number: 6 decimals, and no value (None) where unreadable."""
    return None if not math.isfinite(value) else round(value, 6)
