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
from openbms.fast import lanes
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

    def __init__(
        self, twin: Twin, telemetry_rows: int = TELEMETRY_BLOCK_ROWS, lanes_min_packs: int | None = None
    ) -> None:
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
        # Batches from this many packs run in fast.lanes (None: lanes.LANES_MIN_PACKS, read now).
        self.lanes_min_packs = lanes.LANES_MIN_PACKS if lanes_min_packs is None else lanes_min_packs
        self.lane_calls = 0  # calls that ran in fast.lanes (the rest ran in fast.cycle)
        self.lane_reruns = 0  # blocks run again to end on an earlier block's stop (see _call_lanes)
        self._lane_scratch: dict[str, Any] = {}

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
        if self.lanes_reason(flags, fs, running) is None:
            self.lane_calls += 1
            status = self._call_lanes(int(cycles), t_start, t_last, profile, fs, flags, running)
        else:
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

    def lanes_reason(self, flags: BoolArray, fs: FloatArray, running: BoolArray) -> str | None:
        """Why the next call may not run in ``fast.lanes`` (None: it may): too few packs to pay
        for the transposition, or something only ``fast.cycle`` reproduces."""
        twin, brain = self.twin, self.twin.bms.brain
        inverse_ref = abs(fs[k.F_INV_REF_K])
        widest = abs(fs[k.F_ARRHENIUS]) * max(abs(1.0 / 200.0 - inverse_ref), inverse_ref)
        checks = (
            (twin.config.packs < self.lanes_min_packs, f"fewer than {self.lanes_min_packs} packs"),
            (twin.config.topology.parallel != 1, "cells in parallel"),
            (bool(flags[k.B_HAS_SHORTS]), "an internal short"),
            (bool(flags[k.B_AFE_DRIFT]), "a drifting AFE sensor"),
            (not widest < lanes.LANE_EXP_MAX_ABS, "an Arrhenius constant beyond lane_exp's range"),
            # The lanes write timers only while some are running; otherwise they must all be at rest.
            (
                not running[0] and bool(brain.trip_timer_s.any() or brain.trip_seen.any()),
                "trip timers set while none is running",
            ),
            (
                not running[1]
                and bool(
                    brain.warn_timer_s.any() or brain.warn_seen.any() or brain.warn_gone_s.any()
                    or brain.warning_active.any()
                ),
                "warning timers set while none is running",
            ),
        )  # fmt: skip
        for failed, reason in checks:
            if failed:
                return reason
        return None

    def _lane_buffers(self, packs: int, series: int, n_prot: int) -> dict[str, Any]:
        """The lanes' kept-twice state and scratch, allocated once per shape."""
        key = (packs, series, n_prot)
        if self._lane_scratch.get("key") != key:
            self._lane_scratch = {
                "key": key,
                # Each row the kernel writes is an array of its own (see fast.lanes: LLVM vectorises
                # a loop only when the arrays it writes are distinct objects).
                "ss": tuple(np.zeros((series, packs)) for _ in range(2 * lanes.S_ROWS)),
                "sn": tuple(np.zeros((series, packs), dtype=np.int32) for _ in range(2 * lanes.N_ROWS)),
                "ps": np.zeros((2, lanes.P_ROWS, packs)),
                "tr": tuple(np.zeros((n_prot, packs)) for _ in range(4)),
                "rl": tuple(np.zeros((n_prot, packs)) for _ in range(4)),
                "wn": tuple(np.zeros((n_prot, packs)) for _ in range(6)),
                "vals": tuple(np.zeros((n_prot, packs)) for _ in range(2)),
                "lane": tuple(np.zeros(packs) for _ in range(lanes.L_ROWS)),
                "cell_work": tuple(np.zeros((series, lanes.BLOCK_PACKS)) for _ in range(lanes.C_ROWS)),
                "q": tuple(np.zeros(packs) for _ in range(k.Q_COUNT)),
                "acc": np.zeros((8, lanes.BLOCK_PACKS)),
                "tmp": np.zeros((3, series)),
                "tmp_n": np.zeros(series, dtype=np.int32),
                "pow2": lanes.pow2_table(),
            }
        return self._lane_scratch

    def _call_lanes(  # noqa: PLR0915
        self,
        cycles: int,
        t_start: float,
        t_last: float,
        profile: FloatArray,
        fs: FloatArray,
        flags: BoolArray,
        running: BoolArray,
    ) -> int:
        """Run ``cycles`` cycles in ``fast.lanes``: the state transposed in, the kernel window by
        window (``WINDOW_CYCLES`` cycles on each block of ``WINDOW_PACKS`` packs; when a block stops,
        the blocks that ran past that cycle are put back from their snapshot and rerun to end on it,
        and the AFE's generator is rewound to the draws of the cycles run), the state back. Returns
        the kernel's status as ``run_cycles`` would have; ``_out`` and ``_out_t`` as it leaves them."""
        twin = self.twin
        bms, brain, pack, cells, ext = twin.bms, twin.bms.brain, twin.pack, twin.pack.cells, twin.pack.external
        sensors, soc, health, table = bms.sensors, bms.soc, bms.health, bms.table
        packs, series = twin.config.packs, twin.config.topology.series
        n_prot = table.sign.shape[0]
        b = self._lane_buffers(packs, series, n_prot)

        def lanes_of(a: Any, dtype: type = np.float64) -> Any:
            return np.ascontiguousarray(np.asarray(a, dtype=dtype).T)

        dt_s = fs[k.F_DT]
        mass = cells.params.thermal_mass_j_per_k * cells.capacity_ah / cells.params.capacity_ah
        cooling = np.broadcast_to(cells.params.cooling_w_per_k * pack.cooling_factor, cells.shape)
        a = dt_s / np.broadcast_to(mass, cells.shape)
        cc = np.empty((lanes.CC_ROWS, series, packs))
        cc[lanes.CC_SCALE] = np.broadcast_to(cells.resistance_scale, cells.shape).T
        cc[lanes.CC_DT_SOC] = (dt_s * np.broadcast_to(cells._soc_per_coulomb, cells.shape)).T
        cc[lanes.CC_SELF_DISCHARGE] = np.broadcast_to(cells.self_discharge_a, cells.shape).T
        cc[lanes.CC_A] = a.T
        cc[lanes.CC_H] = cooling.T
        soc_l = lanes_of(cells.soc)
        v_rc_l = np.ascontiguousarray(np.transpose(cells.v_rc, (0, 2, 1)))
        t_l = lanes_of(cells.temperature_c)
        ocv_l = lanes_of(cells._ocv)
        cell_v_l = lanes_of(pack.cell_v)
        ss, ps, tr, rl, wn, vals = b["ss"], b["ps"], b["tr"], b["rl"], b["wn"], b["vals"]
        series_rows = self._series_rows()
        for row, value in series_rows:
            ss[2 * row][...] = value.T
        sn = b["sn"]
        count_rows = [(lanes.N_SAME_V, sensors.unchanged_v_n), (lanes.N_SAME_T, sensors.unchanged_t_n)]
        for row, value in count_rows:
            sn[2 * row][...] = value.T
        pack_rows = self._pack_rows()
        for row, value in pack_rows:
            ps[0, row] = value
        timer_rows = self._timer_rows()
        for group, field, value in timer_rows:
            group[2 * field][...] = value.T
        vals[0][...] = brain.last_values.T
        reference_soc_l = lanes_of(health.reference_soc)
        bled_ah_l = lanes_of(health.bled_ah)
        trip_due, release_due, warn_due = (
            np.ascontiguousarray(x)
            for x in k.due_times(
                np.ascontiguousarray(table.trip_delay_s, dtype=np.float64),
                np.ascontiguousarray(table.release_delay_s, dtype=np.float64),
            )
        )
        path = brain.path_matrix > 0
        m = self._m
        b8 = np.bool_
        kernel: Any = lanes.run_lanes
        # What the kernel only reads is passed as copies: it is compiled with noalias (fast.lanes).
        head: list[Any] = [
            np.array(ext.profile_a, dtype=np.float64),
            fs,
            flags,
            np.array(cells.params.ocv.ocv_v, dtype=np.float64),
            np.array(np.append(np.diff(cells.params.ocv.ocv_v), 0.0), dtype=np.float64),
            np.array(cells._r0_flat, dtype=np.float64),
            np.array(cells.rc_r_ohm, dtype=np.float64),
            self._decay,
            b["pow2"],
            cc,
            soc_l,
            v_rc_l,
            t_l,
            ocv_l,
            cell_v_l,
            pack.pack_v,
            pack.current_a,
            pack.fet_t_c,
            np.array(pack.ambient_c),
            pack.charge_fet,
            pack.discharge_fet,
            np.array(twin.fet_stuck_charge, dtype=b8),
            np.array(twin.fet_stuck_discharge, dtype=b8),
            lanes_of(pack.balance, b8),
            np.array(pack.supply_draw_a),
            np.array(pack.main_leads),
            np.array(ext.load_mode),
            np.array(ext.load_value),
            np.array(ext.short_ohm),
            np.array(ext.charger_connected),
            np.array(ext.charger_v),
            np.array(ext.charger_a),
            np.array(ext.charger_min_battery_v),
            np.array(~twin.link_errors),
            np.array(twin.afe.damaged, dtype=b8),
            twin.afe._pool,
        ]
        middle: list[Any] = [
            np.array(table.quantity_index, dtype=np.intp),
            np.array(table.sign, dtype=np.float64),
            np.array(table.enabled, dtype=b8),
            np.array(table.trip, dtype=np.float64),
            np.array(table.release, dtype=np.float64),
            np.array(table.release_mode, dtype=np.intp),
            np.array(table.warn, dtype=np.float64),
            np.array(table.in_afe, dtype=b8),
            np.array(brain.warn_hold_s, dtype=np.float64),
            trip_due,
            release_due,
            warn_due,
            np.array(brain.sleep_columns, dtype=b8),
            np.array(brain.full_columns, dtype=b8),
            np.array(table.stops_balancing, dtype=b8),
            np.array(path[:, 0]),
            np.array(path[:, 2]),
            lanes_of(brain.active, b8),
            lanes_of(CLEARS_BY_ITSELF[brain.recovery_class], b8),
            lanes_of(brain.warning_active, b8),
            np.array(brain.sleeping, dtype=b8),
            np.array(brain.operator_charge_off, dtype=b8),
            np.array(brain.operator_discharge_off, dtype=b8),
            np.array(brain.charge_fet, dtype=b8),
            np.array(brain.discharge_fet, dtype=b8),
            lanes_of(brain.balance, b8),
            np.asarray(health.failed, dtype=bool).any(axis=1).astype(np.float64),
            np.array(soc.capacity_ah, dtype=np.float64),
            np.array(brain.recovery_only, dtype=b8),
            np.array(brain.recovery_blocked, dtype=b8),
            ss,
            sn,
            ps,
            tr,
            rl,
            wn,
            vals,
        ]
        tail: list[Any] = [
            reference_soc_l,
            bled_ah_l,
            health.intervals,
            bms._last_save_s,
        ]
        outputs: list[Any] = [
            m["current"],
            m["stack_v"],
            m["fet_t"],
            m["charger"],
            m["load"],
            m["scd"],
            m["scd_peak"],
        ]
        scratch: list[Any] = [b["lane"], b["cell_work"], b["q"], b["acc"], b["tmp"], b["tmp_n"]]
        # fmt: skip

        # ---- the windows: each block of packs runs a window of cycles while its state is in cache
        any_active = bool(np.asarray(brain.active).any())
        blocks = [(pa, min(pa + lanes.WINDOW_PACKS, packs)) for pa in range(0, packs, lanes.WINDOW_PACKS)]
        cur_of = [np.zeros(lanes.G_COUNT, dtype=np.int64) for _ in blocks]
        running_of = [running.copy() for _ in blocks]
        # Everything the kernel writes that a later cycle reads, packs on the last axis. Of the
        # brain's kept-twice state only the current copy counts (a cycle rewrites the whole next one).
        kept: list[Any] = [
            soc_l, t_l, ocv_l, cell_v_l, reference_soc_l, bled_ah_l, v_rc_l,
            pack.pack_v, pack.current_a, pack.fet_t_c, pack.charge_fet, pack.discharge_fet, health.intervals,
            bms._last_save_s,
        ]  # fmt: skip
        twice: list[tuple[Any, int, int]] = [  # (copies, fields, the G_ index of the current copy)
            (ss, lanes.S_ROWS, lanes.G_SERIES),
            (sn, lanes.N_ROWS, lanes.G_SERIES),
            (tr, 2, lanes.G_TRIP),
            (rl, 2, lanes.G_RELEASE),
            (wn, 3, lanes.G_WARN),
            (vals, 1, lanes.G_VALUES),
        ]
        no_record = np.full(1, np.inf)
        rng, pool_size = twin.afe.rng, twin.afe._pool.size
        noise_on = (bool(fs[k.F_V_SD] > 0), bool(fs[k.F_T_SD] > 0), bool(fs[k.F_I_SD] > 0))
        highs = (pool_size - packs * series, pool_size - packs)
        state_label = float(bms.state[0])
        out = self._out

        def current_copies(block: int) -> list[Any]:
            cur = cur_of[block]
            copies = [group[2 * field + int(cur[g])] for group, fields, g in twice for field in range(fields)]
            return [*copies, ps[int(cur[lanes.G_PACK])]]

        def snapshot(block: int) -> list[Any]:
            pa, pb = blocks[block]
            taken = [x[..., pa:pb].copy() for x in (*kept, *current_copies(block))]
            taken += [self._saved[pa:pb].copy(), cur_of[block].copy(), running_of[block].copy()]
            return [*taken, self._record_next.copy()]

        def restore(block: int, taken: list[Any]) -> None:
            pa, pb = blocks[block]
            n = len(taken) - 4
            cur_of[block][...], running_of[block][...] = taken[n + 1], taken[n + 2]
            for x, value in zip((*kept, *current_copies(block)), taken[:n], strict=True):
                x[..., pa:pb] = value
            self._saved[pa:pb] = taken[n]
            self._record_next[...] = taken[n + 3]

        def call(
            block: int, n: int, handoff: bool, t_w: float, t_prev: float, first: int, offsets: Any, rows: int
        ) -> int:
            pa, pb = blocks[block]
            window_profile = profile[first : first + n] if profile.size else profile
            records = pa == 0
            return int(
                kernel(
                    n, pa, pb, any_active, handoff, t_w, t_prev, window_profile, *head, offsets, *middle,
                    cur_of[block], *tail, running_of[block], *outputs,
                    self._telemetry[rows:] if records else self._telemetry[:0], state_label,
                    self._record_next if records else no_record, out, self._out_t, self._saved, *scratch,
                )
            )  # fmt: skip

        done, rows, t_w, t_prev = 0, 0, t_start, t_last
        t_before_w = float(self._out_t[1])  # the twin's clock one cycle before t_w (read once a window ran)
        status = k.DONE
        while done < cycles:
            n = min(lanes.WINDOW_CYCLES, cycles - done, self._telemetry.shape[0] - rows)
            rng_before = rng.bit_generator.state
            offsets = np.zeros((n, 3), dtype=np.int64)
            lanes.draw_offsets(rng, n, *noise_on, *highs, offsets)
            stop_at, reason, stop_pack, ended, taken = -1, 0, 0, [], []
            rows_after = rows
            for block in range(len(blocks)):
                taken.append(snapshot(block))
                run = n if stop_at < 0 else stop_at + 1
                got = call(block, run, stop_at >= 0, t_w, t_prev, done, offsets, rows)
                if got == k.HANDOFF:
                    at = int(out[0]) - 1
                    if stop_at < 0 or at < stop_at:
                        stop_at, reason, stop_pack = at, int(out[2]), int(out[3])
                    ended.append(at)
                else:
                    ended.append(-1)
                if blocks[block][0] == 0:
                    rows_after = rows + int(out[1])
            if stop_at < 0:
                done += n
                rows = rows_after
                t_before_w = float(self._out_t[1])
                t_w = t_prev = float(self._out_t[0])
                if rows == self._telemetry.shape[0]:
                    status = k.TELEMETRY_FULL
                    break
                continue
            # Some block stopped at stop_at: every block must end there, that cycle handed over.
            for block in range(len(blocks)):
                if ended[block] != stop_at:
                    self.lane_reruns += 1
                    restore(block, taken[block])
                    got = call(block, stop_at + 1, True, t_w, t_prev, done, offsets, rows)
                    if got != k.HANDOFF or int(out[0]) != stop_at + 1:
                        raise RuntimeError("a window's rerun did not end where the first run stopped")
                    if blocks[block][0] == 0:
                        rows_after = rows + int(out[1])
            # The AFE's generator as the reference leaves it: the draws of the cycles run, no more.
            rng.bit_generator.state = rng_before
            lanes.draw_offsets(rng, stop_at + 1, *noise_on, *highs, np.zeros((stop_at + 1, 3), dtype=np.int64))
            if stop_at == 0 and done > 0:  # the cycle before the hand-off ran in the window before
                self._out_t[2] = t_before_w
            done += stop_at + 1
            rows = rows_after
            status = k.HANDOFF
            out[2], out[3] = reason, stop_pack
            break
        out[0], out[1] = done, rows
        running[...] = np.any(running_of, axis=0)
        # ---- back into the twin's and the brain's own arrays
        cells.soc[...] = soc_l.T
        cells.v_rc[...] = np.transpose(v_rc_l, (0, 2, 1))
        cells.temperature_c[...] = t_l.T
        cells._ocv[...] = ocv_l.T
        pack.cell_v[...] = cell_v_l.T
        for block, (pa, pb) in enumerate(blocks):
            self._lanes_back(pa, pb, cur_of[block], status == k.HANDOFF, series_rows, count_rows, pack_rows, timer_rows)
        health.reference_soc[...] = reference_soc_l.T
        health.bled_ah[...] = bled_ah_l.T
        return status

    def _lanes_back(
        self,
        pa: int,
        pb: int,
        cur: Any,
        handed_over: bool,
        series_rows: Any,
        count_rows: Any,
        pack_rows: Any,
        timer_rows: Any,
    ) -> None:
        """The brain's state of packs [pa, pb) from the lanes' current copies (``cur``), and the
        readings of the last cycle run (the next copy when that cycle was handed over)."""
        b, m = self._lane_scratch, self._m
        ss, sn, ps, vals = b["ss"], b["sn"], b["ps"], b["vals"]
        i_ss = int(cur[lanes.G_SERIES])
        readings = 1 - i_ss if handed_over else i_ss
        m["cell_v"][pa:pb] = ss[2 * lanes.S_LAST_V + readings][:, pa:pb].T
        m["cell_t"][pa:pb] = ss[2 * lanes.S_LAST_T + readings][:, pa:pb].T
        for row, value in series_rows:
            value[pa:pb] = ss[2 * row + i_ss][:, pa:pb].T
        for row, value in count_rows:
            value[pa:pb] = sn[2 * row + i_ss][:, pa:pb].T
        i_ps = int(cur[lanes.G_PACK])
        for row, value in pack_rows:
            value[pa:pb] = ps[i_ps, row, pa:pb]
        copy_of = {id(b["tr"]): lanes.G_TRIP, id(b["rl"]): lanes.G_RELEASE, id(b["wn"]): lanes.G_WARN}
        for group, field, value in timer_rows:
            value[pa:pb] = group[2 * field + int(cur[copy_of[id(group)]])][:, pa:pb].T
        self.twin.bms.brain.last_values[pa:pb] = vals[int(cur[lanes.G_VALUES])][:, pa:pb].T

    def _series_rows(self) -> list[tuple[int, Any]]:
        """The brain's per-series arrays the lanes keep (transposed) as rows of ``ss``."""
        bms = self.twin.bms
        sensors = bms.sensors
        return [
            (lanes.S_LAST_V, sensors.last_v),
            (lanes.S_LAST_T, sensors.last_t),
            (lanes.S_SAME_V_S, sensors.unchanged_v_s),
            (lanes.S_SAME_T_S, sensors.unchanged_t_s),
            (lanes.S_GROUP_SOC, bms.soc.soc),
        ]

    def _timer_rows(self) -> list[tuple[Any, int, Any]]:
        """The brain's per-protection timers and flags: (the lanes' group, field, the brain's array)."""
        brain, b = self.twin.bms.brain, self._lane_scratch
        tr, rl, wn = b["tr"], b["rl"], b["wn"]
        return [
            (tr, 0, brain.trip_timer_s),
            (tr, 1, brain.trip_seen),
            (rl, 0, brain.release_timer_s),
            (rl, 1, brain.release_seen),
            (wn, 0, brain.warn_timer_s),
            (wn, 1, brain.warn_seen),
            (wn, 2, brain.warn_gone_s),
        ]

    def _pack_rows(self) -> list[tuple[int, Any]]:
        """The brain's per-pack arrays the lanes keep as rows of ``ps`` (the engine owns each)."""
        bms = self.twin.bms
        brain, sensors, soc, health, counters = bms.brain, bms.sensors, bms.soc, bms.health, bms.soc.counters
        return [
            (lanes.P_LEAK_S, sensors.fet_leak_s),
            (lanes.P_CHARGING_S, brain.charging_s),
            (lanes.P_SLEEP_TIMER_S, brain.sleep_timer_s),
            (lanes.P_SLEEP_SEEN, brain.sleep_seen),
            (lanes.P_CHARGER_AWAY_S, brain.charger_away_s),
            (lanes.P_CHARGER_WAS, brain.charger_was_present),
            (lanes.P_CHARGE_AH, counters.charge_ah),
            (lanes.P_DISCHARGE_AH, counters.discharge_ah),
            (lanes.P_CHARGE_WH, counters.charge_wh),
            (lanes.P_DISCHARGE_WH, counters.discharge_wh),
            (lanes.P_CYCLES, counters.cycles),
            (lanes.P_AH_SINCE_FULL, soc.ah_since_full),
            (lanes.P_FULL_TIMER_S, soc.full_timer_s),
            (lanes.P_FULL_DONE, soc.full_done),
            (lanes.P_SOC_REST_S, soc.rest_s),
            (lanes.P_HEALTH_REST_S, health.rest_s),
            (lanes.P_OUT_SINCE_TOP_AH, brain.out_since_top_ah),
            (lanes.P_AFTER_TOP, brain.after_top),
            (lanes.P_OVERRATE_S, brain.recovery_overrate_s),
            (lanes.P_OVERRATE_SEEN, brain.overrate_seen),
        ]

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


def warm_up(lanes_too: bool = False) -> float:
    """Compile the kernel (or load it from numba's cache) on a small twin; return the seconds it took.
    ``lanes_too``: the many-pack kernel as well (``fast.lanes``, about 25 s more to compile), for a
    caller about to run a batch of ``lanes.LANES_MIN_PACKS`` packs or more; scenarios run one pack.

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
        if lanes_too:
            lanes_engine = FastEngine(twin, lanes_min_packs=1)
            lanes_engine.run(2)
            lanes_engine.run(2, profile_a=np.zeros(2))
    k.next_times(0.0, 0.1, 1)
    return time.perf_counter() - start
