"""The whole control cycle as one compiled kernel: physics, AFE, the brain's quiet work, telemetry.

Why: one control cycle of the Python reference (``Twin.step``: ``Pack.advance``, the AFE's
``measure``, ``Bms.step``, the board) costs about half a millisecond of NumPy call overhead, whatever
the number of cells. Almost every cycle is *quiet*: timers move, charge is counted, cells warm up,
and nothing discrete happens. This kernel runs quiet cycles back to back, every pack, and stops at
the first cycle where anything discrete may happen in any pack. It has then already advanced that
cycle's physics and taken its readings (the noise drawn from the AFE's own generator, so the Python
AFE goes on from the same place); the Python brain decides that cycle, so resets, recovery, events,
hooks and the non-volatile memory keep their one implementation (``fast.engine`` does the hand-over).

"Discrete" is decided conservatively: anything the kernel does not reproduce exactly makes it stop,
never guess. In any pack: a reading that is not finite or not plausible; a sensor judged stuck; a
fault that would be set, or clear by itself; a warning that would rise or fall; the FET commands,
sleep or wake, the charge count's full point or OCV correction, the rest learner's interval, a
balancing mask that would change; the AFE's short-circuit detector firing; the memory's save due.

Every expression names the reference it reproduces and keeps its operations and their order, so
the differential test (``tests/fast/test_engine.py``) holds the two engines equal: the same events
at the same times, telemetry within 1e-9. Sums over cells follow NumPy's pairwise summation.

The module also holds the brain's batch-wide shortcuts (``faults.py`` skips timer arithmetic in a
cycle where no condition holds in any pack, no timer counts and no condition was seen last cycle):
whether a cycle takes them is decided over every pack, so cycles are the outer loop and packs the
inner one. A skipped cycle changes nothing the counting path would have changed, so no pack's
result depends on the others.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from openbms.bms.protections import QUANTITIES
from openbms.chemistry.cells import _KELVIN
from openbms.fast.afe import _noisy, _quantise, draw_below
from openbms.fast.guard import _debounce, _releasing, due_times
from openbms.fast.physics import _ocv
from openbms.twin.cells import R0_POINTS

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# The kernel and its helpers compile without numba's reference counting: they allocate nothing
# (their scratch comes from ``make_scratch``), and with it every call of a helper that LLVM does
# not inline increfs and decrefs each of its array arguments, atomically: measured, a fifth of
# the kernel's time went there. The caller holds every array for the whole call.
_NO_REFCOUNTS: dict[str, Any] = {"_nrt": False}  # a private numba option: typed stubs do not list it
_kernel: Any = njit(cache=True, **_NO_REFCOUNTS)

# Why the kernel returned.
DONE, HANDOFF, TELEMETRY_FULL = 0, 1, 2

# What the hand-off cycle stopped for (the first reason found), for a reader of the bench and tests.
STOP_REASONS = (
    "",
    "reading not finite",
    "reading implausible",
    "sensor may be stuck",
    "fault sets",
    "fault clears",
    "warning changes",
    "FET command changes",
    "sleep or wake",
    "full charge point",
    "OCV correction due",
    "rest learning due",
    "balancing changes",
    "short-circuit detector",
)
(
    _NOT_FINITE,
    _IMPLAUSIBLE,
    _STUCK,
    _FAULT_SETS,
    _FAULT_CLEARS,
    _WARNING,
    _FETS,
    _SLEEP,
    _FULL,
    _OCV,
    _REST,
    _BALANCING,
    _SHORT,
) = range(1, len(STOP_REASONS))

# A kept save (``saved`` rows): its time, the lifetime counters (``memory.COUNTERS``, then the
# cycle count), then the readings' cell voltages and the groups' SOC.
SAVED_COLUMNS_FIXED = 6

# Rows of the kernel's float scratch ``work`` (make_scratch).
(
    W_FACTOR,
    W_R0,
    W_E,
    W_R,
    W_CELL_I,
    W_HEAT,
    W_T_NEW,
    W_E_GROUP,
    W_R_GROUP,
    W_GROUP_T,
    W_READINGS,
    W_SORT,
    W_Q,
    W_DUE,  # three rows: when trip, release and warning timers elapse (guard.due_times)
) = range(14)
W_TIMER = W_DUE + 3  # four rows: the brain's timers of one pack before they are committed
W_ROWS = W_TIMER + 4

# Indexes into the float settings vector ``fs`` (built by ``fast.engine.float_settings``).
(
    F_DT,
    F_ETA,
    F_ARRHENIUS,
    F_INV_REF_K,
    F_NEIGHBOUR,
    F_FET_R,
    F_FET_MASS,
    F_FET_COOLING,
    F_SCD_TRIP_A,
    F_SCD_DELAY_S,
    F_V_SD,
    F_V_OFF,
    F_V_STEP,
    F_STACK_STEP,
    F_I_SD,
    F_I_OFF,
    F_I_STEP,
    F_T_SD,
    F_T_STEP,
    F_CAPACITY_AH,
    F_REST_C,
    F_REST_A,
    F_CURRENT_MAX_A,
    F_CELL_V_MIN,
    F_CELL_V_MAX,
    F_T_MIN,
    F_T_MAX,
    F_MISMATCH_FRACTION,
    F_MISMATCH_MIN_V,
    F_STUCK_WINDOW_S,
    F_STUCK_MIN_READINGS,
    F_STUCK_OTHERS_S,
    F_STUCK_DEV_V,
    F_STUCK_DEV_C,
    F_FET_LEAK_A,
    F_FET_LEAK_DELAY_S,
    F_CHARGE_CONFIRM_S,
    F_SLEEP_DELAY_S,
    F_REARM_S,
    F_AWAKE_A,
    F_ASLEEP_A,
    F_BLEED_OHM,
    F_FULL_CELL_V,
    F_FULL_TAIL_A,
    F_FULL_HOLD_S,
    F_OCV_REST_S,
    F_LEARN_INTERVAL_S,
    F_BAL_THRESHOLD_V,
    F_BAL_MIN_CELL_V,
    F_BAL_MAX_T,
    F_BAL_TOP_OUT_AH,
    F_SAVE_INTERVAL_S,
    F_TWIN_BLEED_OHM,
    F_RECORD_EVERY_S,
    F_POOL_LIMIT,
    F_RECOVERY_LIMIT_A,
    F_COUNT,
) = range(57)

# Indexes into the flag vector ``flags``.
(
    B_SCD_ENABLED,
    B_BALANCING_ENABLED,
    B_SAVE_MATTERS,
    B_HAS_SHORTS,
    B_IN_AFE_ANY,
    B_ANY_RECOVERY,
    B_AFE_DRIFT,
    F_FLAG_COUNT,
) = range(8)

# Quantity columns: where ``Bms._quantities`` puts each (``protections.QUANTITIES``).
Q_MAX_V = QUANTITIES.index("max_cell_v")
Q_MIN_V = QUANTITIES.index("min_cell_v")
Q_CHARGE_C = QUANTITIES.index("charge_c_rate")
Q_DISCHARGE_C = QUANTITIES.index("discharge_c_rate")
Q_MAX_T = QUANTITIES.index("max_cell_t")
Q_MIN_T = QUANTITIES.index("min_cell_t")
Q_FET_T = QUANTITIES.index("fet_t")
Q_IMBALANCE = QUANTITIES.index("imbalance_v")
Q_SENSOR = QUANTITIES.index("sensor_implausible")
Q_AFE = QUANTITIES.index("afe_not_answering")
Q_LINK = QUANTITIES.index("link_bad")
Q_FLAG = QUANTITIES.index("cell_failure_flag")
Q_COUNT = len(QUANTITIES)
QUANTITY_COLUMNS: tuple[int, ...] = (Q_MAX_V, Q_MIN_V, Q_CHARGE_C, Q_DISCHARGE_C, Q_MAX_T, Q_MIN_T, Q_FET_T)
QUANTITY_COLUMNS += (Q_IMBALANCE, Q_SENSOR, Q_AFE, Q_LINK, Q_FLAG, Q_COUNT)


@njit(cache=True)
def compiled_quantity_columns() -> tuple[int, ...]:  # pragma: no cover - compiled
    """The quantity columns as the cached kernel has them: numba freezes module constants at
    compile time and re-compiles only when this file changes, not when the brain's list does."""
    return (Q_MAX_V, Q_MIN_V, Q_CHARGE_C, Q_DISCHARGE_C, Q_MAX_T, Q_MIN_T, Q_FET_T, Q_IMBALANCE, Q_SENSOR, Q_AFE,
            Q_LINK, Q_FLAG, Q_COUNT)  # fmt: skip


