"""What survives a power loss (SPEC §4): the snapshot the brain hands to non-volatile memory, and
how a boot reads it back.

The encoding is a file format (saved state files and the twin's store keep it as JSON), so its
keys never change with the brain's internals: ``encode`` and ``decode`` are its one definition.
Storing it is the non-volatile memory's job (``nvm.py``), not the brain's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from openbms.bms.events import rounded
from openbms.bms.recovery import RESET_METHODS, clears_by_hard_reset

if TYPE_CHECKING:
    from openbms.bms.brain import Bms

_COUNTERS = ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh")


def encode(bms: Bms, pack: int) -> dict[str, Any]:
    """Everything SPEC §4 keeps across a hard reset, as plain JSON-able values."""
    m = bms.last_measurements
    cell_v = m.cell_v[pack] if m is not None else np.full(bms.pack.series, np.nan)
    counters = bms.soc.counters
    judged_over_time = np.nonzero(bms.active[pack] & bms.over_time[pack])[0]
    return {
        "persistent_faults": [f["fault"] for f in bms.fault_details(pack) if not clears_by_hard_reset(str(f["class"]))],
        "active_faults": bms.active_faults(pack),
        "judged_over_time": [bms.table.names[j] for j in judged_over_time],
        "sleeping": bool(bms.sleeping[pack]),
        "soc": [rounded(float(v)) for v in bms.soc.soc[pack]],
        "soc_uncertain": bool(bms.soc.uncertain[pack]),
        "capacity_ah": float(bms.soc.capacity_ah[pack]),
        "soh": round(float(bms.soc.capacity_ah[pack] / bms.pack.capacity_ah), 4),
        "cell_v": [rounded(float(v)) for v in cell_v],
        "counters": {
            **{name: float(getattr(counters, name)[pack]) for name in _COUNTERS},
            "cycles": float(counters.cycles[pack]),
        },
        "reset_counts": {method: int(bms.reset_counts[pack, k]) for k, method in enumerate(RESET_METHODS)},
        "failed_cells": [int(cell) + 1 for cell in np.nonzero(bms.health.failed[pack])[0]],
        "afe_damaged": bool(bms.afe_damaged[pack]),
    }


def decode(bms: Bms, pack: int, snapshot: dict[str, Any] | None) -> None:
    """Put a snapshot back into the brain's memory; no snapshot leaves an empty memory."""
    if not snapshot:
        bms.remembered_active[pack] = set()
        bms.remembered_over_time[pack] = set()
        bms.soc_known[pack] = False
        return
    s = bms.pack.series
    soc = np.asarray(snapshot.get("soc", [np.nan] * s), dtype=float)
    bms.soc.soc[pack] = soc
    bms.soc_known[pack] = bool(np.isfinite(soc).all())
    bms.soc.uncertain[pack] = True  # SPEC §4: last known SOC, uncertain until recalibrated
    bms.soc.capacity_ah[pack] = float(snapshot.get("capacity_ah", bms.pack.capacity_ah))
    bms.soc.ah_since_full[pack] = np.nan
    counters = snapshot.get("counters", {})
    for name in _COUNTERS:
        getattr(bms.soc.counters, name)[pack] = float(counters.get(name, 0.0))
    resets = snapshot.get("reset_counts", {})
    for k, method in enumerate(RESET_METHODS):
        bms.reset_counts[pack, k] = int(resets.get(method, 0))
    bms.remembered_cell_v[pack] = np.asarray(snapshot.get("cell_v", [np.nan] * s), dtype=float)
    bms.remembered_active[pack] = set(snapshot.get("active_faults", []))
    bms.remembered_over_time[pack] = set(snapshot.get("judged_over_time", []))
    bms.remembered_sleeping[pack] = bool(snapshot.get("sleeping", False))
    bms.health.failed[pack] = False
    for cell in snapshot.get("failed_cells", []):
        bms.health.failed[pack, int(cell) - 1] = True
    bms.afe_damaged[pack] = bool(snapshot.get("afe_damaged", False))
    bms._persistent_at_boot[pack] = list(snapshot.get("persistent_faults", []))
