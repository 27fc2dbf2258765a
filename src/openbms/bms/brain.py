"""The BMS brain: measurements in, FET and balancing commands out, events alongside.

Pure logic over arrays shaped (packs, ...): it never reads a clock (``t_s`` is passed in), never
draws a random number and never touches a file. The same object runs against the twin's AFE or a
real one. What must survive a power loss is handed out as ``persistent_snapshot`` and handed back
at ``boot``; storing it is the non-volatile memory's job, not the brain's.

Recovery follows SPEC §4: every active fault has a class (auto, charger, load-removal, soft,
latched, persistent) that says what may clear it, and no reset clears a fault whose condition is
still present ("root cause first").
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from openbms.bms import states
from openbms.bms.cell_health import CellHealthLearner
from openbms.bms.events import Event
from openbms.bms.interface import AfeProtectionConfig, Commands, Measurements
from openbms.bms.limits import balancing_mask, current_limits
from openbms.bms.plausibility import JUDGED_OVER_TIME, REASONS, CellStats, SensorWatch
from openbms.bms.profile import Profile
from openbms.bms.protections import QUANTITIES, RELEASE_MODES, ProtectionTable, debounce, elapsed
from openbms.bms.soc import SocEstimator
from openbms.chemistry import OcvTable

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_Q = {name: i for i, name in enumerate(QUANTITIES)}
CLASSES = ("auto", "charger", "load-removal", "soft", "latched", "persistent")
AUTO, CHARGER, LOAD_REMOVAL, SOFT, LATCHED, PERSISTENT = range(len(CLASSES))
RESET_METHODS = ("soft", "button", "charger", "hard", "service")
_HYSTERESIS, _LOAD_REMOVED, _CHARGER_REMOVED, _NEVER = (RELEASE_MODES.index(m) for m in RELEASE_MODES)
_RECOVERY_CHARGE_GRACE = 1.1  # the recovery charge may exceed its rate by 10 % (sensor tolerance)


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
    klass: npt.NDArray[np.int8]
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
        n, p, s = packs, len(table.names), pack.series
        self._p, self._s = p, s
        self._base_class = np.array([CLASSES.index(r) for r in table.recovery], dtype=np.int8)
        self._recovery_charge = np.array(
            [profile.protections[name].recovery_charge_c_rate is not None for name in table.names]
        )
        self._recovery_charge_a = min(
            (
                (profile.protections[name].recovery_charge_c_rate or 0.0) * pack.capacity_ah
                for name in table.names
                if profile.protections[name].recovery_charge_c_rate is not None
            ),
            default=0.0,
        )
        strict_charge = table.blocks_charge & ~self._recovery_charge
        # Columns of a small matrix product that answers, for every pack at once, "is any active
        # fault of this kind": blocks charge (always / unless a recovery charge), blocks discharge.
        self._path_matrix = np.column_stack(
            [strict_charge, table.blocks_charge & self._recovery_charge, table.blocks_discharge]
        ).astype(np.float32)
        self._j_afe = table.index("afe_fault") if "afe_fault" in table.names else -1
        self._j_uv = table.index("cell_undervoltage") if "cell_undervoltage" in table.names else -1
        self._j_failure = table.index("cell_failure") if "cell_failure" in table.names else -1
        self._j_sensor = table.index("sensor_fault") if "sensor_fault" in table.names else -1
        self._j_ov = table.index("cell_overvoltage") if "cell_overvoltage" in table.names else -1
        cell_quantities = [_Q[q] for q in ("max_cell_v", "min_cell_v", "max_cell_t", "min_cell_t", "imbalance_v")]
        self._from_cells = np.isin(table.quantity_index, cell_quantities)
        self._untrusted = np.zeros(n, dtype=bool)
        uv = profile.protections.get("cell_undervoltage")
        self._healthy_min_v = uv.trip if uv is not None else 0.0
        self._warn_hold_s = np.maximum(table.release_delay_s, 2.0)
        self._just_cleared = np.zeros((n, p), dtype=bool)
        self._no_faults = np.zeros((n, p), dtype=bool)
        self._timers_running = True
        self._warnings_running = True
        self._any_in_afe = bool(table.in_afe.any())
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
        self._soc_known = np.full(n, initial_soc is not None)
        self._t_last_s: float | None = None
        self._dt_s = profile.cycle_s
        self._last_save_s = np.full(n, -np.inf)
        self.dirty = np.ones(n, dtype=bool)  # persistent values changed since the last save
        self._recovery_only = np.zeros(n, dtype=bool)
        self.operator_charge_off = np.zeros(n, dtype=bool)
        self.operator_discharge_off = np.zeros(n, dtype=bool)
        self.last_measurements: Measurements | None = None
        self.limits = self._commands(np.zeros(n), np.zeros(n))

    # ----------------------------------------------------------------- volatile state
    def _reset_volatile(self, rows: BoolArray) -> None:
        """What a power loss wipes: faults, timers, history, FET commands, sleep."""
        n, p, s = self.packs, self._p, self._s
        depth = max(int(self.table.escalate_count.max(initial=0)), 1)
        fresh: dict[str, Any] = {
            "active": np.zeros((n, p), dtype=bool),
            "klass": np.broadcast_to(self._base_class, (n, p)).copy(),
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
        self._timers_running = self._warnings_running = True
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
        self._timers_running = self._warnings_running = True  # the restored rows may be counting
        self.remembered_active = [lists[i] if frozen[i] else s for i, s in enumerate(self.remembered_active)]
        self.limits = self._commands(
            np.where(frozen, 0.0, commands.charge_current_limit_a),
            np.where(frozen, 0.0, commands.discharge_current_limit_a),
        )
        return self.limits, [e for e in events if running[e.pack]]

    def _step(self, m: Measurements, t_s: float) -> tuple[Commands, list[Event]]:
        dt_s = self.profile.cycle_s if self._t_last_s is None else max(t_s - self._t_last_s, 0.0)
        self._t_last_s = t_s
        self._dt_s = dt_s
        events: list[Event] = []
        m = _finite_or_nan(m)
        if not self._soc_known.all():
            # SOC starts from a rest voltage only once every cell reads a real voltage.
            readable = ~self._soc_known & np.isfinite(m.cell_v).all(axis=1)
            self.soc.set_from_ocv(readable, m.cell_v)
            self._soc_known |= readable
        stats = CellStats.of(m)
        if self.booting.any():
            self._boot_checks(m, t_s, events)
        fet_stuck = self.sensors.fet_stuck_closed(stats.current_a, self.charge_fet, self.discharge_fet, dt_s)
        quantities = self._quantities(m, stats, fet_stuck)
        values = self.table.values(quantities)
        self.last_values = values
        self.last_measurements = m  # a reset in this cycle judges this cycle's readings
        # Never let the brain be fooled: while a reading is implausible, the protections that
        # watch cell readings do not count it (the sensor fault opens the FETs instead).
        self._untrusted = quantities[:, _Q["sensor_implausible"]] > 0
        condition = self.table.trip_condition(values)
        if self._untrusted.any():
            condition &= ~(self._untrusted[:, None] & self._from_cells)
        if self.booting.any():
            self._boot_trips(m, t_s, values, condition, events)
        self._update_faults(m, t_s, dt_s, values, condition, fet_stuck, events)
        self._update_warnings(t_s, dt_s, values, events)
        self._update_sleep(m, stats, t_s, dt_s, events)
        charge_limit_a, discharge_limit_a = current_limits(self.profile.limits, self.pack.capacity_ah, stats)
        # A limit that cannot be computed from what was read is no permission: 0 A.
        charge_limit_a = np.nan_to_num(charge_limit_a, nan=0.0)
        discharge_limit_a = np.nan_to_num(discharge_limit_a, nan=0.0)
        self._update_fets(t_s, dt_s, condition, stats, m, events)
        self._update_state(t_s, events)
        bleed_a = self._bleed_a(m)
        self.soc.update(stats, m.cell_v, t_s, dt_s, events, self._own_draw_a(), bleed_a, ~self._untrusted)
        self.health.observe_rest(m.cell_v, np.abs(stats.current_a) < self.rest_current_a, bleed_a, dt_s)
        self._update_balancing(m, stats, t_s, events)
        self.limits = self._commands(charge_limit_a, discharge_limit_a)
        self.last_measurements = m
        self._mark_dirty(t_s, events)
        return self.limits, events

    def _own_draw_a(self) -> FloatArray:
        """What the board itself takes from every cell (awake or asleep): known, so counted."""
        supply = self.profile.hardware.supply
        return np.where(self.sleeping, supply.sleep_a, supply.quiescent_a)

    def _bleed_a(self, m: Measurements) -> FloatArray:
        """The balancing current each group gave up since the last cycle (its resistor at its voltage)."""
        if not self.balance.any():
            return np.zeros_like(m.cell_v)
        v = np.nan_to_num(m.cell_v, nan=0.0, posinf=0.0, neginf=0.0)
        return np.where(self.balance, np.clip(v, 0.0, None) / self.profile.balancing.bleed_resistance_ohm, 0.0)

    def _quantities(self, m: Measurements, stats: CellStats, fet_stuck: BoolArray) -> FloatArray:
        n = self.packs
        q = np.empty((n, len(QUANTITIES)))
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
        q[:, _Q["sensor_implausible"]] = self.sensors.implausible(m, stats, self._dt_s) & m.afe_ok
        q[:, _Q["afe_not_answering"]] = ~m.afe_ok | m.afe_damaged | fet_stuck
        q[:, _Q["link_bad"]] = ~m.link_ok
        q[:, _Q["cell_failure_flag"]] = self.health.flag()
        # A non-finite quantity never satisfies a comparison; the sensor fault covers it instead.
        q[~np.isfinite(q)] = np.nan
        return q

    # ----------------------------------------------------------------- faults
    def present(self, values: FloatArray | None = None, m: Measurements | None = None) -> BoolArray:
        """(packs, protections): is each fault's *condition* still there?

        A reset may clear a fault only where this is false: the value has not come back past
        its release threshold, the load or charger that caused it is still connected, or (for
        faults that never clear by themselves) the trip condition holds right now.
        """
        values = self.last_values if values is None else values
        m = self.last_measurements if m is None else m
        table = self.table
        trip_now = table.trip_condition(values)
        with np.errstate(invalid="ignore"):
            not_back = ~(table.sign * (values - table.release) <= 0.0)
        mode = table.release_mode
        if m is None:
            load = np.zeros(self.packs, dtype=bool)
            charging = np.zeros(self.packs, dtype=bool)
        else:
            load = m.load_present
            charging = m.charger_present & (np.nan_to_num(m.current_a) > 0.0)
        present = trip_now.copy()
        present |= self._untrusted[:, None] & self._from_cells  # cannot verify: assume still there
        present |= self.presumed  # judged over time and not yet judged again since a boot
        present |= (mode == _HYSTERESIS) & not_back
        present |= (mode == _LOAD_REMOVED) & load[:, None]
        present |= (mode == _CHARGER_REMOVED) & charging[:, None]
        return present

    def _update_faults(
        self,
        m: Measurements,
        t_s: float,
        dt_s: float,
        values: FloatArray,
        condition: BoolArray,
        fet_stuck: BoolArray,
        events: list[Event],
    ) -> None:
        table = self.table
        # Quiet cycles (nothing tripping, nothing counting, nothing active) are the common case
        # for thousands of packs; they skip the timer arithmetic but change nothing else.
        counting = condition.any() or self._timers_running
        if counting:
            self.trip_timer_s = debounce(self.trip_timer_s, condition, self._trip_seen, dt_s)
            self._trip_seen = condition
            tripping = condition & elapsed(self.trip_timer_s, table.trip_delay_s)
            self._timers_running = bool(self.trip_timer_s.any())
        else:
            tripping = condition
        if m.short_circuit_tripped.any():
            # Hardware detectors (short circuit) trip inside the cycle, at the time the AFE reports.
            afe_trip = (table.in_afe & table.enabled)[None, :] & m.short_circuit_tripped[:, None]
            tripping = np.where(table.in_afe[None, :], afe_trip, tripping)
        elif self._any_in_afe:
            tripping = tripping & ~table.in_afe[None, :]
        if self.presumed.any():
            self._judge_presumed(tripping, t_s, events)
        new = tripping & ~self.active

        if not self.active.any():
            self._just_cleared = self._no_faults
            if new.any():
                self._record_trips(new, m, t_s, values, m.afe_damaged | fet_stuck, events)
            return
        # SPEC §3: charger removed or I ≤ 0 (read with the rest-current tolerance, so sensor
        # noise around zero with the charge FET open counts as "not charging").
        charger_gone = ~m.charger_present | (m.current_a <= self.rest_current_a)
        releasing = table.release_condition(values, m.load_present, charger_gone) & self.active
        self.release_timer_s = debounce(self.release_timer_s, releasing, self._release_seen, dt_s)
        self._release_seen = releasing
        cleared = (
            self.active
            & ~new
            & releasing
            & elapsed(self.release_timer_s, table.release_delay_s)
            & (self.klass <= LOAD_REMOVAL)
            & ~tripping
        )
        if new.any():
            damaged = m.afe_damaged | fet_stuck
            self._record_trips(new, m, t_s, values, damaged, events)
        self._just_cleared = cleared
        if cleared.any():
            self._clear(cleared, t_s, None, events)

    def _judge_presumed(self, tripping: BoolArray, t_s: float, events: list[Event]) -> None:
        """A fault presumed present at boot is confirmed when its condition trips again with
        fresh readings, and cleared (by the hard reset) once its judgement window has passed."""
        confirmed = self.presumed & tripping
        for pack, j in zip(*np.nonzero(confirmed), strict=True):
            events.append(
                Event(
                    t_s,
                    int(pack),
                    "fault_persisted_after_reset",
                    {"fault": self.table.names[j], "method": self.boot_method[pack]},
                )
            )
        expired = self.presumed & ~confirmed & (t_s >= self.presumed_until_s)
        self.presumed &= ~(confirmed | expired)
        if expired.any():
            self._clear(expired, t_s, "hard_reset", events)

    def _record_trips(
        self,
        new: BoolArray,
        m: Measurements,
        t_s: float,
        values: FloatArray,
        damaged: BoolArray,
        events: list[Event],
    ) -> None:
        table = self.table
        self.active |= new
        self.release_timer_s[new] = 0.0
        for pack, j in zip(*np.nonzero(new), strict=True):
            by_afe = bool(table.in_afe[j] and m.short_circuit_tripped[pack])
            at_s = float(m.short_circuit_at_s[pack]) if by_afe else t_s
            self.since_s[pack, j] = at_s
            klass = int(self._base_class[j])
            history = self.trip_history_s[pack, j]
            history[:-1] = history[1:].copy()
            history[-1] = at_s
            count = int(table.escalate_count[j])
            if count and history[-count] >= at_s - table.escalate_window_s[j]:
                klass = LATCHED
            if j == self._j_afe and damaged[pack]:
                klass = PERSISTENT
                self.afe_damaged[pack] = True
            self.klass[pack, j] = klass
            value = float(values[pack, j])
            if by_afe:
                value = float(m.short_circuit_peak_a[pack] / self.pack.capacity_ah)
            fields: dict[str, Any] = {
                "fault": table.names[j],
                "class": CLASSES[klass],
                "value": _rounded(value),
                "threshold": float(table.trip[j]),
            }
            if j == self._j_uv:
                learned = self.soc.empty_point(int(pack), t_s, events)
                weakest = int(np.nanargmin(np.where(np.isnan(m.cell_v[pack]), np.inf, m.cell_v[pack])))
                fields["cell"] = weakest + 1
                if learned is not None:
                    self.health.observe_capacity(int(pack), weakest, learned, self.pack.capacity_ah)
            if j == self._j_ov and not self.soc.full_done[pack]:
                self.soc.full_point(int(pack), at_s, "overvoltage", events)
            if j == self._j_sensor:
                fields["reason"] = REASONS[int(self.sensors.reason[pack])] or "implausible"
                self.over_time[pack, j] = fields["reason"] in JUDGED_OVER_TIME
            if j == self._j_failure:
                fields["cells"] = [int(c) + 1 for c in np.nonzero(self.health.failed[pack])[0]]
            events.append(Event(at_s, int(pack), "fault_set", fields))

    def _clear(self, cleared: BoolArray, t_s: float, by: str | None, events: list[Event]) -> None:
        """Clear faults; ``by`` None means each clears by its own class (auto, charger, …)."""
        natural = {AUTO: "auto", CHARGER: "charger", LOAD_REMOVAL: "load_removal"}
        for pack, j in zip(*np.nonzero(cleared), strict=True):
            reason = by or natural.get(int(self.klass[pack, j]), "auto")
            events.append(Event(t_s, int(pack), "fault_cleared", {"fault": self.table.names[j], "by": reason}))
            if j == self._j_afe:
                self.afe_damaged[pack] = False
        self.active &= ~cleared
        self.trip_timer_s[cleared] = 0.0
        self.release_timer_s[cleared] = 0.0
        self.since_s[cleared] = np.nan
        self.over_time &= ~cleared
        self.klass = np.where(cleared, self._base_class[None, :], self.klass)

    def _update_warnings(self, t_s: float, dt_s: float, values: FloatArray, events: list[Event]) -> None:
        """A warning rises after half the trip delay and falls only after its condition has been
        gone for the release delay (at least 2 s), so noise near the threshold does not flicker."""
        warn = self.table.warn_condition(values)
        if self._untrusted.any():
            warn &= ~(self._untrusted[:, None] & self._from_cells)
        if not self._warnings_running and not warn.any():
            return
        self._warnings_running = True
        self.warn_timer_s = debounce(self.warn_timer_s, warn, self._warn_seen, dt_s)
        self._warn_seen = warn
        self.warn_gone_s = np.where(warn, 0.0, self.warn_gone_s + dt_s)
        rises = warn & elapsed(self.warn_timer_s, 0.5 * self.table.trip_delay_s)
        falls = self.warn_gone_s >= self._warn_hold_s
        now = rises | (self.warning_active & ~falls)
        rising = now & ~self.warning_active & ~self.active & ~self._just_cleared
        self.warning_active = now
        self._warnings_running = bool(now.any() or self.warn_timer_s.any())
        for pack, j in zip(*np.nonzero(rising), strict=True):
            events.append(
                Event(
                    t_s,
                    int(pack),
                    "warning",
                    {
                        "warning": self.table.names[j],
                        "value": _rounded(float(values[pack, j])),
                        "threshold": float(self.table.warn[j]),
                    },
                )
            )

    # ----------------------------------------------------------------- sleep
    def _update_sleep(self, m: Measurements, stats: CellStats, t_s: float, dt_s: float, events: list[Event]) -> None:
        """Sleep after a long under-voltage with no charge current; wake on a charger's rising
        edge (after it was away ``rearm_s``) or the reset button (SPEC §4)."""
        settings = self.profile.sleep
        uv = self.active[:, self._j_uv] if self._j_uv >= 0 else np.zeros(self.packs, dtype=bool)
        # Charge current counts only once it has flowed ``charge_confirm_s``: measurement noise around
        # 0 A crosses the rest current now and then, and must not keep a flat pack awake for ever.
        self.charging_s = np.where(stats.current_a > self.rest_current_a, self.charging_s + dt_s, 0.0)
        charging = self.charging_s >= settings.charge_confirm_s
        asleep_soon = uv & ~charging & ~self.sleeping
        self.sleep_timer_s = np.where(asleep_soon, self.sleep_timer_s + np.where(self._sleep_seen, dt_s, 0.0), 0.0)
        self._sleep_seen = asleep_soon
        falling_asleep = (self.sleep_timer_s >= settings.delay_s) & ~self.sleeping
        charger = m.charger_present
        away_before = self.charger_away_s
        rising = charger & ~self._charger_was_present & (away_before >= settings.rearm_s)
        self.charger_away_s = np.where(charger, 0.0, away_before + dt_s)
        self._charger_was_present = charger
        for pack in np.nonzero(falling_asleep)[0]:
            events.append(Event(t_s, int(pack), "sleep", {"reason": "cell_undervoltage"}))
            # A charger already there does not wake it; one absent now counts as long gone.
            self.charger_away_s[pack] = 0.0 if charger[pack] else settings.rearm_s
        self.sleeping |= falling_asleep
        wake_by_charger = self.sleeping & rising & ~falling_asleep
        for pack in np.nonzero(wake_by_charger | m.reset_button)[0]:
            method = "button" if m.reset_button[pack] else "charger"
            self.soft_reset_one(int(pack), t_s, method, events)

    # ----------------------------------------------------------------- resets
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
        present = self.present()[pack]
        active = self.active[pack]
        klass = self.klass[pack]
        stays_latched = active & (klass >= LATCHED)
        persists = active & ~stays_latched & present
        clears = active & ~stays_latched & ~present
        if self.sleeping[pack]:
            self.sleeping[pack] = False
            self.sleep_timer_s[pack] = 0.0
            events.append(Event(t_s, pack, "wake", {"by": method}))
        row = np.zeros((self.packs, self._p), dtype=bool)
        row[pack] = clears
        if clears.any():
            self._clear(row, t_s, "soft_reset", events)
        for j in np.nonzero(persists)[0]:
            self.release_timer_s[pack, j] = 0.0
            events.append(
                Event(t_s, pack, "fault_persisted_after_reset", {"fault": self.table.names[j], "method": method})
            )
        # Recovery timers restart; a reading that tripped nothing yet starts its count afresh.
        self.trip_timer_s[pack] = 0.0
        self.recovery_blocked[pack] = False
        self.reset_counts[pack, RESET_METHODS.index(method)] += 1
        latched = [self.table.names[j] for j in np.nonzero(stays_latched)[0]]
        persisting = [self.table.names[j] for j in np.nonzero(persists)[0]]
        if latched:
            result, reason = "refused", "needs a hard reset or service: " + ", ".join(latched)
        elif persisting:
            result, reason = "ok", "condition still present: " + ", ".join(persisting)
        else:
            result, reason = "ok", ""
        fields: dict[str, Any] = {"method": method, "result": result}
        if reason:
            fields["reason"] = reason
        events.append(Event(t_s, pack, "reset", fields))
        self.dirty[pack] = True

    def service_clear(self, pack: int, fault: str, authenticated: bool, t_s: float) -> list[Event]:
        """The maintenance command for latched and persistent faults: refused while the
        condition is present, always logged (SPEC §4)."""
        events: list[Event] = []

        def refuse(reason: str) -> list[Event]:
            events.append(
                Event(
                    t_s,
                    pack,
                    "reset",
                    {"method": "service", "result": "refused", "fault": fault, "reason": reason},
                )
            )
            return events

        self.reset_counts[pack, RESET_METHODS.index("service")] += 1
        self.dirty[pack] = True
        if fault not in self.table.names:
            return refuse("unknown fault")
        j = self.table.index(fault)
        if not self.active[pack, j]:
            return refuse("fault not active")
        if not authenticated:
            return refuse("not authenticated")
        if self.klass[pack, j] == LATCHED and not self.profile.reset.service_clears_latched:
            return refuse("the profile does not allow a service clear of latched faults")
        if self.present()[pack, j] or (j == self._j_failure and self.health.failed[pack].any()):
            return refuse("condition still present")
        if j == self._j_afe and self.last_measurements is not None and self.last_measurements.afe_damaged[pack]:
            return refuse("condition still present")
        row = np.zeros((self.packs, self._p), dtype=bool)
        row[pack, j] = True
        self._clear(row, t_s, "service", events)
        events.append(Event(t_s, pack, "reset", {"method": "service", "result": "ok", "fault": fault}))
        return events

    def operator_fets(self, pack: int, charge_on: bool, discharge_on: bool, t_s: float) -> list[Event]:
        """A FET command from the monitoring link (e.g. JBD register 0xE1). It may switch a path off;
        switching it on again only lifts the operator's own block, never a protection's."""
        self.operator_charge_off[pack] = not charge_on
        self.operator_discharge_off[pack] = not discharge_on
        return []

    # ----------------------------------------------------------------- boot
    def boot(self, packs: BoolArray, remembered: list[dict[str, Any] | None], method: str = "hard") -> None:
        """Power came back after a full loss: volatile state is gone, memory is restored.

        The checks happen in the next ``step``: every protection is evaluated before a FET closes.
        """
        self._reset_volatile(packs)
        for pack in np.nonzero(packs)[0]:
            self.restore(int(pack), remembered[int(pack)] if pack < len(remembered) else None)
            self.booting[pack] = True
            self.boot_method[pack] = method

    def restore(self, pack: int, snapshot: dict[str, Any] | None) -> None:
        if not snapshot:
            self.remembered_active[pack] = set()
            self.remembered_over_time[pack] = set()
            self._soc_known[pack] = False
            return
        s = self._s
        soc = np.asarray(snapshot.get("soc", [np.nan] * s), dtype=float)
        self.soc.soc[pack] = soc
        self._soc_known[pack] = bool(np.isfinite(soc).all())
        self.soc.uncertain[pack] = True  # SPEC §4: last known SOC, uncertain until recalibrated
        self.soc.capacity_ah[pack] = float(snapshot.get("capacity_ah", self.pack.capacity_ah))
        self.soc.ah_since_full[pack] = np.nan
        counters = snapshot.get("counters", {})
        for name in ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh"):
            getattr(self.soc.counters, name)[pack] = float(counters.get(name, 0.0))
        resets = snapshot.get("reset_counts", {})
        for k, method in enumerate(RESET_METHODS):
            self.reset_counts[pack, k] = int(resets.get(method, 0))
        self.remembered_cell_v[pack] = np.asarray(snapshot.get("cell_v", [np.nan] * s), dtype=float)
        self.remembered_active[pack] = set(snapshot.get("active_faults", []))
        self.remembered_over_time[pack] = set(snapshot.get("judged_over_time", []))
        self.remembered_sleeping[pack] = bool(snapshot.get("sleeping", False))
        self.health.failed[pack] = False
        for cell in snapshot.get("failed_cells", []):
            self.health.failed[pack, int(cell) - 1] = True
        self.afe_damaged[pack] = bool(snapshot.get("afe_damaged", False))
        self._persistent_at_boot[pack] = list(snapshot.get("persistent_faults", []))

    def _boot_checks(self, m: Measurements, t_s: float, events: list[Event]) -> None:
        """First cycle after a boot: detect a replaced cell against the remembered voltages."""
        threshold = self.profile.cell_change.threshold_v
        for pack in np.nonzero(self.booting)[0]:
            before = self.remembered_cell_v[pack]
            now = m.cell_v[pack]
            if np.isfinite(before).all() and np.isfinite(now).all():
                moved = now - before
                # A new cell is a healthy one: a cell that merely sank further (a failing cell
                # discharging itself while the BMS was off) is not a replacement.
                healthy = now >= self._healthy_min_v
                odd = (np.abs(moved - np.median(moved)) > threshold) & healthy
                for cell in np.nonzero(odd)[0]:
                    events.append(
                        Event(
                            t_s,
                            int(pack),
                            "cell_change_detected",
                            {
                                "cell": int(cell) + 1,
                                "v_before": round(float(before[cell]), 4),
                                "v_now": round(float(now[cell]), 4),
                            },
                        )
                    )
                    self.soc.set_cell_from_ocv(int(pack), int(cell), float(now[cell]))
                    self.health.failed[pack, cell] = False
                    self.health.falling_count[pack, cell] = 0

    def _boot_trips(
        self, m: Measurements, t_s: float, values: FloatArray, condition: BoolArray, events: list[Event]
    ) -> None:
        """Evaluate every protection before any FET closes; what persists re-trips at once."""
        present = self.present(values, m)
        persistent_at_boot = self._persistent_at_boot
        for pack_index in np.nonzero(self.booting)[0]:
            pack = int(pack_index)
            method = self.boot_method[pack]
            was_active = self.remembered_active[pack]
            kept = persistent_at_boot.get(pack, [])
            at_once = np.zeros((self.packs, self._p), dtype=bool)
            presume = np.zeros(self._p, dtype=bool)
            for j, name in enumerate(self.table.names):
                if not self.table.enabled[j]:
                    continue
                # An AFE detector's own condition is not a reading here; its cause (the load or
                # short still connected) is what ``present`` judges for a remembered fault.
                now = condition[pack, j] and not self.table.in_afe[j]
                if name in kept or now or (name in was_active and present[pack, j]):
                    at_once[pack, j] = True
                elif name in self.remembered_over_time[pack] and self.table.presumed_after_boot_s[j] > 0:
                    presume[j] = True
            damaged = m.afe_damaged | self.afe_damaged
            self._record_trips(at_once, m, t_s, values, damaged, events)
            self._presume(pack, presume, t_s, events)
            for j_index in np.nonzero(at_once[pack])[0]:
                j = int(j_index)
                name = self.table.names[j]
                if name in kept:
                    self.klass[pack, j] = PERSISTENT
                if name in was_active:
                    events.append(
                        Event(t_s, int(pack), "fault_persisted_after_reset", {"fault": name, "method": method})
                    )
            for name in sorted(was_active):
                j = self.table.index(name) if name in self.table.names else -1
                if j >= 0 and not at_once[pack, j] and not presume[j]:
                    events.append(Event(t_s, pack, "fault_cleared", {"fault": name, "by": "hard_reset"}))
            if method == "hard":
                self.reset_counts[pack, RESET_METHODS.index("hard")] += 1
                events.append(Event(t_s, int(pack), "reset", {"method": "hard", "result": "ok"}))
            if self.remembered_sleeping[pack]:
                events.append(Event(t_s, int(pack), "wake", {"by": "power_on"}))
            self.booting[pack] = False
            self.dirty[pack] = True

    def _presume(self, pack: int, presume: BoolArray, t_s: float, events: list[Event]) -> None:
        """Keep these remembered faults active until judged again: their FETs stay open."""
        if not presume.any():
            return
        self.active[pack] |= presume
        self.presumed[pack] = presume
        self.over_time[pack] |= presume
        self.presumed_until_s[pack] = np.where(presume, t_s + self.table.presumed_after_boot_s, 0.0)
        self.since_s[pack] = np.where(presume, t_s, self.since_s[pack])
        for j in np.nonzero(presume)[0]:
            events.append(
                Event(
                    t_s,
                    pack,
                    "fault_set",
                    {
                        "fault": self.table.names[j],
                        "class": CLASSES[int(self.klass[pack, j])],
                        "value": None,
                        "threshold": float(self.table.trip[j]),
                        "presumed_s": float(self.table.presumed_after_boot_s[j]),
                    },
                )
            )

    # ----------------------------------------------------------------- FETs and state
    def _update_fets(
        self,
        t_s: float,
        dt_s: float,
        condition: BoolArray,
        stats: CellStats,
        m: Measurements,
        events: list[Event],
    ) -> None:
        counts = self.active.astype(np.float32) @ self._path_matrix
        charge_blocked = counts[:, 0] > 0
        recovery_only = counts[:, 1] > 0
        discharge_blocked = counts[:, 2] > 0
        if recovery_only.any():
            # A deep-discharged pack may take a small recovery charge (SPEC §3); more than that
            # for a second opens the charge FET until the charger goes away.
            over = stats.current_a > self._recovery_charge_a * _RECOVERY_CHARGE_GRACE
            overrate = recovery_only & over
            self.recovery_overrate_s = np.where(
                overrate, self.recovery_overrate_s + np.where(self._overrate_seen, dt_s, 0.0), 0.0
            )
            self._overrate_seen = overrate
            self.recovery_blocked |= recovery_only & (self.recovery_overrate_s >= 1.0)
            self.recovery_blocked &= recovery_only & m.charger_present
            charge_blocked |= recovery_only & self.recovery_blocked
        # An operator's FET-off command (monitoring link) can only open a path, never close one.
        charge_fet = ~charge_blocked & ~self.sleeping & ~self.operator_charge_off
        discharge_fet = ~discharge_blocked & ~self.sleeping & ~self.operator_discharge_off
        for name, old, new in (
            ("charge", self.charge_fet, charge_fet),
            ("discharge", self.discharge_fet, discharge_fet),
        ):
            for pack in np.nonzero(old != new)[0]:
                events.append(Event(t_s, int(pack), "fet_changed", {"fet": name, "on": bool(new[pack])}))
        self.charge_fet, self.discharge_fet = charge_fet, discharge_fet
        self._recovery_only = recovery_only

    def _update_state(self, t_s: float, events: list[Event]) -> None:
        active = self.active
        if not active.any() and not self.sleeping.any() and not (self.state != states.NORMAL).any():
            return
        klass = self.klass
        table = self.table
        locked = (active & (klass == PERSISTENT)).any(axis=1)
        latched = (active & (klass == LATCHED)).any(axis=1)
        blocking = (active & (table.blocks_charge | table.blocks_discharge)).any(axis=1)
        new_state = np.select(
            [locked, latched, self.sleeping, blocking],
            [states.LOCKED, states.LATCHED, states.SLEEP, states.PROTECTED],
            states.NORMAL,
        ).astype(np.int8)
        for pack in np.nonzero(new_state != self.state)[0]:
            events.append(
                Event(
                    t_s,
                    int(pack),
                    "state_changed",
                    {"from": states.STATES[self.state[pack]], "to": states.STATES[new_state[pack]]},
                )
            )
        self.state = new_state

    def _update_balancing(self, m: Measurements, stats: CellStats, t_s: float, events: list[Event]) -> None:
        bal = self.profile.balancing
        if not bal.enabled:
            return
        current_c = stats.current_a / self.pack.capacity_ah
        topping = (current_c > 0) & (stats.max_v >= bal.min_cell_v)
        if self._j_ov >= 0:
            topping |= self.active[:, self._j_ov]
        # Balancing time lasts from the top of a charge until the pack is discharged again: by a
        # net charge (sensor noise averages out in it) of more than ``top_until_out_soc``.
        out_ah = -stats.current_a * self._dt_s / 3600.0
        self.out_since_top_ah = np.where(topping, 0.0, np.maximum(self.out_since_top_ah + out_ah, 0.0))
        ended = self.out_since_top_ah > bal.top_until_out_soc * self.pack.capacity_ah
        self.after_top = (self.after_top | topping) & ~ended
        stopping = (self.active & self.table.stops_balancing).any(axis=1)
        allowed = ~stopping & m.afe_ok & ~self.sleeping & ~self._untrusted & self.after_top
        if not allowed.any() and not self.balance.any():
            return
        mask = balancing_mask(
            bal,
            m.cell_v,
            stats,
            self.pack.capacity_ah,
            self.profile.rest_current_c_rate,
            allowed,
            self.balance,
        )
        changed = (mask != self.balance).any(axis=1)
        for pack in np.nonzero(changed)[0]:
            cells = [int(c) + 1 for c in np.nonzero(mask[pack])[0]]
            events.append(Event(t_s, int(pack), "balancing", {"cells": cells}))
        self.balance = mask

    def _commands(self, charge_limit_a: FloatArray, discharge_limit_a: FloatArray) -> Commands:
        charge_limit = np.where(self.charge_fet, charge_limit_a, 0.0)
        recovery = self._recovery_only
        charge_limit = np.where(recovery, np.minimum(charge_limit_a, self._recovery_charge_a), charge_limit)
        charge_limit = np.where(self.charge_fet, charge_limit, 0.0)
        return Commands(
            charge_fet=self.charge_fet,
            discharge_fet=self.discharge_fet,
            balance=self.balance,
            charge_current_limit_a=charge_limit,
            discharge_current_limit_a=np.where(self.discharge_fet, discharge_limit_a, 0.0),
            charge_voltage_limit_v=np.full(self.packs, self.profile.limits.charge_voltage_cell_v * self.pack.series),
        )

    # ----------------------------------------------------------------- memory
    def _mark_dirty(self, t_s: float, events: list[Event]) -> None:
        for event in events:
            if event.kind in (
                "fault_set",
                "fault_cleared",
                "sleep",
                "wake",
                "reset",
                "soc_recalibrated",
                "cell_change_detected",
            ):
                self.dirty[event.pack] = True
        due = t_s - self._last_save_s >= self.profile.soc.save_interval_s
        self.dirty |= due

    def saved(self, packs: BoolArray, t_s: float) -> None:
        """The non-volatile memory has stored these packs' snapshots."""
        self.dirty &= ~packs
        self._last_save_s = np.where(packs, t_s, self._last_save_s)

    def persistent_snapshot(self, pack: int) -> dict[str, Any]:
        """Everything SPEC §4 keeps across a hard reset, as plain JSON-able values."""
        active = self.active_faults(pack)
        m = self.last_measurements
        cell_v = m.cell_v[pack] if m is not None else np.full(self._s, np.nan)
        c = self.soc.counters
        return {
            "persistent_faults": [f["fault"] for f in self.fault_details(pack) if f["class"] == "persistent"],
            "active_faults": active,
            "judged_over_time": [self.table.names[j] for j in np.nonzero(self.active[pack] & self.over_time[pack])[0]],
            "sleeping": bool(self.sleeping[pack]),
            "soc": [_rounded(float(v)) for v in self.soc.soc[pack]],
            "soc_uncertain": bool(self.soc.uncertain[pack]),
            "capacity_ah": float(self.soc.capacity_ah[pack]),
            "soh": round(float(self.soc.capacity_ah[pack] / self.pack.capacity_ah), 4),
            "cell_v": [_rounded(float(v)) for v in cell_v],
            "counters": {
                "charge_ah": float(c.charge_ah[pack]),
                "discharge_ah": float(c.discharge_ah[pack]),
                "charge_wh": float(c.charge_wh[pack]),
                "discharge_wh": float(c.discharge_wh[pack]),
                "cycles": float(c.cycles[pack]),
            },
            "reset_counts": {m_: int(self.reset_counts[pack, k]) for k, m_ in enumerate(RESET_METHODS)},
            "failed_cells": [int(c_) + 1 for c_ in np.nonzero(self.health.failed[pack])[0]],
            "afe_damaged": bool(self.afe_damaged[pack]),
        }

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
                "class": CLASSES[int(self.klass[pack, j])],
                "since_s": float(self.since_s[pack, j]),
            }
            for j in np.nonzero(self.active[pack])[0]
        ]

    def state_name(self, pack: int) -> str:
        return states.STATES[int(self.state[pack])]


_FLOAT_FIELDS = tuple(f.name for f in fields(Measurements) if f.name not in ("short_circuit_at_s",))


def _finite_or_nan(m: Measurements) -> Measurements:
    """An infinite reading is no more a value than NaN: the brain sees both as unreadable."""
    bad = {}
    for name in _FLOAT_FIELDS:
        value = getattr(m, name)
        if value.dtype.kind == "f" and np.isinf(value).any():
            bad[name] = np.where(np.isinf(value), np.nan, value)
    return replace(m, **bad) if bad else m


def _rounded(value: float) -> float | None:
    return None if not np.isfinite(value) else round(value, 6)