@_kernel
def pairwise_sum(a: FloatArray, start: int, n: int) -> float:  # pragma: no cover - compiled
    """NumPy's pairwise summation of ``a[start:start+n]`` for n ≤ 128 (what ``x.sum(axis=-1)``
    computes over a contiguous row), so a sum here has the same last bit as the reference's.
    Longer rows NumPy splits recursively; numba cannot cache a recursive function, so the engine
    leaves packs of more than 128 series groups to the Python reference."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[start + i]
        return res
    if n <= 128:
        r0 = a[start]
        r1 = a[start + 1]
        r2 = a[start + 2]
        r3 = a[start + 3]
        r4 = a[start + 4]
        r5 = a[start + 5]
        r6 = a[start + 6]
        r7 = a[start + 7]
        i = 8
        while i < n - (n % 8):
            r0 += a[start + i]
            r1 += a[start + i + 1]
            r2 += a[start + i + 2]
            r3 += a[start + i + 3]
            r4 += a[start + i + 4]
            r5 += a[start + i + 5]
            r6 += a[start + i + 6]
            r7 += a[start + i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += a[start + i]
            i += 1
        return res
    raise ValueError("pairwise_sum sums at most 128 values (the engine hands longer rows to Python)")


@njit(cache=True)
def next_times(t_s: float, dt_s: float, cycles: int) -> FloatArray:  # pragma: no cover - compiled
    """The twin's clock after each of the next ``cycles`` cycles: ``round(t + dt, 9)`` as
    ``Twin.step`` advances it (numba's ``round`` rounds as Python's does)."""
    out = np.empty(cycles)
    for c in range(cycles):
        t_s = round(t_s + dt_s, 9)
        out[c] = t_s
    return out


@_kernel
def _median(x: FloatArray, tmp: FloatArray) -> float:  # pragma: no cover - compiled
    """``np.median(x)`` (finite values) without allocating: an insertion sort into ``tmp``."""
    n = x.size
    for i in range(n):
        v = x[i]
        j = i
        while j > 0 and tmp[j - 1] > v:
            tmp[j] = tmp[j - 1]
            j -= 1
        tmp[j] = v
    half = n // 2
    if n % 2 == 1:
        return tmp[half]
    return (tmp[half - 1] + tmp[half]) / 2.0  # np.median: the mean of the two middle values


@_kernel
def _floor_div(x: float, interval: float) -> float:  # pragma: no cover - compiled
    return math.floor(x / interval)


@_kernel
def _stuck_kind(  # pragma: no cover - compiled
    readings: FloatArray,
    unchanged_s: FloatArray,
    unchanged_n: npt.NDArray[np.int32],
    fs: FloatArray,
    deviation: float,
    tmp: FloatArray,
) -> bool:
    """``SensorWatch._stuck`` for one pack and one kind of sensor (cell voltages or temperatures)."""
    cells = readings.size
    frozen_any = False
    for k in range(cells):
        if unchanged_s[k] >= fs[F_STUCK_WINDOW_S] and unchanged_n[k] >= fs[F_STUCK_MIN_READINGS]:
            frozen_any = True
    if cells < 3 or not frozen_any:
        return False
    others_live = _median(unchanged_s, tmp) <= fs[F_STUCK_OTHERS_S]
    if not others_live:
        return False
    middle = _median(readings, tmp)
    for k in range(cells):
        frozen = unchanged_s[k] >= fs[F_STUCK_WINDOW_S] and unchanged_n[k] >= fs[F_STUCK_MIN_READINGS]
        if frozen and abs(readings[k] - middle) > deviation:
            return True
    return False


@njit(cache=True, inline="always")
def terminal_current(  # noqa: PLR0913  # pragma: no cover - compiled
    e_pack: float,
    r_pack: float,
    profile_a: float,
    load_mode: int,
    load_value: float,
    short_ohm: float,
    pack_v: float,
    charge_fet: bool,
    discharge_fet: bool,
    main_leads: bool,
    charger_connected: bool,
    charger_v: float,
    charger_a: float,
    charger_min_v: float,
) -> float:
    """The current one pack's terminals would carry (A, + charging) before the AFE's short-circuit
    detector: ``External.draw_a`` (the load by its mode, a short, the current profile; NaN: none)
    and a CC/CV charger that sees the terminal voltage of the step before, through the FETs as
    applied. One place for the rule: both kernels (``run_cycles``, ``fast.lanes``) inline it."""
    draw = -load_value if load_mode == 1 else 0.0
    if load_mode == 2:
        disc = e_pack * e_pack - 4.0 * r_pack * load_value
        draw = (-e_pack + math.sqrt(max(disc, 0.0))) / (2.0 * r_pack) if disc >= 0 else -e_pack / (2.0 * r_pack)
    elif load_mode == 3:
        draw = -e_pack / (r_pack + load_value)
    draw = draw + (-e_pack / (r_pack + short_ohm) if math.isfinite(short_ohm) else 0.0)
    draw = draw + (0.0 if math.isnan(profile_a) else profile_a)
    terminal_v = pack_v if (charge_fet or discharge_fet) else 0.0
    if not main_leads:
        terminal_v = 0.0
    outputs = charger_connected and terminal_v >= charger_min_v
    charge = 0.0
    if outputs:
        cv_a = (charger_v - e_pack) / r_pack - draw
        charge = min(max(cv_a, 0.0), charger_a)
    wanted = draw + charge
    if not main_leads:
        wanted = 0.0
    if not charge_fet:
        wanted = min(wanted, 0.0)
    if not discharge_fet:
        wanted = max(wanted, 0.0)
    return wanted


@_kernel
def run_cycles(  # noqa: PLR0912, PLR0913, PLR0915, C901  # pragma: no cover - compiled
    # ---- the clock and what the caller set per cycle
    cycles: int,  # at most this many cycles
    t_twin: float,  # the twin's clock now
    t_last: float,  # the brain's clock at its last cycle
    profile_a: FloatArray,  # (cycles,) the current profile's current per cycle (NaN: none), every pack; or empty
    ext_profile_a: FloatArray,  # (packs,) the twin's current profile now, used when ``profile_a`` is empty
    fs: FloatArray,
    flags: BoolArray,
    # ---- cells (chemistry and spread)
    ocv_table: FloatArray,
    ocv_slope: FloatArray,
    r0_table: FloatArray,
    rc_r: FloatArray,
    decay: FloatArray,
    resistance_scale: FloatArray,
    soc_per_coulomb: FloatArray,
    self_discharge: FloatArray,
    mass: FloatArray,
    cooling: FloatArray,
    parallel: int,
    # ---- cell and pack state (in place)
    soc: FloatArray,
    v_rc: FloatArray,
    temperature: FloatArray,
    ocv: FloatArray,
    cell_v: FloatArray,
    group_v: FloatArray,
    pack_v: FloatArray,
    pack_current: FloatArray,
    fet_t: FloatArray,
    internal_short_ohm: FloatArray,
    # ---- board and terminals
    ambient: FloatArray,
    charge_fet: BoolArray,  # the pack's FETs (as applied)
    discharge_fet: BoolArray,
    fet_stuck_charge: BoolArray,  # a FET stuck closed conducts whatever it is told
    fet_stuck_discharge: BoolArray,
    balance: BoolArray,  # (packs, series): the bleed resistors switched on
    supply_draw: FloatArray,
    main_leads: BoolArray,
    load_mode: npt.NDArray[np.int8],
    load_value: FloatArray,
    short_ohm: FloatArray,
    charger_connected: BoolArray,
    charger_v: FloatArray,
    charger_a: FloatArray,
    charger_min_v: FloatArray,
    link_ok: BoolArray,
    afe_damaged: BoolArray,
    # ---- AFE noise
    rng: np.random.Generator,
    pool: FloatArray,
    drift_v_per_h: FloatArray,  # (packs, series): the AFE's drifting sensors (flag B_AFE_DRIFT)
    drift_t_per_h: FloatArray,
    drift_i_per_h: FloatArray,  # (packs,)
    drift_offset_v: FloatArray,  # what they drifted so far, written in place
    drift_offset_t: FloatArray,
    drift_offset_i: FloatArray,
    # ---- the brain's protection table
    quantity_index: npt.NDArray[np.intp],
    sign: FloatArray,
    enabled: BoolArray,
    trip: FloatArray,
    release: FloatArray,
    release_mode: npt.NDArray[np.intp],
    warn: FloatArray,
    in_afe: BoolArray,
    warn_hold_s: FloatArray,
    sleep_columns: BoolArray,
    full_columns: BoolArray,
    stops_balancing: BoolArray,
    blocks_charge: BoolArray,
    blocks_discharge: BoolArray,
    # ---- the brain's state: read
    active: BoolArray,
    may_clear: BoolArray,
    sleeping: BoolArray,
    operator_charge_off: BoolArray,
    operator_discharge_off: BoolArray,
    brain_charge_fet: BoolArray,
    brain_discharge_fet: BoolArray,
    brain_balance: BoolArray,
    health_failed: BoolArray,
    soc_capacity_ah: FloatArray,
    # ---- the brain's state: written in place (quiet cycles only)
    last_save_s: FloatArray,  # when the memory last stored each pack's snapshot
    trip_timer_s: FloatArray,
    trip_seen: BoolArray,
    release_timer_s: FloatArray,
    release_seen: BoolArray,
    warn_timer_s: FloatArray,
    warn_seen: BoolArray,
    warn_gone_s: FloatArray,
    warning_active: BoolArray,
    running: BoolArray,  # [timers_running, warnings_running]
    last_values: FloatArray,
    last_v: FloatArray,
    last_t: FloatArray,
    unchanged_v_s: FloatArray,
    unchanged_t_s: FloatArray,
    unchanged_v_n: npt.NDArray[np.int32],
    unchanged_t_n: npt.NDArray[np.int32],
    fet_leak_s: FloatArray,
    charging_s: FloatArray,
    sleep_timer_s: FloatArray,
    sleep_seen: BoolArray,
    charger_away_s: FloatArray,
    charger_was_present: BoolArray,
    group_soc: FloatArray,
    charge_ah: FloatArray,
    discharge_ah: FloatArray,
    charge_wh: FloatArray,
    discharge_wh: FloatArray,
    counted_cycles: FloatArray,
    ah_since_full: FloatArray,
    full_timer_s: FloatArray,
    full_done: BoolArray,
    soc_rest_s: FloatArray,
    health_rest_s: FloatArray,
    reference_soc: FloatArray,
    bled_ah: FloatArray,
    intervals: FloatArray,
    out_since_top_ah: FloatArray,
    after_top: BoolArray,
    recovery_only: BoolArray,  # read: a fault allows only a recovery charge
    recovery_overrate_s: FloatArray,
    overrate_seen: BoolArray,
    recovery_blocked: BoolArray,  # read: a change of it is a discrete cycle
    # ---- outputs
    m_cell_v: FloatArray,  # (packs, series): the readings of the last cycle run (quiet or hand-off)
    m_cell_t: FloatArray,
    m_current: FloatArray,
    m_stack_v: FloatArray,
    m_fet_t: FloatArray,
    m_charger: BoolArray,
    m_load: BoolArray,
    scd_tripped: BoolArray,
    scd_peak_a: FloatArray,
    telemetry: FloatArray,  # (rows, 7 + 2 * series): rows recorded for pack 0
    telemetry_state: float,
    record_next: FloatArray,  # [next record time], updated
    out: npt.NDArray[np.int64],  # [cycles run (hand-off cycle included), rows recorded, stop reason, pack]
    out_t: FloatArray,  # [the twin's clock after the last cycle run, before it, and before that]
    saved: FloatArray,  # (packs, SAVED_COLUMNS_FIXED + 2 series): each pack's last save in this call (t NaN: none)
    # ---- scratch (make_scratch)
    work: FloatArray,
    values: FloatArray,
    new_unchanged_s: FloatArray,
    new_unchanged_n: npt.NDArray[np.int32],
    new_leak_s: FloatArray,
    g_seen: BoolArray,
) -> int:
    packs, cells = soc.shape
    series = cells // parallel
    pairs = rc_r.size
    n_prot = sign.shape[0]
    dt_s = fs[F_DT]
    eta = fs[F_ETA]
    has_neighbours = cells > 1
    rows_cap = telemetry.shape[0]
    rows = 0
    # Scratch (make_scratch): rows of ``work``, each long enough for any of its uses.
    factor = work[W_FACTOR, :cells]
    r0 = work[W_R0, :cells]
    e = work[W_E, :cells]
    r = work[W_R, :cells]
    cell_i = work[W_CELL_I, :cells]
    heat = work[W_HEAT, :cells]
    t_new = work[W_T_NEW, :cells]
    e_group = work[W_E_GROUP, :series]
    r_group = work[W_R_GROUP, :series]
    group_t = work[W_GROUP_T, :series]
    readings = work[W_READINGS, :series]
    tmp = work[W_SORT, :series]
    q = work[W_Q, :Q_COUNT]
    trip_due = work[W_DUE, :n_prot]
    release_due = work[W_DUE + 1, :n_prot]
    warn_due = work[W_DUE + 2, :n_prot]
    g_timer = work[W_TIMER : W_TIMER + 4, :n_prot]
    pool_size = pool.size
    scd_fraction = min(fs[F_SCD_DELAY_S] / dt_s, 1.0)
    any_active = bool(active.any())
    any_balance = bool(balance.any())
    any_brain_balance = bool(brain_balance.any())
    previous_t = t_last
    has_profile = profile_a.size > 0
    t_s = t_twin
    out_t[1] = t_last
    for c in range(cycles):
        out_t[2] = out_t[1]
        out_t[1] = t_s
        t_s = round(t_s + dt_s, 9)  # Twin.step's clock (numba's round rounds as Python's does)
        out_t[0] = t_s
        any_scd = False
        # ================================================================ Pack.advance
        for p in range(packs):
            charging_row = R0_POINTS if pack_current[p] > 0.0 else 0
            # ---- CellBank.thevenin
            for k in range(cells):
                tc = temperature[p, k]
                if fs[F_ARRHENIUS] == 0.0:
                    temperature_factor = 1.0
                else:
                    t_k = max(tc + _KELVIN, 200.0)
                    temperature_factor = math.exp(fs[F_ARRHENIUS] * (1.0 / t_k - fs[F_INV_REF_K]))
                f = resistance_scale[p, k] * temperature_factor
                factor[k] = f
                s_c = min(max(soc[p, k], 0.0), 1.0)
                index = int(s_c * (R0_POINTS - 1) + 0.5) + charging_row
                r0_k = r0_table[index] * f
                r0[k] = r0_k
                e_k = ocv[p, k]
                r_k = r0_k
                for i in range(pairs):
                    e_k += v_rc[i, p, k] * decay[i]
                    r_k += f * (rc_r[i] * (1.0 - decay[i]))
                e[k] = e_k
                r[k] = r_k
            # ---- series groups of parallel cells
            if parallel == 1:
                for g in range(series):
                    e_group[g] = e[g]
                    r_group[g] = r[g]
            else:
                for g in range(series):
                    first = g * parallel
                    # g = 1 / r; r_group = 1 / g.sum(axis=2); e_group = (e * g).sum(axis=2) * r_group
                    g_sum = 0.0
                    ge_sum = 0.0
                    for j in range(first, first + parallel):
                        g_sum += 1.0 / r[j]
                        ge_sum += e[j] * (1.0 / r[j])
                    rg = 1.0 / g_sum
                    r_group[g] = rg
                    e_group[g] = ge_sum * rg
            e_pack = pairwise_sum(e_group, 0, series)
            r_pack = pairwise_sum(r_group, 0, series) + fs[F_FET_R]
            # ---- External.draw_a and the charger
            wanted = terminal_current(
                e_pack, r_pack, profile_a[c] if has_profile else ext_profile_a[p], load_mode[p], load_value[p],
                short_ohm[p], pack_v[p], charge_fet[p], discharge_fet[p], main_leads[p], charger_connected[p],
                charger_v[p], charger_a[p], charger_min_v[p],
            )  # fmt: skip
            # ---- the AFE's short-circuit detector
            scd = flags[B_SCD_ENABLED] and -wanted >= fs[F_SCD_TRIP_A]
            current = wanted * (scd_fraction if scd else 1.0)
            scd_tripped[p] = scd
            scd_peak_a[p] = -wanted if scd else 0.0
            if scd:
                any_scd = True
                charge_fet[p] = False
                discharge_fet[p] = False
            # ---- cell currents
            if parallel == 1:
                for k in range(cells):
                    cell_i[k] = current
            else:
                for g in range(series):
                    v_group = e_group[g] + r_group[g] * current
                    for j in range(g * parallel, (g + 1) * parallel):
                        cell_i[j] = (v_group - e[j]) / r[j]
            # ---- CellBank.advance (the drain: supply, then balancing bleed, then internal shorts)
            supply = supply_draw[p] / parallel
            for k in range(cells):
                drain = supply
                if any_balance:
                    g = k // parallel
                    bleed = (group_v[p, g] if balance[p, g] else 0.0) / fs[F_TWIN_BLEED_OHM]
                    if parallel > 1:
                        bleed = bleed / parallel
                    drain = drain + bleed
                if flags[B_HAS_SHORTS]:
                    drain = drain + (
                        cell_v[p, k] / internal_short_ohm[p, k] if math.isfinite(internal_short_ohm[p, k]) else 0.0
                    )
                i_k = cell_i[k]
                internal = i_k * eta if i_k > 0.0 else i_k
                internal -= self_discharge[p, k]
                internal -= drain
                internal *= dt_s * soc_per_coulomb[p, k]
                soc_k = soc[p, k] + internal
                soc[p, k] = soc_k
                r0_k = r0[k]
                heat_k = i_k * i_k * r0_k
                terminal = r0_k * i_k
                f = factor[k]
                for i in range(pairs):
                    r_i = rc_r[i] * f
                    v_i = v_rc[i, p, k] * decay[i] + r_i * ((1.0 - decay[i]) * i_k)
                    v_rc[i, p, k] = v_i
                    terminal += v_i
                    heat_k += v_i * v_i / r_i
                ocv_k = _ocv(ocv_table, ocv_slope, soc_k)
                ocv[p, k] = ocv_k
                terminal += ocv_k
                if terminal < 0.0:
                    terminal = 0.0
                cell_v[p, k] = terminal
                heat[k] = heat_k
            # ---- Pack._advance_thermal
            amb = ambient[p]
            neighbour = fs[F_NEIGHBOUR]
            for k in range(cells):
                tc = temperature[p, k]
                h = cooling[p, k]
                a = dt_s / mass[p, k]
                if has_neighbours:
                    left = temperature[p, k - 1] if k > 0 else tc
                    right = temperature[p, k + 1] if k < cells - 1 else tc
                    t_new[k] = (tc + a * (heat[k] + h * amb + neighbour * (left + right))) / (
                        1.0 + a * (h + 2.0 * neighbour)
                    )
                else:
                    t_new[k] = (tc + a * (heat[k] + h * amb)) / (1.0 + a * h)
            for k in range(cells):
                temperature[p, k] = t_new[k]
            b = dt_s / fs[F_FET_MASS]
            fet_heat = current * current * fs[F_FET_R]
            fet_t[p] = (fet_t[p] + b * (fet_heat + fs[F_FET_COOLING] * amb)) / (1.0 + b * fs[F_FET_COOLING])
            pack_current[p] = 0.0 if scd else current
            # ---- group voltages and the pack voltage
            if parallel == 1:
                for g in range(series):
                    group_v[p, g] = cell_v[p, g]
            else:
                for g in range(series):
                    group_v[p, g] = pairwise_sum(cell_v[p], g * parallel, parallel) / parallel
            pack_v[p] = pairwise_sum(group_v[p], 0, series)
        # ================================================================ Twin._decide: the AFE
        size = packs * series
        start_v = np.int64(0)
        start_t = np.int64(0)
        if fs[F_V_SD] > 0:
            start_v = draw_below(rng, pool_size - size)
        if fs[F_T_SD] > 0:
            start_t = draw_below(rng, pool_size - size)
        start_i = np.int64(0)
        if fs[F_I_SD] > 0:
            start_i = draw_below(rng, pool_size - packs)
        for p in range(packs):
            prof = profile_a[c] if has_profile else ext_profile_a[p]
            term = pack_v[p] if (charge_fet[p] or discharge_fet[p]) else 0.0
            if not main_leads[p]:
                term = 0.0
            m_charger[p] = (charger_connected[p] and term >= charger_min_v[p]) or (
                charger_connected[p] and charger_min_v[p] <= 0 and main_leads[p]
            )
            m_load[p] = load_mode[p] != 0 or math.isfinite(short_ohm[p]) or (0.0 if math.isnan(prof) else prof) < 0.0
            for g in range(series):
                if parallel == 1:
                    group_t[g] = temperature[p, g]
                else:
                    hottest = temperature[p, g * parallel]
                    for j in range(g * parallel + 1, (g + 1) * parallel):
                        if temperature[p, j] > hottest:
                            hottest = temperature[p, j]
                    group_t[g] = hottest
                m_cell_v[p, g] = _noisy(
                    group_v[p, g], pool[start_v + p * series + g], fs[F_V_SD], fs[F_V_OFF], fs[F_V_STEP]
                )
                m_cell_t[p, g] = _noisy(group_t[g], pool[start_t + p * series + g], fs[F_T_SD], 0.0, fs[F_T_STEP])
            m_current[p] = _noisy(pack_current[p], pool[start_i + p], fs[F_I_SD], fs[F_I_OFF], fs[F_I_STEP])
            if flags[B_AFE_DRIFT]:  # AnalogFrontEnd._faulty: a drift adds to the quantised reading
                hours = dt_s / 3600.0
                for g in range(series):
                    drift_offset_v[p, g] += drift_v_per_h[p, g] * hours
                    drift_offset_t[p, g] += drift_t_per_h[p, g] * hours
                drift_offset_i[p] += drift_i_per_h[p] * hours
                for g in range(series):
                    m_cell_v[p, g] = m_cell_v[p, g] + drift_offset_v[p, g]
                    m_cell_t[p, g] = m_cell_t[p, g] + drift_offset_t[p, g]
                m_current[p] = m_current[p] + drift_offset_i[p]
            m_stack_v[p] = _quantise(pack_v[p], fs[F_STACK_STEP])
            m_fet_t[p] = _quantise(fet_t[p], fs[F_T_STEP])
        if any_scd:
            out[0], out[1], out[2], out[3] = c + 1, rows, _SHORT, 0
            return HANDOFF
        # ================================================================ Bms._step, pass 1: what would happen
        brain_dt = max(t_s - previous_t, 0.0)
        any_condition = False
        any_warn = False
        stop = 0
        stop_pack = 0
        for p in range(packs):
            stop = _quantities(
                p, brain_dt, fs, m_cell_v, m_cell_t, m_current, m_stack_v, m_fet_t, link_ok, afe_damaged,
                health_failed, brain_charge_fet, brain_discharge_fet, last_v, last_t, unchanged_v_s, unchanged_t_s,
                unchanged_v_n, unchanged_t_n, fet_leak_s, quantity_index, q, values, new_unchanged_s,
                new_unchanged_n, new_leak_s, readings, tmp,
            )  # fmt: skip
            if stop:
                stop_pack = p
                break
            for j in range(n_prot):
                if enabled[j]:
                    v = values[p, j]
                    if sign[j] * (v - trip[j]) >= 0.0:
                        any_condition = True
                    if sign[j] * (v - warn[j]) >= 0.0:
                        any_warn = True
        if stop:
            out[0], out[1], out[2], out[3] = c + 1, rows, stop, stop_pack
            return HANDOFF
        do_trip = any_condition or running[0]
        do_warn = any_warn or running[1]
        # Pass 1 asks each pack's brain whether anything discrete happens; pass 2 (only for more than
        # one pack: one pack's brain writes in pass 1, and only when nothing stops it) writes them.
        for brain_pass in range(1 if packs == 1 else 2):
            commit = packs == 1 or brain_pass == 1
            for p in range(packs):
                stop = _brain_pack(
                    p, t_s, brain_dt, fs, flags, values, m_cell_v, m_cell_t, m_current, m_charger, m_load,
                    n_prot, sign, enabled, trip, release, release_mode, warn, in_afe, warn_hold_s, trip_due,
                    release_due, warn_due, sleep_columns, full_columns, stops_balancing, blocks_charge,
                    blocks_discharge, active, may_clear, any_active, do_trip, do_warn, sleeping,
                    operator_charge_off, operator_discharge_off, brain_charge_fet, brain_discharge_fet,
                    brain_balance, any_brain_balance, soc_capacity_ah, last_save_s, trip_timer_s, trip_seen,
                    release_timer_s, release_seen, warn_timer_s, warn_seen, warn_gone_s, warning_active,
                    charging_s, sleep_timer_s, sleep_seen, charger_away_s, charger_was_present, group_soc,
                    charge_ah, discharge_ah, charge_wh, discharge_wh, counted_cycles, ah_since_full, full_timer_s,
                    full_done, soc_rest_s, health_rest_s, reference_soc, bled_ah, intervals, out_since_top_ah,
                    after_top, recovery_only, recovery_overrate_s, overrate_seen, recovery_blocked, g_timer, g_seen,
                    commit,
                )  # fmt: skip
                if stop:  # in pass 1 only: pass 2 runs after a pass 1 that nothing stopped
                    out[0], out[1], out[2], out[3] = c + 1, rows, stop, p
                    return HANDOFF
        # ================================================================ nothing discrete: commit the rest
        trip_running = False
        warn_running = False
        for p in range(packs):
            _commit_sensors(
                p, m_cell_v, m_cell_t, last_v, last_t, unchanged_v_s, unchanged_t_s, unchanged_v_n, unchanged_t_n,
                fet_leak_s, new_unchanged_s, new_unchanged_n, new_leak_s,
            )  # fmt: skip
            for j in range(n_prot):
                last_values[p, j] = values[p, j]
                # protections.running_after: a timer counting or a condition seen this cycle.
                if trip_timer_s[p, j] != 0.0 or trip_seen[p, j]:
                    trip_running = True
                if warn_timer_s[p, j] != 0.0 or warn_seen[p, j] or warning_active[p, j]:
                    warn_running = True
        if do_trip:
            running[0] = trip_running
        if do_warn:
            running[1] = warn_running
        # ---- Twin._apply: the board drives the FETs as commanded (every board powered, no
        # controller hung, no AFE over-voltage cut: those cycles are Python's); a stuck FET conducts.
        for p in range(packs):
            charge_fet[p] = brain_charge_fet[p] or fet_stuck_charge[p]
            discharge_fet[p] = brain_discharge_fet[p] or fet_stuck_discharge[p]
        previous_t = t_s
        # ================================================================ the runner's telemetry (pack 0)
        if t_s + 1e-9 >= record_next[0]:
            row = telemetry[rows]
            row[0] = t_s
            row[1] = pack_v[0]
            row[2] = pack_current[0]
            row[3] = _pack_soc(group_soc[0])
            row[4] = telemetry_state
            row[5] = 1.0 if charge_fet[0] else 0.0
            row[6] = 1.0 if discharge_fet[0] else 0.0
            for g in range(series):
                row[7 + g] = group_v[0, g]
                if parallel == 1:
                    row[7 + series + g] = temperature[0, g]
                else:
                    hottest = temperature[0, g * parallel]
                    for j in range(g * parallel + 1, (g + 1) * parallel):
                        if temperature[0, j] > hottest:
                            hottest = temperature[0, j]
                    row[7 + series + g] = hottest
            rows += 1
            record_next[0] = t_s + fs[F_RECORD_EVERY_S] - 1e-9
            if rows == rows_cap:
                out[0], out[1], out[2], out[3] = c + 1, rows, 0, 0
                return TELEMETRY_FULL
        # ================================================================ Bms._mark_dirty: the memory's save
        # A save is due in a quiet cycle: keep the values of the snapshot that move every cycle;
        # the engine stores the last one after the call (a later save overwrites an earlier one,
        # and nothing reads the memory between two cycles the kernel runs).
        if flags[B_SAVE_MATTERS]:
            for p in range(packs):
                if t_s - last_save_s[p] >= fs[F_SAVE_INTERVAL_S]:
                    last_save_s[p] = t_s
                    keep = saved[p]
                    keep[0] = t_s
                    keep[1] = charge_ah[p]
                    keep[2] = discharge_ah[p]
                    keep[3] = charge_wh[p]
                    keep[4] = discharge_wh[p]
                    keep[5] = counted_cycles[p]
                    for g in range(series):
                        keep[SAVED_COLUMNS_FIXED + g] = m_cell_v[p, g]
                        keep[SAVED_COLUMNS_FIXED + series + g] = group_soc[p, g]
    out[0], out[1], out[2], out[3] = cycles, rows, 0, 0
    return DONE


def make_scratch(
    packs: int, series: int, parallel: int, trip_delay_s: FloatArray, release_delay_s: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.int32], FloatArray, BoolArray]:
    """The kernel's scratch (its last arguments), allocated here because the kernel allocates
    nothing; the rows of the protections' due times are filled in."""
    n_prot = trip_delay_s.size
    work = np.zeros((W_ROWS, max(series * parallel, Q_COUNT, n_prot, 1)))
    work[W_DUE : W_DUE + 3, :n_prot] = np.array(due_times(trip_delay_s, release_delay_s))
    return (
        work,
        np.zeros((packs, n_prot)),
        np.zeros((packs, 2, series)),
        np.zeros((packs, 2, series), dtype=np.int32),
        np.zeros(packs),
        np.zeros((3, n_prot), dtype=np.bool_),
    )


