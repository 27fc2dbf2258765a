"""Recovery classes (docs/behaviour.md §4): which reset clears which fault, as one table.

Every active fault carries a recovery class that says what may clear it. ``CLEARERS`` is that
rule as one table, so the release, the soft reset, the hard reset and the service clear all ask
the same rows instead of comparing class numbers by hand. No clearer clears a fault whose
condition is still present ("root cause first"): that check is ``faults.present``.

Pure data: it imports nothing of the brain, so every brain module may read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RECOVERY_CLASSES = ("auto", "charger", "load-removal", "soft", "latched", "persistent")
AUTO, CHARGER, LOAD_REMOVAL, SOFT, LATCHED, PERSISTENT = range(len(RECOVERY_CLASSES))
RESET_METHODS = ("soft", "button", "charger", "hard", "service")


@dataclass(frozen=True)
class Clearers:
    """What may clear a fault of one recovery class once its condition is gone (docs/behaviour.md §4)."""

    recovery_class: str
    by_itself: bool  # its own release (hysteresis, load or charger removed) clears it
    soft_reset: bool  # ``soft`` command, reset ``button``, ``charger`` wake
    hard_reset: bool  # power removed for longer than the hold-up: the boot forgets it
    service: bool  # authenticated service clear (latched: only if the profile allows it)
    released_by: str = "auto"  # ``fault_cleared.by`` when it clears by itself


# docs/behaviour.md §4's table, in the order of RECOVERY_CLASSES. Written once as data so every clearer reads
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
