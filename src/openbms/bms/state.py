"""The brain's state for a batch of packs: everything its rules read and write, in one object.

``BrainState`` is the room every rule module works in: ``faults``, ``fault_hooks``, ``recovery``,
``outputs`` and ``memory`` take it (never the ``Bms``) and import it from here, below them, so
the brain's modules form no import cycle. ``Bms`` (``brain.py``) builds it, runs the control
cycle over it and answers the other layers.

Its attributes come in four groups, in the order below: the setup (read-only once built), the
collaborators (SOC, cell health, sensor watch), the non-volatile memory (restored at boot) and
the volatile state (``VOLATILE``: wiped by a power loss, see ``reset_volatile``). Every array's
first axis is the pack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from openbms.bms import states
from openbms.bms.cell_health import CellHealthLearner
from openbms.bms.interface import Measurements
from openbms.bms.plausibility import SensorWatch
from openbms.bms.profile import Profile
from openbms.bms.protections import QUANTITIES, ProtectionTable
from openbms.bms.recovery_classes import RECOVERY_CLASSES, RESET_METHODS
from openbms.bms.soc import SocEstimator
from openbms.chemistry import OcvTable

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# The quantities read from the cells: their protections wait while a reading is implausible.
CELL_QUANTITIES = ("max_cell_v", "min_cell_v", "max_cell_t", "min_cell_t", "imbalance_v")


@dataclass(frozen=True)
class PackConfig:
    """What the BMS is told about the pack it guards (as set up on a real board)."""

    series: int
    capacity_ah: float  # rated capacity of one series group (cell Ah × parallel cells)
    ocv: OcvTable  # the chemistry's OCV curve, for SOC from voltage
    coulombic_efficiency: float = 1.0  # of the cells, for the SOC count (docs/behaviour.md §6)


# What a power loss wipes: the attributes ``reset_volatile`` sets afresh.
VOLATILE = (
    "active",
    "recovery_class",
    "since_s",
    "trip_timer_s",
    "release_timer_s",
    "warn_timer_s",
    "trip_seen",
    "release_seen",
    "warn_seen",
    "warning_active",
    "warn_gone_s",
    "trip_history_s",
    "state",
    "charge_fet",
    "discharge_fet",
    "balance",
    "sleeping",
    "sleep_timer_s",
    "sleep_seen",
    "charging_s",
    "overrate_seen",
    "charger_away_s",
    "charger_was_present",
    "recovery_overrate_s",
    "recovery_blocked",
    "last_values",
    "presumed",
    "presumed_until_s",
    "over_time",
    "after_top",
    "out_since_top_ah",
)


class BrainState:
    """The state of one brain for a batch of identical packs (see the module's docstring)."""

    # ----------------------------------------------------------------- volatile (VOLATILE)
    # Faults, (packs, protections):
    active: BoolArray
    recovery_class: npt.NDArray[np.int8]
    since_s: FloatArray
    trip_timer_s: FloatArray
    release_timer_s: FloatArray
    warn_timer_s: FloatArray
    trip_seen: BoolArray  # the debounced condition held in the last cycle
    release_seen: BoolArray
    warn_seen: BoolArray
    warning_active: BoolArray
    warn_gone_s: FloatArray
    trip_history_s: FloatArray  # (packs, protections, escalation depth): the latest trip times
    last_values: FloatArray  # this cycle's values of the protections' quantities
    # Faults judged over time, kept active after a boot until judged again (docs/behaviour.md §4).
    presumed: BoolArray
    presumed_until_s: FloatArray
    over_time: BoolArray  # active faults whose trip was judged over time
    # Outputs and sleep, (packs,) or (packs, series):
    state: npt.NDArray[np.int8]  # docs/behaviour.md §5, an index of ``states.STATES``
    charge_fet: BoolArray
    discharge_fet: BoolArray
    balance: BoolArray
    sleeping: BoolArray
    sleep_timer_s: FloatArray
    sleep_seen: BoolArray
    charging_s: FloatArray
    overrate_seen: BoolArray
    charger_away_s: FloatArray
    charger_was_present: BoolArray
    recovery_overrate_s: FloatArray
    recovery_blocked: BoolArray
    # The pack's charge reached the top and no discharge followed yet: balancing time.
    after_top: BoolArray
    out_since_top_ah: FloatArray

    def __init__(
        self,
        profile: Profile,
        pack: PackConfig,
        packs: int,
        table: ProtectionTable,
        *,
        sends_to_sleep: BoolArray,
        marks_full: BoolArray,
    ) -> None:
        """``table`` is the profile's protections; ``sends_to_sleep`` and ``marks_full`` are its
        columns whose fault puts the pack to sleep, or marks it full (``fault_hooks``)."""
        # ------------------------------------------------------------- setup (read-only)
        self.profile = profile
        self.pack = pack
        self.packs = packs
        self.table = table
        n, p, s = packs, table.size, pack.series
        self.base_recovery_class = np.array([RECOVERY_CLASSES.index(r) for r in table.recovery], dtype=np.int8)
        self.sleep_columns = sends_to_sleep
        self.full_columns = marks_full
        self.from_cells = np.isin(table.quantity_index, [QUANTITIES.index(q) for q in CELL_QUANTITIES])
        uv = profile.protections.get("cell_undervoltage")
        self.healthy_min_v = uv.trip if uv is not None else 0.0
        self.warn_hold_s = np.maximum(table.release_delay_s, 2.0)
        self.no_faults = np.zeros((n, p), dtype=bool)
        self.rest_current_a = profile.rest_current_c_rate * pack.capacity_ah
        self._init_recovery_charge()

        # ------------------------------------------------------------- collaborators
        self.soc = SocEstimator(
            profile.soc, pack.ocv, pack.capacity_ah, n, s, self.rest_current_a, pack.coulombic_efficiency
        )
        self.health = CellHealthLearner(profile.cell_health, pack.ocv, pack.capacity_ah, n, s)
        self.sensors = SensorWatch(profile.sensors, n, s, pack.capacity_ah)

        # ------------------------------------------------------------- non-volatile (restored at boot)
        self.reset_counts = np.zeros((n, len(RESET_METHODS)), dtype=np.int64)
        self.remembered_cell_v = np.full((n, s), np.nan)
        self.remembered_active = [set[str]() for _ in range(n)]
        self.remembered_over_time = [set[str]() for _ in range(n)]
        self.remembered_sleeping = np.zeros(n, dtype=bool)
        self.persistent_at_boot: dict[int, list[str]] = {}
        self.afe_damaged = np.zeros(n, dtype=bool)
        self.soc_known = np.zeros(n, dtype=bool)
        self.dirty = np.ones(n, dtype=bool)  # persistent values changed since the last save

        # ------------------------------------------------------------- the current cycle
        self.untrusted = np.zeros(n, dtype=bool)  # a reading is implausible: cell protections wait
        self.just_cleared = np.zeros((n, p), dtype=bool)
        self.timers_running = self.warnings_running = True  # False: every timer is at 0
        # The first cycle is a boot: every protection is evaluated before a FET closes.
        self.booting = np.ones(n, dtype=bool)
        self.boot_method = ["power_on"] * n
        self.cycle_dt_s = profile.cycle_s
        self.last_measurements: Measurements | None = None
        self.recovery_only = np.zeros(n, dtype=bool)  # only a recovery charge may flow
        self.operator_charge_off = np.zeros(n, dtype=bool)
        self.operator_discharge_off = np.zeros(n, dtype=bool)
        self.reset_volatile(np.ones(n, dtype=bool))

    def _init_recovery_charge(self) -> None:
        """Which faults allow a small recovery charge (docs/behaviour.md §3), and how much (the smallest)."""
        table, protections = self.table, self.profile.protections
        rates = [protections[name].recovery_charge_c_rate for name in table.names]
        self.recovery_charge_columns = np.array([rate is not None for rate in rates])
        self.recovery_charge_a = min(
            ((rate or 0.0) * self.pack.capacity_ah for rate in rates if rate is not None), default=0.0
        )
        strict_charge = table.blocks_charge & ~self.recovery_charge_columns
        # Columns of a small matrix product that answers, for every pack at once, "is any active
        # fault of this kind": blocks charge (always / unless a recovery charge), blocks discharge.
        self.path_matrix = np.column_stack(
            [strict_charge, table.blocks_charge & self.recovery_charge_columns, table.blocks_discharge]
        ).astype(np.float32)

    def reset_volatile(self, rows: BoolArray) -> None:
        """What a power loss wipes, for these packs: faults, timers, history, FET commands, sleep."""
        n, p, s = self.packs, self.table.size, self.pack.series
        depth = max(int(self.table.escalate_count.max(initial=0)), 1)
        fresh: dict[str, npt.NDArray[np.generic]] = {
            "active": np.zeros((n, p), dtype=bool),
            "recovery_class": np.broadcast_to(self.base_recovery_class, (n, p)).copy(),
            "since_s": np.full((n, p), np.nan),
            "trip_timer_s": np.zeros((n, p)),
            "release_timer_s": np.zeros((n, p)),
            "warn_timer_s": np.zeros((n, p)),
            "trip_seen": np.zeros((n, p), dtype=bool),
            "release_seen": np.zeros((n, p), dtype=bool),
            "warn_seen": np.zeros((n, p), dtype=bool),
            "warning_active": np.zeros((n, p), dtype=bool),
            "warn_gone_s": np.zeros((n, p)),
            "trip_history_s": np.full((n, p, depth), -np.inf),
            "state": np.full(n, states.NORMAL, dtype=np.int8),
            "charge_fet": np.zeros(n, dtype=bool),
            "discharge_fet": np.zeros(n, dtype=bool),
            "balance": np.zeros((n, s), dtype=bool),
            "sleeping": np.zeros(n, dtype=bool),
            "sleep_timer_s": np.zeros(n),
            "sleep_seen": np.zeros(n, dtype=bool),
            "charging_s": np.zeros(n),
            "overrate_seen": np.zeros(n, dtype=bool),
            "charger_away_s": np.zeros(n),
            "charger_was_present": np.zeros(n, dtype=bool),
            "recovery_overrate_s": np.zeros(n),
            "recovery_blocked": np.zeros(n, dtype=bool),
            "last_values": np.full((n, p), np.nan),
            "presumed": np.zeros((n, p), dtype=bool),
            "presumed_until_s": np.zeros((n, p)),
            "over_time": np.zeros((n, p), dtype=bool),
            "after_top": np.zeros(n, dtype=bool),
            "out_since_top_ah": np.zeros(n),
        }
        assert tuple(fresh) == VOLATILE
        for name, value in fresh.items():
            if not hasattr(self, name) or rows.all():
                setattr(self, name, value)
            else:
                getattr(self, name)[rows] = value[rows]
        self.sensors.forget(rows)
        self.health.forget_rest(rows)
        self.timers_running = self.warnings_running = True
        self.soc.full_timer_s[rows] = 0.0
        self.soc.rest_s[rows] = 0.0

    def active_faults(self, pack: int) -> list[str]:
        return [self.table.names[j] for j in np.nonzero(self.active[pack])[0]]

    def fault_details(self, pack: int) -> list[dict[str, object]]:
        return [
            {
                "fault": self.table.names[j],
                "class": RECOVERY_CLASSES[int(self.recovery_class[pack, j])],
                "since_s": float(self.since_s[pack, j]),
            }
            for j in np.nonzero(self.active[pack])[0]
        ]