@_kernel
def _pack_soc(group_soc: FloatArray) -> float:  # pragma: no cover - compiled
    """``SocEstimator.pack_soc`` for one pack."""
    low = group_soc[0]
    high = group_soc[0]
    for k in range(1, group_soc.size):
        low = min(low, group_soc[k])
        high = max(high, group_soc[k])
    low = min(max(low, 0.0), 1.0)
    high = min(max(high, 0.0), 1.0)
    return min(max(low / max(1.0 - high + low, 1e-9), 0.0), 1.0)


@_kernel
def _commit_sensors(  # pragma: no cover - compiled
    p: int,
    m_cell_v: FloatArray,
    m_cell_t: FloatArray,
    last_v: FloatArray,
    last_t: FloatArray,
    unchanged_v_s: FloatArray,
    unchanged_t_s: FloatArray,
    unchanged_v_n: npt.NDArray[np.int32],
    unchanged_t_n: npt.NDArray[np.int32],
    fet_leak_s: FloatArray,
    new_s: FloatArray,
    new_n: npt.NDArray[np.int32],
    new_leak: FloatArray,
) -> None:
    """Write what ``_quantities`` worked out for pack ``p`` into the sensor watch's state."""
    for k in range(m_cell_v.shape[1]):
        unchanged_v_s[p, k] = new_s[p, 0, k]
        unchanged_v_n[p, k] = new_n[p, 0, k]
        last_v[p, k] = m_cell_v[p, k]
        unchanged_t_s[p, k] = new_s[p, 1, k]
        unchanged_t_n[p, k] = new_n[p, 1, k]
        last_t[p, k] = m_cell_t[p, k]
    fet_leak_s[p] = new_leak[p]


