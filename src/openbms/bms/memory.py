"""What survives a power loss (docs/behaviour.md §4): the snapshot the brain hands to non-volatile memory, and
how a boot reads it back.

The encoding is a file format (saved state files and the twin's store keep it as JSON), so its
keys never change with the brain's internals: ``encode`` and ``decode`` are its one definition.
Storing it is the non-volatile memory's job (``nvm.py``), not the brain's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from openbms.bms.events import rounded
from openbms.bms.recovery_classes import RESET_METHODS, clears_by_hard_reset
from openbms.bms.state import BrainState

COUNTERS = ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh")


@dataclass(frozen=True)
class MovingValues:
    """The snapshot's values that change in every cycle, as they were at the cycle a save was due.

    Why: the compiled engine runs many quiet cycles per call and stores only the last save of a
    call, after it (nothing reads the memory in between); everything else in the snapshot cannot
    change in a quiet cycle, so the brain's present state gives it."""

    cell_v: npt.NDArray[np.float64]  # (series,) the readings of that cycle
    soc: npt.NDArray[np.float64]  # (series,) the groups' SOC
    counters: tuple[float, ...]  # COUNTERS, then the cycle count


def encode(brain: BrainState, pack: int, moving: MovingValues | None = None) -> dict[str, Any]:
    """Everything docs/behaviour.md §4 keeps across a hard reset, as plain JSON-able values
    (``moving``: as of an earlier quiet cycle)."""
    if moving is None:
        m = brain.last_measurements
        c = brain.soc.counters
        moving = MovingValues(
            cell_v=m.cell_v[pack] if m is not None else np.full(brain.pack.series, np.nan),
            soc=brain.soc.soc[pack],
            counters=(*(float(getattr(c, name)[pack]) for name in COUNTERS), float(c.cycles[pack])),
        )
    judged_over_time = np.nonzero(brain.active[pack] & brain.over_time[pack])[0]
    return {
        "persistent_faults": [
            f["fault"] for f in brain.fault_details(pack) if not clears_by_hard_reset(str(f["class"]))
        ],
        "active_faults": brain.active_faults(pack),
        "judged_over_time": [brain.table.names[j] for j in judged_over_time],
        "sleeping": bool(brain.sleeping[pack]),
        "soc": [rounded(float(v)) for v in moving.soc],
        "soc_uncertain": bool(brain.soc.uncertain[pack]),
        "capacity_ah": float(brain.soc.capacity_ah[pack]),
        "soh": round(float(brain.soc.capacity_ah[pack] / brain.pack.capacity_ah), 4),
        "cell_v": [rounded(float(v)) for v in moving.cell_v],
        "counters": {**dict(zip(COUNTERS, moving.counters, strict=False)), "cycles": moving.counters[-1]},
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
    for name in COUNTERS:
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
