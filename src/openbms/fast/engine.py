"""The fast engine: drives a ``Twin`` with the compiled cycle kernel, handing discrete cycles to Python.

``FastEngine.run`` runs up to N control cycles of a twin in ``fast.cycle.run_cycles`` and returns
at the first cycle where anything discrete may happen. That cycle's physics and readings are done
by then; ``Twin.decide_on`` (the reference's own second half of a cycle) decides it, so every
event, reset, hook and memory save has one implementation. Between calls the twin, its brain and
its AFE are exactly as the Python reference would have left them, so a caller may act on the twin
(connect a load, press a button, inject a fault) and call again, or step it in Python.

When the kernel may not run at all (``why_not`` says why: a board without power, a hung controller,
an AFE with a fault injected, a brain booting, judging a presumed fault or allowing a recovery
charge), the caller steps the twin in Python; the cycles after go back to the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from openbms.bms import outputs
from openbms.bms.interface import Measurements
from openbms.bms.limits import current_limits
from openbms.bms.memory import MovingValues
from openbms.bms.outputs import RECOVERY_CHARGE_GRACE
from openbms.bms.plausibility import CellStats
from openbms.bms.recovery_classes import CLEARS_BY_ITSELF
from openbms.chemistry.cells import _KELVIN
from openbms.fast import cycle as k
from openbms.twin.afe import NOISE_POOL_SIZE, AnalogFrontEnd
from openbms.twin.pack import NEIGHBOUR_CONDUCTANCE_FRACTION
from openbms.twin.simulator import Twin

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MAX_PARALLEL = 8  # NumPy sums 8 or more parallel cells pairwise; the kernel sums them in order
MAX_SERIES = 128  # NumPy sums longer rows recursively (see cycle.pairwise_sum)
TELEMETRY_BLOCK_ROWS = 4096


@dataclass(frozen=True)
class RunOutcome:
    """What one ``FastEngine.run`` did: cycles run (a handed-over cycle included), telemetry rows
    recorded (``rows``, a view of the engine's buffer valid until the next call) and why it
    stopped (``stop``: "" when it ran all cycles or filled the telemetry block)."""

    cycles: int
    rows: FloatArray
    stop: str
    stop_pack: int


def why_not(twin: Twin) -> str | None:
    """Why the kernel may not run the twin's next cycle (None: it may)."""
    bms, brain = twin.bms, twin.bms.brain
    series, parallel = twin.config.topology.series, twin.config.topology.parallel
    checks = (
        (not twin.running.all(), "a board is unpowered or its controller hung"),
        (twin.config.packs * series > NOISE_POOL_SIZE // 2, "more cells than the AFE's noise pool serves"),
        (series > MAX_SERIES, f"{series} series groups (the kernel sums up to {MAX_SERIES})"),
        (parallel >= MAX_PARALLEL, f"{parallel} cells in parallel (the kernel sums up to {MAX_PARALLEL - 1})"),
        (bms._t_last_s is None, "the brain has not run a cycle yet"),
        (bool(brain.booting.any()), "a brain is booting"),
        (bool(brain.presumed.any()), "a brain judges a fault presumed at boot"),
        (not bool(brain.soc_known.all()), "a brain has no SOC yet"),
        (bool(twin._button.any()), "a reset button is pressed"),
        (twin.nvm is not None and bool(brain.dirty.any()), "the memory has a save pending"),
        # A person's action between cycles (a reset, a service clear) changed the faults: the
        # next cycle moves the state or the recovery charge, which the kernel takes as given.
        (bool((outputs.next_state(brain) != brain.state).any()), "the state changes in the next cycle"),
        (bool((outputs.paths_blocked(brain)[1] != brain.recovery_only).any()), "the recovery charge changes"),
    )
    for failed, reason in checks:
        if failed:
            return reason
    return _afe_fault(twin.afe)


# AFE faults the kernel leaves to the Python AFE (a drift it reproduces: an offset added per cycle).
_AFE_FAULTS = (
    ("stuck_v_on", "a stuck cell-voltage sensor"),
    ("stuck_t_on", "a stuck temperature sensor"),
    ("stuck_i_on", "a stuck current sensor"),
    ("open_wire", "an open balance wire"),
    ("glitch", "an erratic (glitching) AFE"),
)


def _afe_fault(afe: AnalogFrontEnd) -> str | None:
    for name, what in _AFE_FAULTS:
        if np.asarray(getattr(afe, name)).any():
            return f"the AFE has {what}"
    return None


def float_settings(twin: Twin) -> FloatArray:
    """The kernel's float settings vector (``cycle.F_*`` order), read from the twin's profiles."""
    cfg, bms = twin.config, twin.bms
    profile, cap = bms.profile, bms.pack.capacity_ah
    cell = twin.pack.cells.params
    afe, sensors, soc, health, bal = cfg.board.afe, profile.sensors, profile.soc, profile.cell_health, profile.balancing
    fet = cfg.board.fet
    scd = twin.pack.afe_protection
    fs = np.zeros(k.F_COUNT)
    values = {
        k.F_DT: twin.dt_s,
        k.F_ETA: cell.coulombic_efficiency,
        k.F_ARRHENIUS: cell.arrhenius_k,
        k.F_INV_REF_K: 1.0 / (cell.reference_temperature_c + _KELVIN),
        k.F_NEIGHBOUR: NEIGHBOUR_CONDUCTANCE_FRACTION * cell.cooling_w_per_k,
        k.F_FET_R: 2.0 * fet.on_resistance_ohm,
        k.F_FET_MASS: fet.thermal_mass_j_per_k,
        k.F_FET_COOLING: fet.cooling_w_per_k,
        k.F_SCD_TRIP_A: scd.short_circuit_trip_a,
        k.F_SCD_DELAY_S: scd.short_circuit_delay_s,
        k.F_V_SD: afe.cell_v_noise_v,
        k.F_V_OFF: afe.cell_v_offset_v,
        k.F_V_STEP: afe.cell_v_resolution_v,
        k.F_STACK_STEP: afe.stack_v_resolution_v,
        k.F_I_SD: afe.current_noise_a,
        k.F_I_OFF: afe.current_offset_a,
        k.F_I_STEP: afe.current_resolution_a,
        k.F_T_SD: afe.temperature_noise_c,
        k.F_T_STEP: afe.temperature_resolution_c,
        k.F_CAPACITY_AH: cap,
        k.F_REST_C: profile.rest_current_c_rate,
        k.F_REST_A: bms.brain.rest_current_a,
        k.F_CURRENT_MAX_A: bms.sensors.current_max_a,
        k.F_CELL_V_MIN: sensors.cell_v_min_v,
        k.F_CELL_V_MAX: sensors.cell_v_max_v,
        k.F_T_MIN: sensors.temperature_min_c,
        k.F_T_MAX: sensors.temperature_max_c,
        k.F_MISMATCH_FRACTION: sensors.stack_mismatch_fraction,
        k.F_MISMATCH_MIN_V: sensors.stack_mismatch_min_v,
        k.F_STUCK_WINDOW_S: sensors.stuck_window_s,
        k.F_STUCK_MIN_READINGS: sensors.stuck_min_readings,
        k.F_STUCK_OTHERS_S: sensors.stuck_others_changed_within_s,
        k.F_STUCK_DEV_V: sensors.stuck_deviation_v,
        k.F_STUCK_DEV_C: sensors.stuck_deviation_c,
        k.F_FET_LEAK_A: sensors.fet_leak_a,
        k.F_FET_LEAK_DELAY_S: sensors.fet_leak_delay_s,
        k.F_CHARGE_CONFIRM_S: profile.sleep.charge_confirm_s,
        k.F_SLEEP_DELAY_S: profile.sleep.delay_s,
        k.F_REARM_S: profile.sleep.rearm_s,
        k.F_AWAKE_A: profile.board_draw.awake_a,
        k.F_ASLEEP_A: profile.board_draw.asleep_a,
        k.F_BLEED_OHM: bal.bleed_resistance_ohm,
        k.F_FULL_CELL_V: soc.full_cell_v,
        k.F_FULL_TAIL_A: soc.full_tail_c_rate * bms.soc.rated_capacity_ah,
        k.F_FULL_HOLD_S: soc.full_hold_s,
        k.F_OCV_REST_S: soc.ocv_rest_s,
        k.F_LEARN_INTERVAL_S: health.learn_interval_s,
        k.F_BAL_THRESHOLD_V: bal.threshold_v,
        k.F_BAL_MIN_CELL_V: bal.min_cell_v,
        k.F_BAL_MAX_T: bal.max_temperature_c,
        k.F_BAL_TOP_OUT_AH: bal.top_until_out_soc * cap,
        k.F_SAVE_INTERVAL_S: soc.save_interval_s,
        k.F_TWIN_BLEED_OHM: twin.pack.balance_resistance_ohm,
        k.F_POOL_LIMIT: NOISE_POOL_SIZE // 2,
        k.F_RECOVERY_LIMIT_A: bms.brain.recovery_charge_a * RECOVERY_CHARGE_GRACE,
    }
    for index, value in values.items():
        fs[index] = float(value)
    return fs


class FastEngine:
    """Runs a ``Twin``'s quiet cycles in the compiled kernel (see the module's docstring)."""

    def __init__(self, twin: Twin, telemetry_rows: int = TELEMETRY_BLOCK_ROWS) -> None:
        if tuple(k.compiled_quantity_columns()) != k.QUANTITY_COLUMNS:
            raise RuntimeError(
                "the compiled kernel was cached before the brain's quantities changed: delete the "
                "__pycache__ folder of openbms/fast and run again"
            )
        self.twin = twin
        packs, series = twin.config.packs, twin.config.topology.series
        self._fs = float_settings(twin)
        self._m = {
            "cell_v": np.zeros((packs, series)),
            "cell_t": np.zeros((packs, series)),
            "current": np.zeros(packs),
            "stack_v": np.zeros(packs),
            "fet_t": np.zeros(packs),
            "charger": np.zeros(packs, dtype=bool),
            "load": np.zeros(packs, dtype=bool),
            "scd": np.zeros(packs, dtype=bool),
            "scd_peak": np.zeros(packs),
        }
        self._telemetry = np.zeros((max(telemetry_rows, 1), 7 + 2 * series))
        self._record_next = np.zeros(1)
        self._out = np.zeros(4, dtype=np.int64)
        self._out_t = np.zeros(3)
        self._no_profile = np.zeros(0)
        self._saved = np.full((twin.config.packs, k.SAVED_COLUMNS_FIXED + 2 * series), np.nan)
        cells = twin.pack.cells
        self._decay = np.ascontiguousarray(np.exp(-twin.dt_s / cells.rc_tau_s), dtype=np.float64)
        self.kernel_cycles = 0  # cycles the kernel ran quietly, for the bench's account of the time
        self.handoffs = 0

    def why_not(self) -> str | None:
        """Why the kernel may not run the twin's next cycle (None: it may): ``why_not(self.twin)``."""
        return why_not(self.twin)

    @property
    def next_record_s(self) -> float:
        """When the next telemetry row is due (the kernel moves it as it records)."""
        return float(self._record_next[0])

    # ------------------------------------------------------------------ the state the kernel writes
    def _owned(self, holder: object, name: str, dtype: type, seen: set[int], aliased: bool) -> Any:
        """``holder.name`` as a writeable, C-contiguous array of ``dtype`` that no other attribute
        shares (the reference rebinds and aliases arrays freely; the kernel writes in place).
        ``aliased``: the reference binds it to another object's array (the sensor watch keeps the
        last readings themselves), so it is always copied."""
        value = getattr(holder, name)
        if (
            aliased
            or not isinstance(value, np.ndarray)
            or value.dtype != dtype
            or not value.flags.c_contiguous
            or not value.flags.writeable
            or value.base is not None
            or id(value) in seen
        ):
            value = np.array(value, dtype=dtype, order="C", copy=True)
            setattr(holder, name, value)
        seen.add(id(value))
        return value

    def run(
        self,
        cycles: int,
        profile_a: FloatArray | None = None,
        record_next_s: float = np.inf,
        record_every_s: float = np.inf,
    ) -> RunOutcome:
        """Run up to ``cycles`` control cycles with the current profile ``profile_a`` (its current
        per cycle, NaN: none; None: no profile); record telemetry of pack 0 from ``record_next_s``
        every ``record_every_s``. Stops early at a discrete cycle (decided by Python before this
        returns) or when the telemetry block is full. Call only when ``why_not`` is None."""
        twin = self.twin
        bms, brain, pack, cells, ext = twin.bms, twin.bms.brain, twin.pack, twin.pack.cells, twin.pack.external
        sensors, soc, health, counters = bms.sensors, bms.soc, bms.health, bms.soc.counters
        table, afe = bms.table, twin.afe
        f64, b8, i32 = np.float64, np.bool_, np.int32
        seen: set[int] = set()

        def own(holder: object, name: str, dtype: type = f64, aliased: bool = False) -> Any:
            return self._owned(holder, name, dtype, seen, aliased)

        cell_v = own(pack, "cell_v")
        if twin.config.topology.parallel == 1:
            pack.group_v = cell_v  # the reference keeps them one array for one cell per group
            group_v = cell_v
        else:
            group_v = own(pack, "group_v")
        state_arrays: tuple[Any, ...] = (
            own(cells, "soc"),
            own(cells, "v_rc"),
            own(cells, "temperature_c"),
            own(cells, "_ocv"),
            cell_v,
            group_v,
            own(pack, "pack_v"),
            own(pack, "current_a"),
            own(pack, "fet_t_c"),
            own(pack, "internal_short_ohm"),
        )
        board_arrays: tuple[Any, ...] = (
            own(pack, "ambient_c"),
            own(pack, "charge_fet", b8),
            own(pack, "discharge_fet", b8),
            np.ascontiguousarray(twin.fet_stuck_charge, dtype=b8),
            np.ascontiguousarray(twin.fet_stuck_discharge, dtype=b8),
            own(pack, "balance", b8),
            own(pack, "supply_draw_a"),
            own(pack, "main_leads", b8),
            own(ext, "load_mode", np.int8),
            own(ext, "load_value"),
            own(ext, "short_ohm"),
            own(ext, "charger_connected", b8),
            own(ext, "charger_v"),
            own(ext, "charger_a"),
            own(ext, "charger_min_battery_v"),
            np.ascontiguousarray(~twin.link_errors),
            np.ascontiguousarray(twin.afe.damaged, dtype=b8),
        )
        path = brain.path_matrix > 0
        table_arrays: tuple[Any, ...] = (
            np.ascontiguousarray(table.quantity_index, dtype=np.intp),
            np.ascontiguousarray(table.sign, dtype=f64),
            np.ascontiguousarray(table.enabled, dtype=b8),
            np.ascontiguousarray(table.trip, dtype=f64),
            np.ascontiguousarray(table.release, dtype=f64),
            np.ascontiguousarray(table.release_mode, dtype=np.intp),
            np.ascontiguousarray(table.warn, dtype=f64),
            np.ascontiguousarray(table.in_afe, dtype=b8),
            np.ascontiguousarray(brain.warn_hold_s, dtype=f64),
            np.ascontiguousarray(brain.sleep_columns, dtype=b8),
            np.ascontiguousarray(brain.full_columns, dtype=b8),
            np.ascontiguousarray(table.stops_balancing, dtype=b8),
            np.ascontiguousarray(path[:, 0]),
            np.ascontiguousarray(path[:, 2]),
        )
        read_arrays: tuple[Any, ...] = (
            np.ascontiguousarray(brain.active, dtype=b8),
            np.ascontiguousarray(CLEARS_BY_ITSELF[brain.recovery_class], dtype=b8),
            np.ascontiguousarray(brain.sleeping, dtype=b8),
            np.ascontiguousarray(brain.operator_charge_off, dtype=b8),
            np.ascontiguousarray(brain.operator_discharge_off, dtype=b8),
            np.ascontiguousarray(brain.charge_fet, dtype=b8),
            np.ascontiguousarray(brain.discharge_fet, dtype=b8),
            np.ascontiguousarray(brain.balance, dtype=b8),
            np.ascontiguousarray(health.failed, dtype=b8),
            np.ascontiguousarray(soc.capacity_ah, dtype=f64),
        )
        running = np.array([brain.timers_running, brain.warnings_running], dtype=b8)
        written: tuple[Any, ...] = (
            own(bms, "_last_save_s"),
            own(brain, "trip_timer_s"),
            own(brain, "trip_seen", b8),
            own(brain, "release_timer_s"),
            own(brain, "release_seen", b8),
            own(brain, "warn_timer_s"),
            own(brain, "warn_seen", b8),
            own(brain, "warn_gone_s"),
            own(brain, "warning_active", b8),
            running,
            own(brain, "last_values"),
            own(sensors, "last_v", aliased=True),
            own(sensors, "last_t", aliased=True),
            own(sensors, "unchanged_v_s"),
            own(sensors, "unchanged_t_s"),
            own(sensors, "unchanged_v_n", i32),
            own(sensors, "unchanged_t_n", i32),
            own(sensors, "fet_leak_s"),
            own(brain, "charging_s"),
            own(brain, "sleep_timer_s"),
            own(brain, "sleep_seen", b8),
            own(brain, "charger_away_s"),
            own(brain, "charger_was_present", b8),
            own(soc, "soc"),
            own(counters, "charge_ah"),
            own(counters, "discharge_ah"),
            own(counters, "charge_wh"),
            own(counters, "discharge_wh"),
            own(counters, "cycles"),
            own(soc, "ah_since_full"),
            own(soc, "full_timer_s"),
            own(soc, "full_done", b8),
            own(soc, "rest_s"),
            own(health, "rest_s"),
            own(health, "reference_soc"),
            own(health, "bled_ah"),
            own(health, "intervals"),
            own(brain, "out_since_top_ah"),
            own(brain, "after_top", b8),
            np.ascontiguousarray(brain.recovery_only, dtype=b8),
            own(brain, "recovery_overrate_s"),
            own(brain, "overrate_seen", b8),
            np.ascontiguousarray(brain.recovery_blocked, dtype=b8),
        )
        fs = self._fs.copy()
        fs[k.F_RECORD_EVERY_S] = record_every_s
        flags = np.zeros(k.F_FLAG_COUNT, dtype=b8)
        flags[k.B_SCD_ENABLED] = twin.pack.afe_protection.short_circuit_enabled
        flags[k.B_BALANCING_ENABLED] = bms.profile.balancing.enabled
        flags[k.B_SAVE_MATTERS] = twin.nvm is not None
        flags[k.B_HAS_SHORTS] = pack._has_shorts
        flags[k.B_IN_AFE_ANY] = bool(table.in_afe.any())
        # outputs.update_fets runs the over-rate count when some pack is on a recovery charge, or
        # an over-rate seen or a block is still to be forgotten (recovery_only cannot change in a call).
        flags[k.B_ANY_RECOVERY] = bool(brain.recovery_only.any()) or outputs.recovery_running(brain)
        flags[k.B_AFE_DRIFT] = afe._any_fault
        self._record_next[0] = record_next_s
        m = self._m
        t_last = float(bms._t_last_s)  # type: ignore[arg-type]
        t_start = float(twin.t_s)
        profile = self._no_profile if profile_a is None else np.ascontiguousarray(profile_a, dtype=f64)
        if profile.size and profile.size < cycles:
            raise ValueError(f"profile_a holds {profile.size} currents for {cycles} cycles")
        kernel: Any = k.run_cycles  # numba's Dispatcher stub does not know the signature
        telemetry = self._telemetry
        rest: list[Any] = [
            np.ascontiguousarray(ext.profile_a, dtype=f64),
            fs,
            flags,
            np.ascontiguousarray(cells.params.ocv.ocv_v, dtype=f64),
            np.ascontiguousarray(np.append(np.diff(cells.params.ocv.ocv_v), 0.0), dtype=f64),
            np.ascontiguousarray(cells._r0_flat, dtype=f64),
            np.ascontiguousarray(cells.rc_r_ohm, dtype=f64),
            self._decay,
            np.ascontiguousarray(cells.resistance_scale, dtype=f64),
            np.ascontiguousarray(cells._soc_per_coulomb, dtype=f64),
            np.ascontiguousarray(np.broadcast_to(cells.self_discharge_a, cells.shape), dtype=f64),
            np.ascontiguousarray(
                cells.params.thermal_mass_j_per_k * cells.capacity_ah / cells.params.capacity_ah, dtype=f64
            ),
            np.ascontiguousarray(cells.params.cooling_w_per_k * pack.cooling_factor, dtype=f64),
            twin.config.topology.parallel,
            *state_arrays,
            *board_arrays,
            twin.afe.rng,
            twin.afe._pool,
            np.ascontiguousarray(afe.drift_v_per_h, dtype=f64),
            np.ascontiguousarray(afe.drift_t_per_h, dtype=f64),
            np.ascontiguousarray(afe.drift_i_per_h, dtype=f64),
            own(afe, "drift_offset_v"),
            own(afe, "drift_offset_t"),
            own(afe, "drift_offset_i"),
            *table_arrays,
            *read_arrays,
            *written,
            m["cell_v"],
            m["cell_t"],
            m["current"],
            m["stack_v"],
            m["fet_t"],
            m["charger"],
            m["load"],
            m["scd"],
            m["scd_peak"],
            telemetry,
            float(bms.state[0]),
            self._record_next,
            self._out,
            self._out_t,
            self._saved,
            *k.make_scratch(
                twin.config.packs,
                twin.config.topology.series,
                twin.config.topology.parallel,
                np.ascontiguousarray(table.trip_delay_s, dtype=f64),
                np.ascontiguousarray(table.release_delay_s, dtype=f64),
            ),
        ]
        self._saved[:, 0] = np.nan
        status = kernel(int(cycles), t_start, t_last, profile, *rest)
        ran, rows, stop, stop_pack = (int(x) for x in self._out)
        t_end, t_before = float(self._out_t[0]), float(self._out_t[1])
        brain.timers_running, brain.warnings_running = bool(running[0]), bool(running[1])
        self._store_saves()
        if status == k.HANDOFF:
            self.handoffs += 1
            self.kernel_cycles += ran - 1
            if ran > 1:
                self._after_quiet(t_before, float(self._out_t[2]))
            twin.t_s = t_end
            twin.commands = twin.decide_on(self._measurements(t_before))
        else:
            self.kernel_cycles += ran
            if ran > 0:
                self._after_quiet(t_end, t_before)
        return RunOutcome(ran, self._telemetry[:rows], k.STOP_REASONS[stop], stop_pack)

    def _store_saves(self) -> None:
        """``Twin._record`` of the memory's saves the kernel kept: each pack's last one, as it was
        at its cycle (an earlier save in the same call would have been overwritten by it)."""
        saved, twin = self._saved, self.twin
        packs = np.nonzero(np.isfinite(saved[:, 0]))[0]
        if not packs.size or twin.nvm is None:
            return
        fixed, series = k.SAVED_COLUMNS_FIXED, twin.config.topology.series
        by_time: dict[float, dict[int, dict[str, Any]]] = {}
        for p in packs:
            row = saved[p]
            moving = MovingValues(
                cell_v=row[fixed : fixed + series].copy(),
                soc=row[fixed + series : fixed + 2 * series].copy(),
                counters=tuple(float(x) for x in row[1:fixed]),
            )
            by_time.setdefault(float(row[0]), {})[int(p)] = twin.bms.persistent_snapshot(int(p), moving)
        for t_s, snapshots in by_time.items():
            twin.nvm.save(snapshots, t_s)

    def _measurements(self, start_s: float) -> Measurements:
        """The readings in the kernel's buffers, as the AFE's ``measure`` returns them (copies)."""
        twin, m = self.twin, self._m
        n = twin.config.packs
        scd = m["scd"].copy()
        delay_s = twin.pack.afe_protection.short_circuit_delay_s
        return Measurements(
            cell_v=m["cell_v"].copy(),
            cell_t_c=m["cell_t"].copy(),
            current_a=m["current"].copy(),
            stack_v=m["stack_v"].copy(),
            fet_t_c=m["fet_t"].copy(),
            afe_ok=np.ones(n, dtype=bool),
            afe_damaged=twin.afe.damaged.copy(),
            short_circuit_tripped=scd,
            short_circuit_at_s=np.where(scd, start_s + delay_s, np.nan),
            short_circuit_peak_a=np.where(scd, m["scd_peak"], 0.0),
            charger_present=m["charger"].copy(),
            load_present=m["load"].copy(),
            link_ok=~twin.link_errors,
            reset_button=twin._button & twin.running,
        )

    def _after_quiet(self, t_s: float, t_before_s: float) -> None:
        """What the reference's cycle leaves behind besides the arrays the kernel wrote: the brain's
        clock, its last readings and commands, the flags of a cycle in which nothing changed."""
        twin = self.twin
        bms, brain = twin.bms, twin.bms.brain
        t_s = float(t_s)
        twin.t_s = t_s
        brain.cycle_dt_s = max(t_s - float(t_before_s), 0.0)
        bms._t_last_s = t_s
        m = self._measurements(t_before_s)
        brain.last_measurements = m
        twin.last_measurements = m
        brain.untrusted = np.zeros(twin.config.packs, dtype=bool)
        brain.just_cleared = brain.no_faults if not brain.active.any() else np.zeros_like(brain.active)
        charge_a, discharge_a = current_limits(bms.profile.limits, bms.pack.capacity_ah, CellStats.of(m))
        bms.limits = bms._commands(np.nan_to_num(charge_a, nan=0.0), np.nan_to_num(discharge_a, nan=0.0))
        twin.commands = bms.limits
        twin.silent_s = np.zeros(twin.config.packs)


def warm_up() -> float:
    """Compile the kernel (or load it from numba's cache) on a small twin; return the seconds it took.

    A caller shows this once, so a user knows why the first run waited, and starts its clock after."""
    import time

    from openbms.chemistry import load_chemistry
    from openbms.profiles import load_profile
    from openbms.twin.pack import Topology
    from openbms.twin.simulator import TwinConfig

    start = time.perf_counter()
    twin = Twin(TwinConfig(cell=load_chemistry("lfp"), topology=Topology(4, 1), profile=load_profile("lfp")))
    engine = FastEngine(twin)
    if why_not(twin) is None:
        engine.run(2)
        engine.run(2, profile_a=np.zeros(2))
    k.next_times(0.0, 0.1, 1)
    return time.perf_counter() - start