@_kernel
def _quantities(  # noqa: PLR0913  # pragma: no cover - compiled
    p: int,
    dt_s: float,
    fs: FloatArray,
    m_cell_v: FloatArray,
    m_cell_t: FloatArray,
    m_current: FloatArray,
    m_stack_v: FloatArray,
    m_fet_t: FloatArray,
    link_ok: BoolArray,
    afe_damaged: BoolArray,
    health_failed: BoolArray,
    brain_charge_fet: BoolArray,
    brain_discharge_fet: BoolArray,
    last_v: FloatArray,
    last_t: FloatArray,
    unchanged_v_s: FloatArray,
    unchanged_t_s: FloatArray,
    unchanged_v_n: npt.NDArray[np.int32],
    unchanged_t_n: npt.NDArray[np.int32],
    fet_leak_s: FloatArray,
    quantity_index: npt.NDArray[np.intp],
    q: FloatArray,
    values: FloatArray,
    new_s: FloatArray,
    new_n: npt.NDArray[np.int32],
    new_leak: FloatArray,
    readings: FloatArray,
    tmp: FloatArray,
) -> int:
    """``Bms._quantities`` (with ``CellStats.of``, ``SensorWatch.fet_stuck_closed`` and
    ``SensorWatch.implausible``) for pack ``p``: fills ``values[p]``; returns a stop reason, 0 when
    the readings are finite and plausible. The sensor watch's next state goes to ``new_*`` (written
    by ``_commit_sensors`` once the whole cycle is known to be quiet)."""
    series = m_cell_v.shape[1]
    current = m_current[p]
    if not (math.isfinite(current) and math.isfinite(m_stack_v[p]) and math.isfinite(m_fet_t[p])):
        return _NOT_FINITE
    max_v = m_cell_v[p, 0]
    min_v = max_v
    max_t = m_cell_t[p, 0]
    min_t = max_t
    for k in range(series):
        v = m_cell_v[p, k]
        t = m_cell_t[p, k]
        if not (math.isfinite(v) and math.isfinite(t)):
            return _NOT_FINITE
        max_v = max(max_v, v)
        min_v = min(min_v, v)
        max_t = max(max_t, t)
        min_t = min(min_t, t)
    sum_v = pairwise_sum(m_cell_v[p], 0, series)
    # ---- SensorWatch.fet_stuck_closed
    leak_a = fs[F_FET_LEAK_A]
    leaking = (current > leak_a and not brain_charge_fet[p]) or (current < -leak_a and not brain_discharge_fet[p])
    leak_s = fet_leak_s[p] + dt_s if leaking else 0.0
    fet_stuck = leak_s >= fs[F_FET_LEAK_DELAY_S]
    # ---- SensorWatch.implausible
    good_v = min_v >= fs[F_CELL_V_MIN] and max_v <= fs[F_CELL_V_MAX]
    good_t = min_t >= fs[F_T_MIN] and max_t <= fs[F_T_MAX]
    good_i = abs(current) <= fs[F_CURRENT_MAX_A]
    mismatch = abs(m_stack_v[p] - sum_v)
    allowed = max(fs[F_MISMATCH_FRACTION] * abs(m_stack_v[p]), fs[F_MISMATCH_MIN_V])
    if not (good_v and good_t and good_i and mismatch <= allowed):
        return _IMPLAUSIBLE
    # ---- SensorWatch._stuck (cell voltages, then temperatures); written only when nothing stops
    for kind in range(2):
        m = m_cell_v if kind == 0 else m_cell_t
        last = last_v if kind == 0 else last_t
        unchanged_s = unchanged_v_s if kind == 0 else unchanged_t_s
        unchanged_n = unchanged_v_n if kind == 0 else unchanged_t_n
        for k in range(series):
            same = m[p, k] == last[p, k]
            new_s[p, kind, k] = unchanged_s[p, k] + dt_s if same else 0.0
            new_n[p, kind, k] = unchanged_n[p, k] + 1 if same else 0
            readings[k] = m[p, k]
        deviation = fs[F_STUCK_DEV_V] if kind == 0 else fs[F_STUCK_DEV_C]
        if _stuck_kind(readings, new_s[p, kind], new_n[p, kind], fs, deviation, tmp):
            return _STUCK
    new_leak[p] = leak_s
    # ---- the quantities (Bms._quantities), then the table's values
    current_c = current / fs[F_CAPACITY_AH]
    q[Q_MAX_V] = max_v
    q[Q_MIN_V] = min_v
    q[Q_CHARGE_C] = max(current_c, 0.0)
    q[Q_DISCHARGE_C] = max(-current_c, 0.0)
    q[Q_MAX_T] = max_t
    q[Q_MIN_T] = min_t
    q[Q_FET_T] = m_fet_t[p]
    q[Q_IMBALANCE] = max_v - min_v if abs(current_c) < fs[F_REST_C] else np.nan
    q[Q_SENSOR] = 0.0
    q[Q_AFE] = 1.0 if (afe_damaged[p] or fet_stuck) else 0.0
    q[Q_LINK] = 0.0 if link_ok[p] else 1.0
    flagged = False
    for k in range(health_failed.shape[1]):
        if health_failed[p, k]:
            flagged = True
    q[Q_FLAG] = 1.0 if flagged else 0.0
    for i in range(Q_COUNT):
        if not math.isfinite(q[i]):
            q[i] = np.nan
    for j in range(quantity_index.size):
        values[p, j] = q[quantity_index[j]]
    return 0


