"""One healthy pack's live state for the protocol servers' tests: a 4S pack at rest, 3.30 V a
cell, 25 °C, half full of 100 Ah, both FETs on. Tests change only what they are about."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from openbms.devices.protocols import LiveState

AT_REST = LiveState(
    protocol="twin",
    cell_v=[3.3] * 4,
    temperature_c=[25.0],
    fet_temperature_c=25.0,
    current_a=0.0,
    pack_v=13.2,
    soc=0.5,
    charge_fet=True,
    discharge_fet=True,
    faults=[],
    warnings=[],
    balancing=[],
    cycles=0,
    remaining_ah=50.0,
    nominal_ah=100.0,
)


def live_state(**changes: Any) -> LiveState:
    return replace(AT_REST, **changes)
