"""Events the brain reports: the black box's vocabulary (SPEC §7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