@_kernel
def _brain_pack(  # noqa: PLR0912, PLR0913, PLR0915, C901  # pragma: no cover - compiled
    p: int,
    t_s: float,
    dt_s: float,
    fs: FloatArray,
    flags: BoolArray,
    values: FloatArray,
    m_cell_v: FloatArray,
    m_cell_t: FloatArray,
    m_current: FloatArray,
    m_charger: BoolArray,
    m_load: BoolArray,
    n_prot: int,
    sign: FloatArray,
    enabled: BoolArray,
    trip: FloatArray,
    release: FloatArray,
    release_mode: npt.NDArray[np.intp],
    warn: FloatArray,
    in_afe: BoolArray,
    warn_hold_s: FloatArray,
    trip_due: FloatArray,
    release_due: FloatArray,
    warn_due: FloatArray,
    sleep_columns: BoolArray,
    full_columns: BoolArray,
    stops_balancing: BoolArray,
    blocks_charge: BoolArray,
    blocks_discharge: BoolArray,
    active: BoolArray,
    may_clear: BoolArray,
    any_active: bool,
    do_trip: bool,
    do_warn: bool,
    sleeping: BoolArray,
    operator_charge_off: BoolArray,
    operator_discharge_off: BoolArray,
    brain_charge_fet: BoolArray,
    brain_discharge_fet: BoolArray,
    brain_balance: BoolArray,
    any_brain_balance: bool,
    soc_capacity_ah: FloatArray,
    last_save_s: FloatArray,
    trip_timer_s: FloatArray,
    trip_seen: BoolArray,
    release_timer_s: FloatArray,
    release_seen: BoolArray,
    warn_timer_s: FloatArray,
    warn_seen: BoolArray,
    warn_gone_s: FloatArray,
    warning_active: BoolArray,
    charging_s: FloatArray,
    sleep_timer_s: FloatArray,
    sleep_seen: BoolArray,
    charger_away_s: FloatArray,
    charger_was_present: BoolArray,
    group_soc: FloatArray,
    charge_ah: FloatArray,
    discharge_ah: FloatArray,
    charge_wh: FloatArray,
    discharge_wh: FloatArray,
    counted_cycles: FloatArray,
    ah_since_full: FloatArray,
    full_timer_s: FloatArray,
    full_done: BoolArray,
    soc_rest_s: FloatArray,
    health_rest_s: FloatArray,
    reference_soc: FloatArray,
    bled_ah: FloatArray,
    intervals: FloatArray,
    out_since_top_ah: FloatArray,
    after_top: BoolArray,
    recovery_only: BoolArray,
    recovery_overrate_s: FloatArray,
    overrate_seen: BoolArray,
    recovery_blocked: BoolArray,
    g_timer: FloatArray,
    g_seen: BoolArray,
    commit: bool,
) -> int:
    """The rest of ``Bms._step`` for pack ``p`` after its quantities: a stop reason if anything
    discrete happens in it, else 0; its state is written only when ``commit`` and no stop.
    ``g_timer`` (4, protections) and ``g_seen`` (3, protections) are scratch."""
    series = m_cell_v.shape[1]
    current = m_current[p]
    charger = m_charger[p]
    rest_a = fs[F_REST_A]
    capacity_ah = fs[F_CAPACITY_AH]
    # ---- faults.update_faults / update_warnings (the timers; conditions never filtered: trusted).
    # Every check comes before any write, so a call with ``commit`` writes nothing when it stops.
    charger_gone = (not charger) or current <= rest_a
    for j in range(n_prot):
        v = values[p, j]
        condition = enabled[j] and sign[j] * (v - trip[j]) >= 0.0
        tripping = False
        if do_trip:
            tt = _debounce(trip_timer_s[p, j], condition, trip_seen[p, j], dt_s)
            tripping = condition and tt >= trip_due[j] and not in_afe[j]
            g_timer[0, j] = tt
            g_seen[0, j] = condition
        if tripping and not active[p, j]:
            return _FAULT_SETS
        if any_active:
            releasing = active[p, j] and _releasing(v, sign[j], release[j], release_mode[j], m_load[p], charger_gone)
            rt = _debounce(release_timer_s[p, j], releasing, release_seen[p, j], dt_s)
            if releasing and rt >= release_due[j] and may_clear[p, j] and not tripping:
                return _FAULT_CLEARS
            g_timer[1, j] = rt
            g_seen[1, j] = releasing
        if do_warn:
            w_on = enabled[j] and sign[j] * (v - warn[j]) >= 0.0
            wt = _debounce(warn_timer_s[p, j], w_on, warn_seen[p, j], dt_s)
            gone = 0.0 if w_on else warn_gone_s[p, j] + dt_s
            rises = w_on and wt >= warn_due[j]
            now = rises or (warning_active[p, j] and not gone >= warn_hold_s[j])
            if now != warning_active[p, j]:
                return _WARNING
            g_timer[2, j] = wt
            g_seen[2, j] = w_on
            g_timer[3, j] = gone if now else 0.0  # kept only while a warning is up (update_warnings)
    # ---- recovery.update_sleep
    sleepy = False
    charge_blocked = False
    discharge_blocked = False
    full_fault = False
    stopping = False
    for j in range(n_prot):
        if active[p, j]:
            if sleep_columns[j]:
                sleepy = True
            if blocks_charge[j]:
                charge_blocked = True
            if blocks_discharge[j]:
                discharge_blocked = True
            if full_columns[j]:
                full_fault = True
            if stops_balancing[j]:
                stopping = True
    new_charging_s = charging_s[p] + dt_s if current > rest_a else 0.0
    charging = new_charging_s >= fs[F_CHARGE_CONFIRM_S]
    asleep_soon = sleepy and not charging and not sleeping[p]
    new_sleep_timer = sleep_timer_s[p] + (dt_s if sleep_seen[p] else 0.0) if asleep_soon else 0.0
    if new_sleep_timer >= fs[F_SLEEP_DELAY_S] and not sleeping[p]:
        return _SLEEP
    rising = charger and not charger_was_present[p] and charger_away_s[p] >= fs[F_REARM_S]
    if sleeping[p] and rising:
        return _SLEEP
    # ---- outputs.update_fets, the recovery charge's over-rate timer included
    new_overrate_s = recovery_overrate_s[p]
    overrate = overrate_seen[p]
    if flags[B_ANY_RECOVERY]:
        only = recovery_only[p]
        overrate = only and current > fs[F_RECOVERY_LIMIT_A]
        new_overrate_s = recovery_overrate_s[p] + (dt_s if overrate_seen[p] else 0.0) if overrate else 0.0
        blocked = (recovery_blocked[p] or (only and new_overrate_s >= 1.0)) and only and charger
        if blocked != recovery_blocked[p]:
            return _FETS
        if only and blocked:
            charge_blocked = True
    if (not charge_blocked and not sleeping[p] and not operator_charge_off[p]) != brain_charge_fet[p]:
        return _FETS
    if (not discharge_blocked and not sleeping[p] and not operator_discharge_off[p]) != brain_discharge_fet[p]:
        return _FETS
    # ---- SocEstimator.update (every reading trusted: an untrusted one stopped the kernel)
    bleeding_any = any_brain_balance
    own_draw = fs[F_ASLEEP_A] if sleeping[p] else fs[F_AWAKE_A]
    stored = current * fs[F_ETA] if current > 0.0 else current
    cap = soc_capacity_ah[p]
    ah = current * dt_s / 3600.0
    wh = ah * pairwise_sum(m_cell_v[p], 0, series)
    tail_a = fs[F_FULL_TAIL_A]
    max_v = m_cell_v[p, 0]
    min_v = max_v
    max_t = m_cell_t[p, 0]
    for k in range(series):
        max_v = max(max_v, m_cell_v[p, k])
        min_v = min(min_v, m_cell_v[p, k])
        max_t = max(max_t, m_cell_t[p, k])
    near_full = max_v >= fs[F_FULL_CELL_V] and current > 0.0 and current < tail_a
    new_full_timer = full_timer_s[p] + dt_s if near_full else 0.0
    if new_full_timer >= fs[F_FULL_HOLD_S] and not full_done[p]:
        return _FULL
    resting = abs(current) < rest_a
    new_soc_rest = soc_rest_s[p] + dt_s if resting else 0.0
    if new_soc_rest >= fs[F_OCV_REST_S] and new_soc_rest - dt_s < fs[F_OCV_REST_S]:
        return _OCV
    # ---- CellHealthLearner.observe_rest (the same rest test, with the brain's rest current)
    new_health_rest = health_rest_s[p] + dt_s if resting else 0.0
    interval = fs[F_LEARN_INTERVAL_S]
    if resting and _floor_div(new_health_rest, interval) > _floor_div(new_health_rest - dt_s, interval):
        return _REST
    # ---- outputs.update_balancing
    new_out = out_since_top_ah[p]
    new_after_top = after_top[p]
    if flags[B_BALANCING_ENABLED]:
        current_c = current / capacity_ah
        topping = (current_c > 0 and max_v >= fs[F_BAL_MIN_CELL_V]) or full_fault
        out_ah = -current * dt_s / 3600.0
        new_out = 0.0 if topping else max(out_since_top_ah[p] + out_ah, 0.0)
        ended = new_out > fs[F_BAL_TOP_OUT_AH]
        new_after_top = (after_top[p] or topping) and not ended
        allowed = not stopping and not sleeping[p] and new_after_top
        rest_c = abs(current_c) < fs[F_REST_C]
        topping_now = current_c > 0 and max_v >= fs[F_BAL_MIN_CELL_V]
        cool = max_t <= fs[F_BAL_MAX_T]
        ok = (rest_c or topping_now) and cool and allowed
        threshold = fs[F_BAL_THRESHOLD_V]
        for k in range(series):
            above = m_cell_v[p, k] - min_v
            mask = ((above > threshold) or (brain_balance[p, k] and above > 0.5 * threshold)) and ok
            if mask != brain_balance[p, k]:
                return _BALANCING
    if not commit:
        return 0
    # ---- commit
    for j in range(n_prot):
        if do_trip:
            trip_timer_s[p, j] = g_timer[0, j]
            trip_seen[p, j] = g_seen[0, j]
        if any_active:
            release_timer_s[p, j] = g_timer[1, j]
            release_seen[p, j] = g_seen[1, j]
        if do_warn:
            warn_timer_s[p, j] = g_timer[2, j]
            warn_seen[p, j] = g_seen[2, j]
            warn_gone_s[p, j] = g_timer[3, j]
    recovery_overrate_s[p] = new_overrate_s
    overrate_seen[p] = overrate
    charging_s[p] = new_charging_s
    sleep_timer_s[p] = new_sleep_timer
    sleep_seen[p] = asleep_soon
    charger_away_s[p] = 0.0 if charger else charger_away_s[p] + dt_s
    charger_was_present[p] = charger
    for k in range(series):
        bleed_a = 0.0
        if bleeding_any and brain_balance[p, k]:
            bleed_a = max(m_cell_v[p, k], 0.0) / fs[F_BLEED_OHM]
        group_a = (stored - own_draw) - bleed_a
        group_soc[p, k] += group_a * (dt_s / 3600.0) / cap
    charge_ah[p] += max(ah, 0.0)
    discharge_ah[p] += max(-ah, 0.0)
    charge_wh[p] += max(wh, 0.0)
    discharge_wh[p] += max(-wh, 0.0)
    counted_cycles[p] = discharge_ah[p] / fs[F_CAPACITY_AH]
    ah_since_full[p] -= ah
    full_timer_s[p] = new_full_timer
    full_done[p] = full_done[p] and current > -rest_a
    soc_rest_s[p] = new_soc_rest
    health_rest_s[p] = new_health_rest
    if not resting:
        for k in range(series):
            reference_soc[p, k] = np.nan
            bled_ah[p, k] = 0.0
        intervals[p] = 0.0
    else:
        for k in range(series):
            bleed_a = 0.0
            if bleeding_any and brain_balance[p, k]:
                bleed_a = max(m_cell_v[p, k], 0.0) / fs[F_BLEED_OHM]
            bled_ah[p, k] += bleed_a * dt_s / 3600.0
    out_since_top_ah[p] = new_out
    after_top[p] = new_after_top
    return 0
