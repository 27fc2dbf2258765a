"""The BMS brain: measurements in, FET and balancing commands out, events alongside.

Pure logic over arrays shaped (packs, ...): it never reads a clock (``t_s`` is passed in), never
draws a random number and never touches a file. The same object runs against the twin's AFE or a
real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from openbms.bms import states
from openbms.bms.events import Event
from openbms.bms.interface import AfeProtectionConfig, Commands, Measurements
from openbms.bms.profile import Profile
from openbms.bms.protections import QUANTITIES, ProtectionTable, debounce, elapsed
from openbms.chemistry import OcvTable

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_Q = {name: i for i, name in enumerate(QUANTITIES)}


@dataclass(frozen=True)
class PackConfig:
    """What the BMS is told about the pack it guards (as set up on a real board)."""

    series: int
    capacity_ah: float  # rated capacity of one series group (cell Ah × parallel cells)
    ocv: OcvTable  # the chemistry's OCV curve, for SOC from voltage


class Bms:
    """One brain for a batch of identical packs."""

    def __init__(
        self,
        profile: Profile,
        pack: PackConfig,
        packs: int = 1,
        initial_soc: FloatArray | None = None,
    ) -> None:
        self.profile = profile
        self.pack = pack
        self.table = ProtectionTable.from_profile(profile)
        n, p, s = packs, len(self.table.names), pack.series
        self.packs = packs
        self.active = np.zeros((n, p), dtype=bool)
        self.since_s = np.full((n, p), np.nan)
        self.trip_timer_s = np.zeros((n, p))
        self.release_timer_s = np.zeros((n, p))
        self.warn_timer_s = np.zeros((n, p))
        self._trip_seen = np.zeros((n, p), dtype=bool)
        self._release_seen = np.zeros((n, p), dtype=bool)
        self._warn_seen = np.zeros((n, p), dtype=bool)
        self.warning_active = np.zeros((n, p), dtype=bool)
        self.escalated = np.zeros((n, p), dtype=bool)
        depth = max(int(self.table.escalate_count.max(initial=0)), 1)
        self.trip_history_s = np.full((n, p, depth), -np.inf)
        self.state = np.full(n, states.NORMAL, dtype=np.int8)
        self.charge_fet = np.zeros(n, dtype=bool)
        self.discharge_fet = np.zeros(n, dtype=bool)
        self.balance = np.zeros((n, s), dtype=bool)
        # After a boot no FET closes while a condition that blocks its path is present (SPEC §4).
        self.boot_hold = np.ones(n, dtype=bool)
        self.full_timer_s = np.zeros(n)
        self.full_recalibrated = np.zeros(n, dtype=bool)
        self.soc = (
            np.broadcast_to(np.asarray(initial_soc, dtype=float), (n, s)).copy()
            if initial_soc is not None
            else np.full((n, s), np.nan)
        )
        self.last_values = np.full((n, p), np.nan)
        self.last_cell_v = np.full((n, s), np.nan)
        self.last_cell_t_c = np.full((n, s), np.nan)
        self.last_current_a = np.zeros(n)
        self.limits = Commands(
            charge_fet=self.charge_fet,
            discharge_fet=self.discharge_fet,
            balance=self.balance,
            charge_current_limit_a=np.zeros(n),
            discharge_current_limit_a=np.zeros(n),
            charge_voltage_limit_v=np.zeros(n),
        )
        self._t_last_s: float | None = None
        self._soc_known = initial_soc is not None
        recovery = np.array(self.table.recovery)
        blocks_charge, blocks_discharge = self.table.blocks_charge, self.table.blocks_discharge
        # Columns: blocks charge, blocks discharge, blocks either, latched, persistent, any.
        self._class_matrix = np.column_stack(
            [
                blocks_charge,
                blocks_discharge,
                blocks_charge | blocks_discharge,
                recovery == "latched",
                recovery == "persistent",
                np.ones(p, dtype=bool),
            ]
        ).astype(np.float32)
        self._path_matrix = self._class_matrix[:, :2].copy()
        self._active_counts = np.zeros((n, self._class_matrix.shape[1]), dtype=np.float32)

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
    def step(self, m: Measurements, t_s: float) -> tuple[Commands, list[Event]]:
        """Evaluate one control cycle at time ``t_s`` and return the commands and new events."""
        dt_s = self.profile.cycle_s if self._t_last_s is None else max(t_s - self._t_last_s, 0.0)
        self._t_last_s = t_s
        events: list[Event] = []
        if not self._soc_known:
            self._init_soc_from_ocv(m)
            self._soc_known = True

        stats = _CellStats.of(m)
        quantities = self._quantities(m, stats, dt_s)
        values = self.table.values(quantities)
        self.last_values = values
        condition = self.table.trip_condition(values)
        self._update_faults(m, t_s, dt_s, values, condition, events)
        self._update_warnings(t_s, dt_s, values, events)
        # One small matrix product answers "is any active fault of this kind?" for every pack.
        self._active_counts = self.active.astype(np.float32) @ self._class_matrix
        self._update_fets(t_s, condition, events)
        self._update_state(t_s, events)
        self._update_soc(m, stats, t_s, dt_s, events)
        self._update_balancing(m, stats, t_s, events)
        self.limits = self._limits(stats)
        self.last_cell_v, self.last_cell_t_c, self.last_current_a = m.cell_v, m.cell_t_c, m.current_a
        return self.limits, events

    def _quantities(self, m: Measurements, stats: _CellStats, dt_s: float) -> FloatArray:
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
        q[:, _Q["sensor_implausible"]] = self._implausible(m, stats) & m.afe_ok
        q[:, _Q["afe_not_answering"]] = (~m.afe_ok).astype(float)
        q[:, _Q["link_bad"]] = ~m.link_ok
        q[:, _Q["cell_failure_flag"]] = 0.0
        # A non-finite quantity never satisfies a comparison; the sensor fault covers it instead.
        q[~np.isfinite(q)] = np.nan
        return q

    def _implausible(self, m: Measurements, stats: _CellStats) -> BoolArray:
        """A reading the brain must not trust: NaN, outside physics, or cells ≠ stack.

        Comparisons are written so that NaN fails them: any NaN makes the reading implausible.
        """
        sens = self.profile.sensors
        good_v = (stats.min_v_raw >= sens.cell_v_min_v) & (stats.max_v_raw <= sens.cell_v_max_v)
        good_t = (stats.min_t_raw >= sens.temperature_min_c) & (stats.max_t_raw <= sens.temperature_max_c)
        good_i = np.isfinite(m.current_a) & np.isfinite(m.stack_v) & np.isfinite(m.fet_t_c)
        mismatch = np.abs(m.stack_v - stats.sum_v)
        allowed = np.maximum(sens.stack_mismatch_fraction * np.abs(m.stack_v), sens.stack_mismatch_min_v)
        good_stack = mismatch <= allowed
        return ~(good_v & good_t & good_i & good_stack)

    def _update_faults(
        self,
        m: Measurements,
        t_s: float,
        dt_s: float,
        values: FloatArray,
        condition: BoolArray,
        events: list[Event],
    ) -> None:
        table = self.table
        self.trip_timer_s = debounce(self.trip_timer_s, condition, self._trip_seen, dt_s)
        self._trip_seen = condition
        tripping = condition & elapsed(self.trip_timer_s, table.trip_delay_s)
        # Hardware detectors (short circuit) trip inside the cycle, at the time the AFE reports.
        afe_trip = (table.in_afe & table.enabled)[None, :] & m.short_circuit_tripped[:, None]
        tripping = np.where(table.in_afe[None, :], afe_trip, tripping)
        new = tripping & ~self.active

        charger_gone = ~m.charger_present | (m.current_a <= 0.0)
        releasing = table.release_condition(values, m.load_present, charger_gone) & self.active
        self.release_timer_s = debounce(self.release_timer_s, releasing, self._release_seen, dt_s)
        self._release_seen = releasing
        cleared = (
            self.active
            & ~new
            & releasing
            & elapsed(self.release_timer_s, table.release_delay_s)
            & table.self_clearing
            & ~self.escalated
            & ~tripping
        )
        if new.any():
            self._record_trips(new, m, t_s, values, events)
        if cleared.any():
            self._clear(cleared, t_s, "auto", events)

    def _record_trips(
        self, new: BoolArray, m: Measurements, t_s: float, values: FloatArray, events: list[Event]
    ) -> None:
        table = self.table
        self.active |= new
        self.release_timer_s[new] = 0.0
        for pack, j in zip(*np.nonzero(new), strict=True):
            at_s = float(m.short_circuit_at_s[pack]) if table.in_afe[j] else t_s
            self.since_s[pack, j] = at_s
            history = self.trip_history_s[pack, j]
            history[:-1] = history[1:].copy()
            history[-1] = at_s
            count = int(table.escalate_count[j])
            if count and history[-count] >= at_s - table.escalate_window_s[j]:
                self.escalated[pack, j] = True
            recovery = "latched" if self.escalated[pack, j] else table.recovery[j]
            value = float(values[pack, j])
            if table.in_afe[j]:
                value = float(m.short_circuit_peak_a[pack] / self.pack.capacity_ah)
            events.append(
                Event(
                    at_s,
                    int(pack),
                    "fault_set",
                    {
                        "fault": table.names[j],
                        "class": recovery,
                        "value": _rounded(value),
                        "threshold": float(table.trip[j]),
                    },
                )
            )

    def _clear(self, cleared: BoolArray, t_s: float, by: str, events: list[Event]) -> None:
        by_for_class = {"charger": "charger", "load-removal": "load_removal"}
        for pack, j in zip(*np.nonzero(cleared), strict=True):
            reason = by if by != "auto" else by_for_class.get(self.table.recovery[j], "auto")
            events.append(
                Event(t_s, int(pack), "fault_cleared", {"fault": self.table.names[j], "by": reason})
            )
        self.active &= ~cleared
        self.trip_timer_s[cleared] = 0.0
        self.release_timer_s[cleared] = 0.0
        self.since_s[cleared] = np.nan
        self.escalated &= ~cleared

    def _update_warnings(self, t_s: float, dt_s: float, values: FloatArray, events: list[Event]) -> None:
        warn = self.table.warn_condition(values)
        self.warn_timer_s = debounce(self.warn_timer_s, warn, self._warn_seen, dt_s)
        self._warn_seen = warn
        now = warn & elapsed(self.warn_timer_s, self.table.trip_delay_s) | (self.warning_active & warn)
        rising = now & ~self.warning_active & ~self.active
        self.warning_active = now
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

    def _path_blocked(self, condition: BoolArray) -> tuple[BoolArray, BoolArray]:
        charge, discharge = self._active_counts[:, 0] > 0, self._active_counts[:, 1] > 0
        if not self.boot_hold.any():
            return charge, discharge
        present = condition.astype(np.float32) @ self._path_matrix
        present_charge, present_discharge = present[:, 0] > 0, present[:, 1] > 0
        self.boot_hold &= present_charge | present_discharge
        charge |= self.boot_hold & present_charge
        discharge |= self.boot_hold & present_discharge
        return charge, discharge

    def _update_fets(self, t_s: float, condition: BoolArray, events: list[Event]) -> None:
        charge_blocked, discharge_blocked = self._path_blocked(condition)
        charge_fet, discharge_fet = ~charge_blocked, ~discharge_blocked
        for name, old, new in (
            ("charge", self.charge_fet, charge_fet),
            ("discharge", self.discharge_fet, discharge_fet),
        ):
            for pack in np.nonzero(old != new)[0]:
                events.append(Event(t_s, int(pack), "fet_changed", {"fet": name, "on": bool(new[pack])}))
        self.charge_fet, self.discharge_fet = charge_fet, discharge_fet

    def _update_state(self, t_s: float, events: list[Event]) -> None:
        counts = self._active_counts
        latched = counts[:, 3] > 0
        if self.escalated.any():
            latched |= (self.active & self.escalated).any(axis=1)
        locked = counts[:, 4] > 0
        blocking = counts[:, 2] > 0
        new_state = np.where(
            locked,
            states.LOCKED,
            np.where(latched, states.LATCHED, np.where(blocking, states.PROTECTED, states.NORMAL)),
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

    # ----------------------------------------------------------------- SOC
    def _init_soc_from_ocv(self, m: Measurements) -> None:
        missing = np.isnan(self.soc)
        from_ocv = self.pack.ocv.soc_from_voltage(np.nan_to_num(m.cell_v, nan=0.0))
        self.soc = np.where(missing, from_ocv, self.soc)

    def _update_soc(
        self, m: Measurements, stats: _CellStats, t_s: float, dt_s: float, events: list[Event]
    ) -> None:
        current = stats.current_a
        self.soc += (current * (dt_s / (3600.0 * self.pack.capacity_ah)))[:, None]
        settings = self.profile.soc
        cap = self.pack.capacity_ah
        max_v = stats.max_v
        near_full = (
            (max_v >= settings.full_cell_v) & (current > 0.0) & (current < settings.full_tail_c_rate * cap)
        )
        self.full_timer_s = np.where(near_full, self.full_timer_s + dt_s, 0.0)
        full = elapsed(self.full_timer_s, np.asarray(settings.full_hold_s)) & ~self.full_recalibrated
        self.full_recalibrated = (self.full_recalibrated | full) & (current >= 0.0)
        for pack in np.nonzero(full)[0]:
            before = float(self.soc[pack].mean())
            self.soc[pack] = 1.0
            events.append(
                Event(
                    t_s,
                    int(pack),
                    "soc_recalibrated",
                    {"soc_before": round(before, 4), "soc": 1.0, "by": "full_charge"},
                )
            )

    @property
    def pack_soc(self) -> FloatArray:
        """Reported pack SOC: the mean of the series groups, held within 0..1."""
        return np.clip(self.soc.mean(axis=1), 0.0, 1.0)

    # ----------------------------------------------------------------- balancing and limits
    def _update_balancing(self, m: Measurements, stats: _CellStats, t_s: float, events: list[Event]) -> None:
        bal = self.profile.balancing
        if not bal.enabled:
            return
        current_c = stats.current_a / self.pack.capacity_ah
        resting = np.abs(current_c) < self.profile.rest_current_c_rate
        topping = (current_c > 0) & (stats.max_v >= bal.min_cell_v)
        cool = stats.max_t_raw <= bal.max_temperature_c  # NaN counts as hot
        faulted = self._active_counts[:, 2] > 0  # a warning-only fault (imbalance) must not stop it
        allowed = (resting | topping) & cool & ~faulted & m.afe_ok
        if not allowed.any() and not self.balance.any():
            return
        mask = (m.cell_v - stats.min_v[:, None] > bal.threshold_v) & allowed[:, None]
        changed = (mask != self.balance).any(axis=1)
        for pack in np.nonzero(changed)[0]:
            cells = [int(c) + 1 for c in np.nonzero(mask[pack])[0]]
            events.append(Event(t_s, int(pack), "balancing", {"cells": cells}))
        self.balance = mask

    def _limits(self, stats: _CellStats) -> Commands:
        lim = self.profile.limits
        cap = self.pack.capacity_ah
        max_v, min_v = stats.max_v, stats.min_v
        t_hi, t_lo = stats.max_t, stats.min_t

        def factor(x: FloatArray, points: list[float], factors: list[float]) -> FloatArray:
            return np.interp(x, points, factors)

        charge_t = np.minimum(
            factor(t_hi, lim.charge_temperature_points_c, lim.charge_temperature_factors),
            factor(t_lo, lim.charge_temperature_points_c, lim.charge_temperature_factors),
        )
        discharge_t = np.minimum(
            factor(t_hi, lim.discharge_temperature_points_c, lim.discharge_temperature_factors),
            factor(t_lo, lim.discharge_temperature_points_c, lim.discharge_temperature_factors),
        )
        charge_a = (
            lim.charge_c_rate
            * cap
            * factor(max_v, lim.charge_cell_v_points, lim.charge_cell_v_factors)
            * charge_t
        )
        discharge_a = (
            lim.discharge_c_rate
            * cap
            * factor(min_v, lim.discharge_cell_v_points, lim.discharge_cell_v_factors)
            * discharge_t
        )
        return Commands(
            charge_fet=self.charge_fet,
            discharge_fet=self.discharge_fet,
            balance=self.balance,
            charge_current_limit_a=np.where(self.charge_fet, charge_a, 0.0),
            discharge_current_limit_a=np.where(self.discharge_fet, discharge_a, 0.0),
            charge_voltage_limit_v=np.full(self.packs, lim.charge_voltage_cell_v * self.pack.series),
        )

    # ----------------------------------------------------------------- reporting
    def active_faults(self, pack: int) -> list[str]:
        return [self.table.names[j] for j in np.nonzero(self.active[pack])[0]]

    def active_warnings(self, pack: int) -> list[str]:
        return [self.table.names[j] for j in np.nonzero(self.warning_active[pack])[0]]

    def fault_details(self, pack: int) -> list[dict[str, object]]:
        return [
            {
                "fault": self.table.names[j],
                "class": "latched" if self.escalated[pack, j] else self.table.recovery[j],
                "since_s": float(self.since_s[pack, j]),
            }
            for j in np.nonzero(self.active[pack])[0]
        ]

    def state_name(self, pack: int) -> str:
        return states.STATES[int(self.state[pack])]


@dataclass(frozen=True)
class _CellStats:
    """The per-pack extremes every part of a cycle needs, reduced once per cycle.

    ``*_raw`` propagate NaN (for plausibility); the others skip NaN cells, so one unreadable
    cell never hides another's over-voltage while the sensor fault debounces.
    """

    max_v: FloatArray
    min_v: FloatArray
    max_v_raw: FloatArray
    min_v_raw: FloatArray
    sum_v: FloatArray
    max_t: FloatArray
    min_t: FloatArray
    max_t_raw: FloatArray
    min_t_raw: FloatArray
    current_a: FloatArray  # NaN read as 0 A for counting; the sensor fault handles it

    @staticmethod
    def of(m: Measurements) -> _CellStats:
        max_v_raw = m.cell_v.max(axis=1)
        min_v_raw = m.cell_v.min(axis=1)
        max_t_raw = m.cell_t_c.max(axis=1)
        min_t_raw = m.cell_t_c.min(axis=1)
        if np.isnan(max_v_raw).any() or np.isnan(max_t_raw).any():
            max_v, min_v = np.fmax.reduce(m.cell_v, axis=1), np.fmin.reduce(m.cell_v, axis=1)
            max_t, min_t = np.fmax.reduce(m.cell_t_c, axis=1), np.fmin.reduce(m.cell_t_c, axis=1)
        else:
            max_v, min_v, max_t, min_t = max_v_raw, min_v_raw, max_t_raw, min_t_raw
        current = m.current_a
        if np.isnan(current).any():
            current = np.where(np.isnan(current), 0.0, current)
        return _CellStats(
            max_v=max_v,
            min_v=min_v,
            max_v_raw=max_v_raw,
            min_v_raw=min_v_raw,
            sum_v=m.cell_v.sum(axis=1),
            max_t=max_t,
            min_t=min_t,
            max_t_raw=max_t_raw,
            min_t_raw=min_t_raw,
            current_a=current,
        )


def _rounded(value: float) -> float | None:
    return None if not np.isfinite(value) else round(value, 6)
