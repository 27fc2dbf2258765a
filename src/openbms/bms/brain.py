"""The BMS brain: measurements in, FET and balancing commands out, events alongside.

Pure logic over arrays shaped (packs, ...): it never reads a clock (``t_s`` is passed in), never
draws a random number and never touches a file. The same object runs against the twin's AFE or a
real one. What must survive a power loss is handed out as ``persistent_snapshot`` and handed back
at ``boot``; storing it is the non-volatile memory's job, not the brain's.

This module orchestrates one control cycle; the rules live beside it, as tables where they are
data: ``faults`` (trip, release, warnings), ``fault_hooks`` (what a few faults do beyond their
row), ``recovery`` (which reset clears which class; resets, sleep, boot) and ``memory`` (the
snapshot's encoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from openbms.bms import faults, memory, outputs, recovery, states
from openbms.bms.cell_health import CellHealthLearner
from openbms.bms.events import Event
from openbms.bms.fault_hooks import FAULT_HOOKS, NO_HOOKS, FaultHooks
from openbms.bms.interface import AfeProtectionConfig, Commands, Measurements, finite_or_nan
from openbms.bms.limits import current_limits
from openbms.bms.plausibility import CellStats, SensorWatch
from openbms.bms.profile import Profile
from openbms.bms.protections import QUANTITIES, ProtectionTable
from openbms.bms.recovery import RECOVERY_CLASSES, RESET_METHODS
from openbms.bms.soc import SocEstimator
from openbms.chemistry import OcvTable

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_Q = {name: i for i, name in enumerate(QUANTITIES)}
_CELL_QUANTITIES = ("max_cell_v", "min_cell_v", "max_cell_t", "min_cell_t", "imbalance_v")
# Events after which the non-volatile memory should store the pack's snapshot again.
_SAVE_AFTER = ("fault_set", "fault_cleared", "sleep", "wake", "reset", "soc_recalibrated", "cell_change_detected")


@dataclass(frozen=True)
class PackConfig:
    """What the BMS is told about the pack it guards (as set up on a real board)."""

    series: int
    capacity_ah: float  # rated capacity of one series group (cell Ah × parallel cells)
    ocv: OcvTable  # the chemistry's OCV curve, for SOC from voltage
    coulombic_efficiency: float = 1.0  # of the cells, for the SOC count (SPEC §6)


class Bms:
    """One brain for a batch of identical packs."""

    # Volatile state (wiped by a power loss), set up in _reset_volatile.
    active: BoolArray
    recovery_class: npt.NDArray[np.int8]
    since_s: FloatArray
    trip_timer_s: FloatArray
    release_timer_s: FloatArray
    warn_timer_s: FloatArray
    _trip_seen: BoolArray
    _release_seen: BoolArray
    _warn_seen: BoolArray
    warning_active: BoolArray
    warn_gone_s: FloatArray
    trip_history_s: FloatArray
    state: npt.NDArray[np.int8]
    charge_fet: BoolArray
    discharge_fet: BoolArray
    balance: BoolArray
    sleeping: BoolArray
    sleep_timer_s: FloatArray
    _sleep_seen: BoolArray
    charging_s: FloatArray
    _overrate_seen: BoolArray
    charger_away_s: FloatArray
    _charger_was_present: BoolArray
    recovery_overrate_s: FloatArray
    recovery_blocked: BoolArray
    last_values: FloatArray
    presumed: BoolArray
    presumed_until_s: FloatArray
    over_time: BoolArray
    after_top: BoolArray
    out_since_top_ah: FloatArray

    def __init__(
        self,
        profile: Profile,
        pack: PackConfig,
        packs: int = 1,
        initial_soc: FloatArray | None = None,
    ) -> None:
        self.profile = profile
        self.pack = pack
        self.packs = packs
        self.table = table = ProtectionTable.from_profile(profile)
        n, p, s = packs, table.size, pack.series
        self.base_recovery_class = np.array([RECOVERY_CLASSES.index(r) for r in table.recovery], dtype=np.int8)
        self._init_recovery_charge()
        # Each protection's per-fault hooks (most have none), and the columns they single out.
        self.hooks: tuple[FaultHooks, ...] = tuple(FAULT_HOOKS.get(name, NO_HOOKS) for name in table.names)
        self.sleep_columns = np.array([h.sends_to_sleep for h in self.hooks], dtype=bool)
        self.full_columns = np.array([h.marks_full for h in self.hooks], dtype=bool)
        self.from_cells = np.isin(table.quantity_index, [_Q[q] for q in _CELL_QUANTITIES])
        self.untrusted = np.zeros(n, dtype=bool)
        uv = profile.protections.get("cell_undervoltage")
        self.healthy_min_v = uv.trip if uv is not None else 0.0
        self.warn_hold_s = np.maximum(table.release_delay_s, 2.0)
        self.just_cleared = np.zeros((n, p), dtype=bool)
        self.no_faults = np.zeros((n, p), dtype=bool)
        self.timers_running = self.warnings_running = True
        rest_a = profile.rest_current_c_rate * pack.capacity_ah
        self.rest_current_a = rest_a

        # Non-volatile (restored from memory at boot): lives outside _reset_volatile.
        self.soc = SocEstimator(profile.soc, pack.ocv, pack.capacity_ah, n, s, rest_a, pack.coulombic_efficiency)
        self.health = CellHealthLearner(profile.cell_health, pack.ocv, pack.capacity_ah, n, s)
        self.reset_counts = np.zeros((n, len(RESET_METHODS)), dtype=np.int64)
        self.remembered_cell_v = np.full((n, s), np.nan)
        self.remembered_active = [set[str]() for _ in range(n)]
        self.remembered_over_time = [set[str]() for _ in range(n)]
        self.remembered_sleeping = np.zeros(n, dtype=bool)
        self.afe_damaged = np.zeros(n, dtype=bool)

        self.sensors = SensorWatch(profile.sensors, n, s, pack.capacity_ah)
        self._reset_volatile(np.ones(n, dtype=bool))
        # The first cycle is a boot: every protection is evaluated before a FET closes.
        self.booting = np.ones(n, dtype=bool)
        self.boot_method = ["power_on"] * n
        self._persistent_at_boot: dict[int, list[str]] = {}
        if initial_soc is not None:
            self.soc.soc[:] = np.broadcast_to(np.asarray(initial_soc, dtype=float), (n, s))
        self.soc_known = np.full(n, initial_soc is not None)
        self._t_last_s: float | None = None
        self.cycle_dt_s = profile.cycle_s
        self._last_save_s = np.full(n, -np.inf)
        self.dirty = np.ones(n, dtype=bool)  # persistent values changed since the last save
        self.recovery_only = np.zeros(n, dtype=bool)
        self.operator_charge_off = np.zeros(n, dtype=bool)
        self.operator_discharge_off = np.zeros(n, dtype=bool)
        self.last_measurements: Measurements | None = None
        self.limits = self._commands(np.zeros(n), np.zeros(n))

    def _init_recovery_charge(self) -> None:
        """Which faults allow a small recovery charge (SPEC §3), and how much (the smallest)."""
        table, protections = self.table, self.profile.protections
        rates = [protections[name].recovery_charge_c_rate for name in table.names]
        self._recovery_charge = np.array([rate is not None for rate in rates])
        self.recovery_charge_a = min(
            ((rate or 0.0) * self.pack.capacity_ah for rate in rates if rate is not None), default=0.0
        )
        strict_charge = table.blocks_charge & ~self._recovery_charge
        # Columns of a small matrix product that answers, for every pack at once, "is any active
        # fault of this kind": blocks charge (always / unless a recovery charge), blocks discharge.
        self.path_matrix = np.column_stack(
            [strict_charge, table.blocks_charge & self._recovery_charge, table.blocks_discharge]
        ).astype(np.float32)

    # ----------------------------------------------------------------- volatile state
    def _reset_volatile(self, rows: BoolArray) -> None:
        """What a power loss wipes: faults, timers, history, FET commands, sleep."""
        n, p, s = self.packs, self.table.size, self.pack.series
        depth = max(int(self.table.escalate_count.max(initial=0)), 1)
        fresh: dict[str, Any] = {
            "active": np.zeros((n, p), dtype=bool),
            "recovery_class": np.broadcast_to(self.base_recovery_class, (n, p)).copy(),
            "since_s": np.full((n, p), np.nan),
            "trip_timer_s": np.zeros((n, p)),
            "release_timer_s": np.zeros((n, p)),
            "warn_timer_s": np.zeros((n, p)),
            "_trip_seen": np.zeros((n, p), dtype=bool),
            "_release_seen": np.zeros((n, p), dtype=bool),
            "_warn_seen": np.zeros((n, p), dtype=bool),
            "warning_active": np.zeros((n, p), dtype=bool),
            "warn_gone_s": np.zeros((n, p)),
            "trip_history_s": np.full((n, p, depth), -np.inf),
            "state": np.full(n, states.NORMAL, dtype=np.int8),
            "charge_fet": np.zeros(n, dtype=bool),
            "discharge_fet": np.zeros(n, dtype=bool),
            "balance": np.zeros((n, s), dtype=bool),
            "sleeping": np.zeros(n, dtype=bool),
            "sleep_timer_s": np.zeros(n),
            "_sleep_seen": np.zeros(n, dtype=bool),
            "charging_s": np.zeros(n),
            "_overrate_seen": np.zeros(n, dtype=bool),
            "charger_away_s": np.zeros(n),
            "_charger_was_present": np.zeros(n, dtype=bool),
            "recovery_overrate_s": np.zeros(n),
            "recovery_blocked": np.zeros(n, dtype=bool),
            "last_values": np.full((n, p), np.nan),
            # Faults judged over time, kept active after a boot until judged again (SPEC §4).
            "presumed": np.zeros((n, p), dtype=bool),
            "presumed_until_s": np.zeros((n, p)),
            "over_time": np.zeros((n, p), dtype=bool),  # active faults whose trip was judged over time
            # The pack's charge reached the top and no discharge followed yet: balancing time.
            "after_top": np.zeros(n, dtype=bool),
            "out_since_top_ah": np.zeros(n),
        }
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

    def _row_arrays(self) -> list[tuple[object, str]]:
        holders: list[object] = [self, self.sensors, self.soc, self.health, self.soc.counters]
        found = []
        for holder in holders:
            for name, value in vars(holder).items():
                if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == self.packs:
                    found.append((holder, name))
        return found

    # ----------------------------------------------------------------- configuration
    def afe_config(self) -> AfeProtectionConfig:
        """The hardware short-circuit settings to program into the AFE at boot."""
        for j, name in enumerate(self.table.names):
            if self.table.in_afe[j]:
                prot = self.profile.protections[name]
                return AfeProtectionConfig(
                    short_circuit_enabled=prot.enabled,
                    short_circuit_trip_a=prot.trip * self.pack.capacity_ah,
                    short_circuit_delay_s=prot.trip_delay_s,
                )
        return AfeProtectionConfig(False, float("inf"), 0.0)

    # ----------------------------------------------------------------- the control cycle
    def step(self, m: Measurements, t_s: float, running: BoolArray | None = None) -> tuple[Commands, list[Event]]:
        """One control cycle at ``t_s``. Packs not ``running`` (no power, hung firmware) keep
        every bit of their state: their controller did not execute."""
        if running is not None and not running.all():
            return self._step_some(m, t_s, running)
        return self._step(m, t_s)

    def idle(self, t_s: float) -> None:
        """No pack's controller ran at ``t_s`` (all unpowered or hung): time still passes, so
        the next cycle that runs counts one cycle, not the whole outage."""
        self._t_last_s = t_s

    def _step_some(self, m: Measurements, t_s: float, running: BoolArray) -> tuple[Commands, list[Event]]:
        frozen = ~running
        saved = [(h, name, getattr(h, name)[frozen].copy()) for h, name in self._row_arrays()]
        lists = [set(s) for s in self.remembered_active]
        commands, events = self._step(m, t_s)
        for holder, name, rows in saved:
            getattr(holder, name)[frozen] = rows
        self.timers_running = self.warnings_running = True  # the restored rows may be counting
        self.remembered_active = [lists[i] if frozen[i] else s for i, s in enumerate(self.remembered_active)]
        self.limits = self._commands(
            np.where(frozen, 0.0, commands.charge_current_limit_a),
            np.where(frozen, 0.0, commands.discharge_current_limit_a),
        )
        return self.limits, [e for e in events if running[e.pack]]

    def _step(self, m: Measurements, t_s: float) -> tuple[Commands, list[Event]]:
        dt_s = self.profile.cycle_s if self._t_last_s is None else max(t_s - self._t_last_s, 0.0)
        self._t_last_s = t_s
        self.cycle_dt_s = dt_s
        events: list[Event] = []
        m = finite_or_nan(m)
        if not self.soc_known.all():
            # SOC starts from a rest voltage only once every cell reads a real voltage.
            readable = ~self.soc_known & np.isfinite(m.cell_v).all(axis=1)
            self.soc.set_from_ocv(readable, m.cell_v)
            self.soc_known |= readable
        stats = CellStats.of(m)
        if self.booting.any():
            recovery.boot_checks(self, m, t_s, events)
        fet_stuck = self.sensors.fet_stuck_closed(stats.current_a, self.charge_fet, self.discharge_fet, dt_s)
        quantities = self._quantities(m, stats, fet_stuck)
        values = self.table.values(quantities)
        self.last_values = values
        self.last_measurements = m  # a reset in this cycle judges this cycle's readings
        # Never let the brain be fooled: while a reading is implausible, the protections that
        # watch cell readings do not count it (the sensor fault opens the FETs instead).
        self.untrusted = quantities[:, _Q["sensor_implausible"]] > 0
        condition = self.table.trip_condition(values)
        if self.untrusted.any():
            condition &= ~(self.untrusted[:, None] & self.from_cells)
        if self.booting.any():
            self._boot_trips(m, t_s, values, condition, events)
        faults.update_faults(self, m, t_s, dt_s, values, condition, fet_stuck, events)
        faults.update_warnings(self, t_s, dt_s, values, events)
        recovery.update_sleep(self, m, stats.current_a, t_s, dt_s, events)
        charge_limit_a, discharge_limit_a = current_limits(self.profile.limits, self.pack.capacity_ah, stats)
        # A limit that cannot be computed from what was read is no permission: 0 A.
        charge_limit_a = np.nan_to_num(charge_limit_a, nan=0.0)
        discharge_limit_a = np.nan_to_num(discharge_limit_a, nan=0.0)
        self._update_fets(t_s, dt_s, condition, stats, m, events)
        outputs.update_state(self, t_s, events)
        bleed_a = self._bleed_a(m)
        self.soc.update(stats, m.cell_v, t_s, dt_s, events, self._own_draw_a(), bleed_a, ~self.untrusted)
        self.health.observe_rest(m.cell_v, np.abs(stats.current_a) < self.rest_current_a, bleed_a, dt_s)
        outputs.update_balancing(self, m, stats, t_s, events)
        self.limits = self._commands(charge_limit_a, discharge_limit_a)
        self.last_measurements = m
        self._mark_dirty(t_s, events)
        return self.limits, events

    def _own_draw_a(self) -> FloatArray:
        """What the board itself takes from every cell (awake or asleep): assumed by the firmware, so counted."""
        draw = self.profile.board_draw
        return np.where(self.sleeping, draw.asleep_a, draw.awake_a)

    def _bleed_a(self, m: Measurements) -> FloatArray:
        """The balancing current each group gave up since the last cycle (its resistor at its voltage)."""
        if not self.balance.any():
            return np.zeros_like(m.cell_v)
        v = np.nan_to_num(m.cell_v, nan=0.0, posinf=0.0, neginf=0.0)
        return np.where(self.balance, np.clip(v, 0.0, None) / self.profile.balancing.bleed_resistance_ohm, 0.0)

    def _quantities(self, m: Measurements, stats: CellStats, fet_stuck: BoolArray) -> FloatArray:
        """(packs, quantities): what the protections watch, one column per ``QUANTITIES`` entry."""
        q = np.empty((self.packs, len(QUANTITIES)))
        q[:, _Q["max_cell_v"]] = stats.max_v
        q[:, _Q["min_cell_v"]] = stats.min_v
        current_c = stats.current_a / self.pack.capacity_ah
        q[:, _Q["charge_c_rate"]] = np.maximum(current_c, 0.0)
        q[:, _Q["discharge_c_rate"]] = np.maximum(-current_c, 0.0)
        q[:, _Q["max_cell_t"]] = stats.max_t
        q[:, _Q["min_cell_t"]] = stats.min_t
        q[:, _Q["fet_t"]] = m.fet_t_c
        resting = np.abs(current_c) < self.profile.rest_current_c_rate
        q[:, _Q["imbalance_v"]] = np.where(resting, stats.max_v - stats.min_v, np.nan)
        q[:, _Q["sensor_implausible"]] = self.sensors.implausible(m, stats, self.cycle_dt_s) & m.afe_ok
        q[:, _Q["afe_not_answering"]] = ~m.afe_ok | m.afe_damaged | fet_stuck
        q[:, _Q["link_bad"]] = ~m.link_ok
        q[:, _Q["cell_failure_flag"]] = self.health.flag()
        # A non-finite quantity never satisfies a comparison; the sensor fault covers it instead.
        q[~np.isfinite(q)] = np.nan
        return q

    # ----------------------------------------------------------------- faults (rules in faults.py)
    def present(self, values: FloatArray | None = None, m: Measurements | None = None) -> BoolArray:
        """(packs, protections): is each fault's *condition* still there? (see ``faults.present``)"""
        return faults.present(self, values, m)

    def _record_trips(
        self, new: BoolArray, m: Measurements, t_s: float, values: FloatArray, damaged: BoolArray, events: list[Event]
    ) -> None:
        faults.record_trips(self, new, m, t_s, values, damaged, events)

    def _clear(self, cleared: BoolArray, t_s: float, by: str | None, events: list[Event]) -> None:
        """Clear faults; ``by`` None means each clears by its own class (auto, charger, …)."""
        faults.clear(self, cleared, t_s, by, events)

    # ----------------------------------------------------------------- outputs (rules in outputs.py)
    def _update_fets(
        self, t_s: float, dt_s: float, condition: BoolArray, stats: CellStats, m: Measurements, events: list[Event]
    ) -> None:
        outputs.update_fets(self, t_s, dt_s, stats, m, events)

    def _commands(self, charge_limit_a: FloatArray, discharge_limit_a: FloatArray) -> Commands:
        return outputs.commands(self, charge_limit_a, discharge_limit_a)

    # ----------------------------------------------------------------- resets and boot (rules in recovery.py)
    def soft_reset(self, packs: BoolArray | list[int], t_s: float, method: str = "soft") -> list[Event]:
        """A soft reset (``soft`` command, reset ``button``, ``charger`` wake) of some packs.

        A sleeping BMS hears no ``soft`` command: its link is silent (SPEC §4).
        """
        events: list[Event] = []
        rows = np.nonzero(packs)[0] if isinstance(packs, np.ndarray) else packs
        for pack in rows:
            if method == "soft" and self.sleeping[pack]:
                continue
            self.soft_reset_one(int(pack), t_s, method, events)
        return events

    def soft_reset_one(self, pack: int, t_s: float, method: str, events: list[Event]) -> None:
        recovery.soft_reset_one(self, pack, t_s, method, events)

    def service_clear(self, pack: int, fault: str, authenticated: bool, t_s: float) -> list[Event]:
        """The maintenance command for latched and persistent faults: refused while the
        condition is present, always logged (SPEC §4)."""
        return recovery.service_clear(self, pack, fault, authenticated, t_s)

    def operator_fets(self, pack: int, charge_on: bool, discharge_on: bool, t_s: float) -> list[Event]:
        """A FET command from the monitoring link (e.g. JBD register 0xE1). It may switch a path off;
        switching it on again only lifts the operator's own block, never a protection's."""
        self.operator_charge_off[pack] = not charge_on
        self.operator_discharge_off[pack] = not discharge_on
        return []

    def boot(self, packs: BoolArray, remembered: list[dict[str, Any] | None], method: str = "hard") -> None:
        """Power came back after a full loss: volatile state is gone, memory is restored.

        The checks happen in the next ``step``: every protection is evaluated before a FET closes.
        """
        recovery.boot(self, packs, remembered, method)

    def _boot_trips(
        self, m: Measurements, t_s: float, values: FloatArray, condition: BoolArray, events: list[Event]
    ) -> None:
        recovery.boot_trips(self, m, t_s, values, condition, events)

    # ----------------------------------------------------------------- memory (encoding in memory.py)
    def _mark_dirty(self, t_s: float, events: list[Event]) -> None:
        for event in events:
            if event.kind in _SAVE_AFTER:
                self.dirty[event.pack] = True
        due = t_s - self._last_save_s >= self.profile.soc.save_interval_s
        self.dirty |= due

    def saved(self, packs: BoolArray, t_s: float) -> None:
        """The non-volatile memory has stored these packs' snapshots."""
        self.dirty &= ~packs
        self._last_save_s = np.where(packs, t_s, self._last_save_s)

    def persistent_snapshot(self, pack: int) -> dict[str, Any]:
        """Everything SPEC §4 keeps across a hard reset, as plain JSON-able values."""
        return memory.encode(self, pack)

    def restore(self, pack: int, snapshot: dict[str, Any] | None) -> None:
        memory.decode(self, pack, snapshot)

    # ----------------------------------------------------------------- reporting
    @property
    def pack_soc(self) -> FloatArray:
        return self.soc.pack_soc

    def active_faults(self, pack: int) -> list[str]:
        return [self.table.names[j] for j in np.nonzero(self.active[pack])[0]]

    def active_warnings(self, pack: int) -> list[str]:
        return [self.table.names[j] for j in np.nonzero(self.warning_active[pack])[0]]

    def fault_details(self, pack: int) -> list[dict[str, object]]:
        return [
            {
                "fault": self.table.names[j],
                "class": RECOVERY_CLASSES[int(self.recovery_class[pack, j])],
                "since_s": float(self.since_s[pack, j]),
            }
            for j in np.nonzero(self.active[pack])[0]
        ]

    def state_name(self, pack: int) -> str:
        return states.STATES[int(self.state[pack])]
