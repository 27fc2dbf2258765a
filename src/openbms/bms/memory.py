"""What survives a power loss (docs/behaviour.md §4): the snapshot the brain hands to non-volatile memory, and
how a boot reads it back.

The encoding is a file format (saved state files and the twin's store keep it as JSON), so its
keys never change with the brain's internals: ``encode`` and ``decode`` are its one definition.
Storing it is the non-volatile memory's job (``nvm.py``), not the brain's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openbms.bms.events import rounded
from openbms.bms.recovery_classes import RESET_METHODS, clears_by_hard_reset
from openbms.bms.state import BrainState

_COUNTERS = ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh")


def encode(brain: BrainState, pack: int) -> dict[str, Any]:
    """Everything docs/behaviour.md §4 keeps across a hard reset, as plain JSON-able values."""
    m = brain.last_measurements
    cell_v = m.cell_v[pack] if m is not None else np.full(brain.pack.series, np.nan)
    counters = brain.soc.counters
    judged_over_time = np.nonzero(brain.active[pack] & brain.over_time[pack])[0]
    return {
        "persistent_faults": [
            f["fault"] for f in brain.fault_details(pack) if not clears_by_hard_reset(str(f["class"]))
        ],
        "active_faults": brain.active_faults(pack),
        "judged_over_time": [brain.table.names[j] for j in judged_over_time],
        "sleeping": bool(brain.sleeping[pack]),
        "soc": [rounded(float(v)) for v in brain.soc.soc[pack]],
        "soc_uncertain": bool(brain.soc.uncertain[pack]),
        "capacity_ah": float(brain.soc.capacity_ah[pack]),
        "soh": round(float(brain.soc.capacity_ah[pack] / brain.pack.capacity_ah), 4),
        "cell_v": [rounded(float(v)) for v in cell_v],
        "counters": {
            **{name: float(getattr(counters, name)[pack]) for name in _COUNTERS},
            "cycles": float(counters.cycles[pack]),
        },
        "reset_counts": {method: int(brain.reset_counts[pack, k]) for k, method in enumerate(RESET_METHODS)},
        "failed_cells": [int(cell) + 1 for cell in np.nonzero(brain.health.failed[pack])[0]],
        "afe_damaged": bool(brain.afe_damaged[pack]),
    }


def decode(brain: BrainState, pack: int, snapshot: dict[str, Any] | None) -> None:
    """Put a snapshot back into the brain's memory; no snapshot leaves an empty memory."""
    if not snapshot:
        brain.remembered_active[pack] = set()
        brain.remembered_over_time[pack] = set()
        brain.soc_known[pack] = False
        return
    s = brain.pack.series
    soc = np.asarray(snapshot.get("soc", [np.nan] * s), dtype=float)
    brain.soc.soc[pack] = soc
    brain.soc_known[pack] = bool(np.isfinite(soc).all())
    brain.soc.uncertain[pack] = True  # docs/behaviour.md §4: last known SOC, uncertain until recalibrated
    brain.soc.capacity_ah[pack] = float(snapshot.get("capacity_ah", brain.pack.capacity_ah))
    brain.soc.ah_since_full[pack] = np.nan
    counters = snapshot.get("counters", {})
    for name in _COUNTERS:
        getattr(brain.soc.counters, name)[pack] = float(counters.get(name, 0.0))
    resets = snapshot.get("reset_counts", {})
    for k, method in enumerate(RESET_METHODS):
        brain.reset_counts[pack, k] = int(resets.get(method, 0))
    brain.remembered_cell_v[pack] = np.asarray(snapshot.get("cell_v", [np.nan] * s), dtype=float)
    brain.remembered_active[pack] = set(snapshot.get("active_faults", []))
    brain.remembered_over_time[pack] = set(snapshot.get("judged_over_time", []))
    brain.remembered_sleeping[pack] = bool(snapshot.get("sleeping", False))
    brain.health.failed[pack] = False
    for cell in snapshot.get("failed_cells", []):
        brain.health.failed[pack, int(cell) - 1] = True
    brain.afe_damaged[pack] = bool(snapshot.get("afe_damaged", False))
    brain.persistent_at_boot[pack] = list(snapshot.get("persistent_faults", []))
