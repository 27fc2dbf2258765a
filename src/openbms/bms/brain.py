"""The BMS brain: measurements in, FET and balancing commands out, events alongside.

Pure logic over arrays shaped (packs, ...): it never reads a clock (``t_s`` is passed in), never
draws a random number and never touches a file. The same object runs against the twin's AFE or a
real one. What must survive a power loss is handed out as ``persistent_snapshot`` and handed back
at ``boot``; storing it is the non-volatile memory's job, not the brain's.

This module orchestrates one control cycle; the rules live beside it, as tables where they are
data: ``faults`` (trip, release, warnings), ``fault_hooks`` (what a few faults do beyond their
row), ``recovery_classes`` (which reset clears which class), ``recovery`` (resets, sleep, boot),
``outputs`` (FETs, state, balancing, limits) and ``memory`` (the snapshot's encoding). They all
work on one ``state.BrainState``, the brain's state, which they import from below: none of them
imports this module. ``Bms`` keeps the names other layers use (``bms.active``, ``bms.sleeping``,
…) as views of that state.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

import numpy as np
import numpy.typing as npt

from openbms.bms import faults, memory, outputs, recovery, states
from openbms.bms.events import Event
from openbms.bms.fault_hooks import hooks_of
from openbms.bms.interface import AfeProtectionConfig, Commands, Measurements, finite_or_nan
from openbms.bms.limits import current_limits
from openbms.bms.plausibility import CellStats
from openbms.bms.profile import Profile
from openbms.bms.protections import QUANTITIES, ProtectionTable
from openbms.bms.state import BrainState, PackConfig

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
T = TypeVar("T")

__all__ = ["Bms", "PackConfig"]

_Q = {name: i for i, name in enumerate(QUANTITIES)}
# Events after which the non-volatile memory should store the pack's snapshot again.
_SAVE_AFTER = ("fault_set", "fault_cleared", "sleep", "wake", "reset", "soc_recalibrated", "cell_change_detected")


class _InState(Generic[T]):
    """A ``Bms`` attribute that lives in its ``BrainState``: reading and writing it goes there."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, bms: Bms, owner: type | None = None) -> T:
        return cast(T, getattr(bms.brain, self.name))

    def __set__(self, bms: Bms, value: T) -> None:
        setattr(bms.brain, self.name, value)


class Bms:
    """One brain for a batch of identical packs."""

    # The brain's state as other layers and tests read (and a few write) it: views of ``brain``.
    active = _InState[BoolArray]()
    recovery_class = _InState[npt.NDArray[np.int8]]()
    since_s = _InState[FloatArray]()
    warning_active = _InState[BoolArray]()
    presumed = _InState[BoolArray]()
    over_time = _InState[BoolArray]()
    last_values = _InState[FloatArray]()
    state = _InState[npt.NDArray[np.int8]]()
    charge_fet = _InState[BoolArray]()
    discharge_fet = _InState[BoolArray]()
    balance = _InState[BoolArray]()
    sleeping = _InState[BoolArray]()
    recovery_blocked = _InState[BoolArray]()
    recovery_only = _InState[BoolArray]()
    operator_charge_off = _InState[BoolArray]()
    operator_discharge_off = _InState[BoolArray]()
    booting = _InState[BoolArray]()
    dirty = _InState[BoolArray]()
    soc_known = _InState[BoolArray]()
    untrusted = _InState[BoolArray]()
    reset_counts = _InState[npt.NDArray[np.int64]]()
    afe_damaged = _InState[BoolArray]()
    last_measurements = _InState[Measurements | None]()
    cycle_dt_s = _InState[float]()

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
        # Each protection's per-fault hooks (most have none), and the columns they single out.
        hooks = [hooks_of(name) for name in table.names]
        self.brain = brain = BrainState(
            profile,
            pack,
            packs,
            table,
            sends_to_sleep=np.array([h.sends_to_sleep for h in hooks], dtype=bool),
            marks_full=np.array([h.marks_full for h in hooks], dtype=bool),
        )
        # The collaborators, under the names other layers use (never reassigned).
        self.soc = brain.soc
        self.health = brain.health
        self.sensors = brain.sensors
        self.rest_current_a = brain.rest_current_a
        if initial_soc is not None:
            self.soc.soc[:] = np.broadcast_to(np.asarray(initial_soc, dtype=float), (packs, pack.series))
            brain.soc_known[:] = True
        self._t_last_s: float | None = None
        self._last_save_s = np.full(packs, -np.inf)
        self.limits = self._commands(np.zeros(packs), np.zeros(packs))

    def _row_arrays(self) -> list[tuple[object, str]]:
        """Every per-pack array (first axis: the pack) of the brain and its collaborators, as
        (holder, attribute): what a pack that did not run keeps through a cycle."""
        holders: list[object] = [self, self.brain, self.sensors, self.soc, self.health, self.soc.counters]
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
        brain = self.brain
        lists = [set(s) for s in brain.remembered_active]
        commands, events = self._step(m, t_s)
        for holder, name, rows in saved:
            getattr(holder, name)[frozen] = rows
        brain.timers_running = brain.warnings_running = True  # the restored rows may be counting
        brain.remembered_active = [lists[i] if frozen[i] else s for i, s in enumerate(brain.remembered_active)]
        self.limits = self._commands(
            np.where(frozen, 0.0, commands.charge_current_limit_a),
            np.where(frozen, 0.0, commands.discharge_current_limit_a),
        )
        return self.limits, [e for e in events if running[e.pack]]

    def _step(self, m: Measurements, t_s: float) -> tuple[Commands, list[Event]]:
        brain = self.brain
        dt_s = self.profile.cycle_s if self._t_last_s is None else max(t_s - self._t_last_s, 0.0)
        self._t_last_s = t_s
        brain.cycle_dt_s = dt_s
        events: list[Event] = []
        m = finite_or_nan(m)
        if not brain.soc_known.all():
            # SOC starts from a rest voltage only once every cell reads a real voltage.
            readable = ~brain.soc_known & np.isfinite(m.cell_v).all(axis=1)
            self.soc.set_from_ocv(readable, m.cell_v)
            brain.soc_known |= readable
        stats = CellStats.of(m)
        if brain.booting.any():
            recovery.boot_checks(brain, m, t_s, events)
        fet_stuck = self.sensors.fet_stuck_closed(stats.current_a, brain.charge_fet, brain.discharge_fet, dt_s)
        quantities = self._quantities(m, stats, fet_stuck)
        values = self.table.values(quantities)
        brain.last_values = values
        brain.last_measurements = m  # a reset in this cycle judges this cycle's readings
        # Never let the brain be fooled: while a reading is implausible, the protections that
        # watch cell readings do not count it (the sensor fault opens the FETs instead).
        brain.untrusted = quantities[:, _Q["sensor_implausible"]] > 0
        condition = self.table.trip_condition(values)
        if brain.untrusted.any():
            condition &= ~(brain.untrusted[:, None] & brain.from_cells)
        if brain.booting.any():
            self._boot_trips(m, t_s, values, condition, events)
        faults.update_faults(brain, m, t_s, dt_s, values, condition, fet_stuck, events)
        faults.update_warnings(brain, t_s, dt_s, values, events)
        for pack, method in recovery.update_sleep(brain, m, stats.current_a, t_s, dt_s, events):
            self.soft_reset_one(pack, t_s, method, events)
        charge_limit_a, discharge_limit_a = current_limits(self.profile.limits, self.pack.capacity_ah, stats)
        # A limit that cannot be computed from what was read is no permission: 0 A.
        charge_limit_a = np.nan_to_num(charge_limit_a, nan=0.0)
        discharge_limit_a = np.nan_to_num(discharge_limit_a, nan=0.0)
        self._update_fets(t_s, dt_s, condition, stats, m, events)
        outputs.update_state(brain, t_s, events)
        bleed_a = self._bleed_a(m)
        self.soc.update(stats, m.cell_v, t_s, dt_s, events, self._own_draw_a(), bleed_a, ~brain.untrusted)
        self.health.observe_rest(m.cell_v, np.abs(stats.current_a) < self.rest_current_a, bleed_a, dt_s)
        outputs.update_balancing(brain, m, stats, t_s, events)
        self.limits = self._commands(charge_limit_a, discharge_limit_a)
        brain.last_measurements = m
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
        return faults.present(self.brain, values, m)

    def _record_trips(
        self, new: BoolArray, m: Measurements, t_s: float, values: FloatArray, damaged: BoolArray, events: list[Event]
    ) -> None:
        faults.record_trips(self.brain, new, m, t_s, values, damaged, events)

    def _clear(self, cleared: BoolArray, t_s: float, by: str | None, events: list[Event]) -> None:
        """Clear faults; ``by`` None means each clears by its own class (auto, charger, …)."""
        faults.clear(self.brain, cleared, t_s, by, events)

    # ----------------------------------------------------------------- outputs (rules in outputs.py)
    def _update_fets(
        self, t_s: float, dt_s: float, condition: BoolArray, stats: CellStats, m: Measurements, events: list[Event]
    ) -> None:
        outputs.update_fets(self.brain, t_s, dt_s, stats, m, events)

    def _commands(self, charge_limit_a: FloatArray, discharge_limit_a: FloatArray) -> Commands:
        return outputs.commands(self.brain, charge_limit_a, discharge_limit_a)

    # ----------------------------------------------------------------- resets and boot (rules in recovery.py)
    def soft_reset(self, packs: BoolArray | list[int], t_s: float, method: str = "soft") -> list[Event]:
        """A soft reset (``soft`` command, reset ``button``, ``charger`` wake) of some packs.

        A sleeping BMS hears no ``soft`` command: its link is silent (docs/behaviour.md §4).
        """
        events: list[Event] = []
        rows = np.nonzero(packs)[0] if isinstance(packs, np.ndarray) else packs
        for pack in rows:
            if method == "soft" and self.sleeping[pack]:
                continue
            self.soft_reset_one(int(pack), t_s, method, events)
        return events

    def soft_reset_one(self, pack: int, t_s: float, method: str, events: list[Event]) -> None:
        recovery.soft_reset_one(self.brain, pack, t_s, method, events)

    def service_clear(self, pack: int, fault: str, authenticated: bool, t_s: float) -> list[Event]:
        """The maintenance command for latched and persistent faults: refused while the
        condition is present, always logged (docs/behaviour.md §4)."""
        return recovery.service_clear(self.brain, pack, fault, authenticated, t_s)

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
        recovery.boot(self.brain, packs, method)
        for pack in np.nonzero(packs)[0]:
            self.restore(int(pack), remembered[int(pack)] if pack < len(remembered) else None)

    def _boot_trips(
        self, m: Measurements, t_s: float, values: FloatArray, condition: BoolArray, events: list[Event]
    ) -> None:
        recovery.boot_trips(self.brain, m, t_s, values, condition, events)

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

    def persistent_snapshot(self, pack: int, moving: memory.MovingValues | None = None) -> dict[str, Any]:
        """Everything docs/behaviour.md §4 keeps across a hard reset, as plain JSON-able values
        (``moving``: the values that change every cycle, as of an earlier quiet cycle)."""
        return memory.encode(self.brain, pack, moving)

    def restore(self, pack: int, snapshot: dict[str, Any] | None) -> None:
        memory.decode(self.brain, pack, snapshot)

    # ----------------------------------------------------------------- reporting
    @property
    def pack_soc(self) -> FloatArray:
        return self.soc.pack_soc

    def active_faults(self, pack: int) -> list[str]:
        return self.brain.active_faults(pack)

    def active_warnings(self, pack: int) -> list[str]:
        return [self.table.names[j] for j in np.nonzero(self.warning_active[pack])[0]]

    def fault_details(self, pack: int) -> list[dict[str, object]]:
        return self.brain.fault_details(pack)

    def state_name(self, pack: int) -> str:
        return states.STATES[int(self.state[pack])]
