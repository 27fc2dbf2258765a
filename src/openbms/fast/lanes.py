"""The control cycle for many packs at once: the same work as ``fast.cycle.run_cycles``, packs innermost.

Why: ``run_cycles`` walks pack by pack and, inside a pack, cell by cell: 16 cells are too few for
the processor's vector units, and each pack's brain is a call with a hundred array arguments. With
hundreds of packs the state is better laid out transposed, ``(cells, packs)`` and
``(protections, packs)``, so every inner loop runs over packs: the same cell of every pack, side by
side in memory. LLVM vectorises such a loop only when it can prove three things, so the heavy
loops live in small stages (``_thevenin``, ``_advance``, ``_readings``, ``_extremes``,
``_unchanged``, ``_group_soc``), each compiled on its own with its array arguments marked
``noalias``, every row it writes an array of its own, its pack index unsigned (numba wraps a
negative index with a select LLVM cannot see through), and the NumPy error model (no zero-divisor
branch). The Arrhenius factor uses ``lane_exp`` (fdlibm's algorithm, within one unit in the last
place of the libm ``exp`` the other engines call): a call into libm would stop vectorisation.

What it reproduces, expression by expression and in the same order: ``run_cycles`` (itself the
reference's arithmetic) for one cell per series group, no internal shorts and no drifting AFE
sensor; ``fast.engine`` uses it only then, and only for batches of ``LANES_MIN_PACKS`` packs or
more. It stops at the same cycles for the same reasons, but when several packs stop in one cycle
it may name another pack or reason first.

``run_lanes`` runs the packs [pa, pb) for some cycles, in blocks of ``BLOCK_PACKS`` (a block's
scratch stays in the L2 cache), the AFE's pool offsets of each cycle given (drawn beforehand by
``draw_offsets``). The brain's state is kept twice (current and next): a cycle reads the current
copy and writes the next one, which becomes current only if no pack stopped; otherwise the cycle
is handed to the Python brain with the current copy intact, exactly what ``run_cycles`` leaves
behind with its check-then-commit passes. Trip and warning timers are written only while some pack
of the call has them running (``running``); otherwise every timer is zero and a cycle only looks
for conditions, as the brain's own shortcut does. ``fast.engine`` calls it window by window
(``WINDOW_CYCLES`` cycles on ``WINDOW_PACKS`` packs, then the next packs, so their state stays in
cache) and makes every block end on the earliest stop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, uintp

from openbms.chemistry.cells import _KELVIN, SOC_SPAN_TO_ZERO_VOLT
from openbms.fast.afe import _noisy, _quantise, draw_below
from openbms.fast.cycle import (
    _BALANCING,
    _FAULT_CLEARS,
    _FAULT_SETS,
    _FETS,
    _FULL,
    _IMPLAUSIBLE,
    _NO_REFCOUNTS,
    _NOT_FINITE,
    _OCV,
    _REST,
    _SHORT,
    _SLEEP,
    _STUCK,
    _WARNING,
    B_ANY_RECOVERY,
    B_BALANCING_ENABLED,
    B_SAVE_MATTERS,
    B_SCD_ENABLED,
    DONE,
    F_ARRHENIUS,
    F_ASLEEP_A,
    F_AWAKE_A,
    F_BAL_MAX_T,
    F_BAL_MIN_CELL_V,
    F_BAL_THRESHOLD_V,
    F_BAL_TOP_OUT_AH,
    F_BLEED_OHM,
    F_CAPACITY_AH,
    F_CELL_V_MAX,
    F_CELL_V_MIN,
    F_CHARGE_CONFIRM_S,
    F_CURRENT_MAX_A,
    F_DT,
    F_ETA,
    F_FET_COOLING,
    F_FET_LEAK_A,
    F_FET_LEAK_DELAY_S,
    F_FET_MASS,
    F_FET_R,
    F_FULL_CELL_V,
    F_FULL_HOLD_S,
    F_FULL_TAIL_A,
    F_I_OFF,
    F_I_SD,
    F_I_STEP,
    F_INV_REF_K,
    F_LEARN_INTERVAL_S,
    F_MISMATCH_FRACTION,
    F_MISMATCH_MIN_V,
    F_NEIGHBOUR,
    F_OCV_REST_S,
    F_REARM_S,
    F_RECORD_EVERY_S,
    F_RECOVERY_LIMIT_A,
    F_REST_A,
    F_REST_C,
    F_SAVE_INTERVAL_S,
    F_SCD_DELAY_S,
    F_SCD_TRIP_A,
    F_SLEEP_DELAY_S,
    F_STACK_STEP,
    F_STUCK_DEV_C,
    F_STUCK_DEV_V,
    F_STUCK_MIN_READINGS,
    F_STUCK_WINDOW_S,
    F_T_MAX,
    F_T_MIN,
    F_T_SD,
    F_T_STEP,
    F_TWIN_BLEED_OHM,
    F_V_OFF,
    F_V_SD,
    F_V_STEP,
    HANDOFF,
    Q_AFE,
    Q_CHARGE_C,
    Q_COUNT,
    Q_DISCHARGE_C,
    Q_FET_T,
    Q_FLAG,
    Q_IMBALANCE,
    Q_LINK,
    Q_MAX_T,
    Q_MAX_V,
    Q_MIN_T,
    Q_MIN_V,
    Q_SENSOR,
    SAVED_COLUMNS_FIXED,
    TELEMETRY_FULL,
    _floor_div,
    _stuck_kind,
    terminal_current,
)
from openbms.fast.guard import _debounce, _releasing
from openbms.twin.cells import R0_POINTS

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int32]

LANES_MIN_PACKS = 64  # below this the transposition costs more than the vector loops save
BLOCK_PACKS = 256  # packs a stage works on at a time (its scratch stays in the L2 cache)
# fast.engine runs a window of this many cycles on this many packs at a time (their state, a few
# MB, stays in cache for the window), then the next packs; a stop makes every block end there.
WINDOW_CYCLES = 128
WINDOW_PACKS = 512

# Helpers inlined into the kernel by numba itself: a call would stop LLVM from vectorising the loop.
_inline: Any = njit(cache=True, inline="always", error_model="numpy", **_NO_REFCOUNTS)
# The lanes kernel divides without the Python error model's zero check (a branch in every loop that
# divides, which stops vectorisation): a zero divisor gives inf or NaN as in the NumPy reference.
_lane_kernel: Any = njit(cache=True, error_model="numpy", **_NO_REFCOUNTS)


def _no_aliasing(flags: Any) -> Any:
    """Compile with the array arguments marked ``noalias``: without it LLVM must assume a store to
    one array may change any other, and vectorises no loop that gathers from a table (the OCV, R0
    and 2**k look-ups) or updates an array in place. True by construction: ``fast.engine`` passes
    every array the kernel writes as its own buffer, and copies of the arrays it only reads."""
    flags.noalias = True
    return flags


def _stage(function: Any) -> Any:
    """One stage of a block, compiled on its own with its arrays marked ``noalias`` (see
    ``_no_aliasing``): LLVM vectorises a small function's loops where it gives up on the whole kernel."""
    compiled = _lane_kernel(function)
    compiled._compiler._customize_flags = _no_aliasing
    return compiled


# Per-cell constants (``cc`` rows): the resistance scale, dt x SOC per coulomb (the product
# ``run_cycles`` forms every cycle, so the same number), self-discharge, dt / thermal mass, cooling.
(CC_SCALE, CC_DT_SOC, CC_SELF_DISCHARGE, CC_A, CC_H, CC_ROWS) = range(6)

# The brain's per-series state (``ss`` rows, kept twice): the last readings (the sensor watch's
# ``last_v``/``last_t``; the next copy holds this cycle's readings), how long each has not
# changed, and the SOC the brain counts per group.
(S_LAST_V, S_LAST_T, S_SAME_V_S, S_SAME_T_S, S_GROUP_SOC, S_ROWS) = range(6)
# ... and how many readings in a row each has not changed (``sn``, int32 as the sensor watch keeps them).
(N_SAME_V, N_SAME_T, N_ROWS) = range(3)

# The brain's per-pack state (``ps`` rows, kept twice; flags as 0.0 / 1.0).
(
    P_LEAK_S,
    P_CHARGING_S,
    P_SLEEP_TIMER_S,
    P_SLEEP_SEEN,
    P_CHARGER_AWAY_S,
    P_CHARGER_WAS,
    P_CHARGE_AH,
    P_DISCHARGE_AH,
    P_CHARGE_WH,
    P_DISCHARGE_WH,
    P_CYCLES,
    P_AH_SINCE_FULL,
    P_FULL_TIMER_S,
    P_FULL_DONE,
    P_SOC_REST_S,
    P_HEALTH_REST_S,
    P_OUT_SINCE_TOP_AH,
    P_AFTER_TOP,
    P_OVERRATE_S,
    P_OVERRATE_SEEN,
    P_ROWS,
) = range(21)

# Which copy of each kept-twice group is current (``cur``), as the engine reads it back.
(G_SERIES, G_PACK, G_TRIP, G_RELEASE, G_WARN, G_VALUES, G_COUNT) = range(7)

# Per-pack rows (``lane``: L_ROWS separate (packs,) arrays): scratch, and what a call works out once.
(
    L_E_PACK,
    L_R_PACK,
    L_CURRENT,
    L_CHARGING_ROW,
    L_MAX_V,
    L_MIN_V,
    L_MAX_T,
    L_MIN_T,
    L_SUM_V,
    L_STOP,
    L_FROZEN_V,
    L_FROZEN_T,
    L_CHARGER_GONE,
    L_RESTING,
    L_OK_BAL,
    L_SLEEPY,
    L_CHARGE_BLOCKED,
    L_DISCHARGE_BLOCKED,
    L_FULL_FAULT,
    L_STOPPING,
    L_HEALTH_CLEAR,
    L_ROWS,
) = range(22)

# Per-cell scratch of one block (``cell_work``: C_ROWS separate (cells, BLOCK_PACKS) arrays).
(C_FACTOR, C_R0, C_E, C_R, C_HEAT, C_TERMINAL, C_T_NEW, C_ROWS) = range(8)

# fdlibm's exp (e_exp.c): ln 2 split in two, 1/ln 2, the minimax polynomial of its remainder.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
POW2_LOW = -1022
LANE_EXP_MAX_ABS = 700.0  # |x| beyond which lane_exp would leave its table (the engine checks)


def pow2_table() -> FloatArray:
    """2**k for k from ``POW2_LOW`` to 1023: ``lane_exp`` scales by a table look-up, which the
    vectoriser turns into a gather, where ``math.ldexp`` would be a library call."""
    return np.ldexp(1.0, np.arange(POW2_LOW, 1024)).astype(np.float64)


@_inline
def lane_exp(x: float, pow2: FloatArray) -> float:  # pragma: no cover - compiled
    """e**x for |x| < 700 by fdlibm's method (error below one unit in the last place)."""
    k = np.rint(x * _INV_LN2)
    hi = x - k * _LN2_HI
    lo = k * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    return y * pow2[int(k) - POW2_LOW]


@_inline
def _lane_sum(  # pragma: no cover - compiled
    a: FloatArray, n: int, out: FloatArray, acc: FloatArray, p0: int, p1: int, a_block: bool
) -> None:
    """``cycle.pairwise_sum`` of rows ``a[0:n, p]`` for every pack p in [p0, p1) into ``out[p]``:
    NumPy's pairwise order, eight accumulators, each pack its own lane. ``acc`` is the block's
    scratch (column p - p0); so is ``a`` when ``a_block`` (else its column is p)."""
    u0, u1 = uintp(p0), uintp(p1)  # unsigned: no negative-index wrap, so LLVM vectorises
    base = u0 if a_block else uintp(0)
    if n < 8:
        for p in range(u0, u1):
            out[p] = 0.0
        for i in range(n):
            for p in range(u0, u1):
                out[p] += a[i, p - base]
        return
    for j in range(8):
        for p in range(u0, u1):
            acc[j, p - u0] = a[j, p - base]
    i = 8
    while i < n - (n % 8):
        for j in range(8):
            for p in range(u0, u1):
                acc[j, p - u0] += a[i + j, p - base]
        i += 8
    for p in range(u0, u1):
        q = p - u0
        out[p] = ((acc[0, q] + acc[1, q]) + (acc[2, q] + acc[3, q])) + (
            (acc[4, q] + acc[5, q]) + (acc[6, q] + acc[7, q])
        )
    while i < n:
        for p in range(u0, u1):
            out[p] += a[i, p - base]
        i += 1


@_inline
def _lane_ocv(table: FloatArray, slope: FloatArray, soc: float) -> float:  # pragma: no cover - compiled
    """``physics._ocv`` without branches (every case worked out, then one chosen), indexes kept
    inside the table whatever the SOC."""
    last = table.size - 1
    below = table[0] * min(max(1.0 + soc / SOC_SPAN_TO_ZERO_VOLT, 0.0), 1.0)
    above = table[last] + (soc - 1.0) * ((table[last] - table[last - 1]) * last)
    x = soc * last
    xc = min(max(x, 0.0), float(last - 1))
    index = int(xc)
    mid = table[index] + (x - index) * slope[index]
    return below if soc < 0.0 else (above if soc > 1.0 else mid)


@_stage
def _thevenin(  # pragma: no cover - compiled
    p0: int,
    p1: int,
    cells: int,
    pairs: int,
    arrhenius: float,
    inv_ref_k: float,
    fet_r_s: float,
    pow2: FloatArray,
    cc: FloatArray,
    soc: FloatArray,
    v_rc: FloatArray,
    temperature: FloatArray,
    ocv: FloatArray,
    pack_current: FloatArray,
    r0_table: FloatArray,
    rc_r: FloatArray,
    decay: FloatArray,
    factor: FloatArray,
    r0: FloatArray,
    e: FloatArray,
    r: FloatArray,
    e_pack: FloatArray,
    r_pack: FloatArray,
    charging_row: FloatArray,
    acc: FloatArray,
) -> None:
    """``CellBank.thevenin`` and the series sums of packs [p0, p1): each cell's EMF and resistance."""
    u0, u1 = uintp(p0), uintp(p1)  # unsigned: no negative-index wrap, so LLVM vectorises
    series = cells
    for p in range(u0, u1):
        charging_row[p] = R0_POINTS if pack_current[p] > 0.0 else 0
    for k in range(cells):
        if arrhenius == 0.0:
            for p in range(u0, u1):
                factor[k, p - u0] = cc[CC_SCALE, k, p] * 1.0
        else:
            for p in range(u0, u1):
                t_k = max(temperature[k, p] + _KELVIN, 200.0)
                factor[k, p - u0] = cc[CC_SCALE, k, p] * lane_exp(arrhenius * (1.0 / t_k - inv_ref_k), pow2)
        for p in range(u0, u1):
            f = factor[k, p - u0]
            s_c = min(max(soc[k, p], 0.0), 1.0)
            index = int(s_c * (R0_POINTS - 1) + 0.5) + int(charging_row[p])
            r0_k = r0_table[index] * f
            r0[k, p - u0] = r0_k
            e[k, p - u0] = ocv[k, p]
            r[k, p - u0] = r0_k
        for i in range(pairs):
            d = decay[i]
            step_r = rc_r[i] * (1.0 - d)
            for p in range(u0, u1):
                e[k, p - u0] += v_rc[i, k, p] * d
                r[k, p - u0] += factor[k, p - u0] * step_r
    _lane_sum(e, series, e_pack, acc, p0, p1, True)
    _lane_sum(r, series, r_pack, acc, p0, p1, True)
    for p in range(u0, u1):
        r_pack[p] = r_pack[p] + fet_r_s


@_stage
def _advance(  # pragma: no cover - compiled
    p0: int,
    p1: int,
    cells: int,
    pairs: int,
    eta: float,
    any_balance: bool,
    twin_bleed_ohm_s: float,
    has_neighbours: bool,
    neighbour: float,
    fet_r_s: float,
    b_fet: float,
    fet_cooling_s: float,
    fet_denominator: float,
    cc: FloatArray,
    soc: FloatArray,
    v_rc: FloatArray,
    temperature: FloatArray,
    ocv: FloatArray,
    cell_v: FloatArray,
    pack_v: FloatArray,
    pack_current: FloatArray,
    fet_t: FloatArray,
    ambient: FloatArray,
    balance: BoolArray,
    supply_draw: FloatArray,
    scd_tripped: BoolArray,
    ocv_table: FloatArray,
    ocv_slope: FloatArray,
    rc_r: FloatArray,
    decay: FloatArray,
    currents: FloatArray,
    factor: FloatArray,
    r0: FloatArray,
    heat: FloatArray,
    terminal: FloatArray,
    t_new: FloatArray,
    acc: FloatArray,
) -> None:
    """``CellBank.advance``, ``Pack._advance_thermal`` and the pack voltage of packs [p0, p1)."""
    u0, u1 = uintp(p0), uintp(p1)  # unsigned: no negative-index wrap, so LLVM vectorises
    series = cells
    for k in range(cells):
        for p in range(u0, u1):
            drain = supply_draw[p] / 1
            if any_balance:
                bleed = (cell_v[k, p] if balance[k, p] else 0.0) / twin_bleed_ohm_s
                drain = drain + bleed
            i_k = currents[p]
            internal = i_k * eta if i_k > 0.0 else i_k
            internal -= cc[CC_SELF_DISCHARGE, k, p]
            internal -= drain
            internal *= cc[CC_DT_SOC, k, p]
            soc[k, p] = soc[k, p] + internal
            r0_k = r0[k, p - u0]
            heat[k, p - u0] = i_k * i_k * r0_k
            terminal[k, p - u0] = r0_k * i_k
        for i in range(pairs):
            d = decay[i]
            one_less = 1.0 - d
            rc = rc_r[i]
            for p in range(u0, u1):
                r_i = rc * factor[k, p - u0]
                v_i = v_rc[i, k, p] * d + r_i * (one_less * currents[p])
                v_rc[i, k, p] = v_i
                terminal[k, p - u0] += v_i
                heat[k, p - u0] += v_i * v_i / r_i
        for p in range(u0, u1):
            ocv_k = _lane_ocv(ocv_table, ocv_slope, soc[k, p])
            ocv[k, p] = ocv_k
            term = terminal[k, p - u0] + ocv_k
            cell_v[k, p] = 0.0 if term < 0.0 else term
    # ---- Pack._advance_thermal
    for k in range(cells):
        for p in range(u0, u1):
            tc = temperature[k, p]
            a = cc[CC_A, k, p]
            h = cc[CC_H, k, p]
            if has_neighbours:
                left = temperature[k - 1, p] if k > 0 else tc
                right = temperature[k + 1, p] if k < cells - 1 else tc
                t_new[k, p - u0] = (tc + a * (heat[k, p - u0] + h * ambient[p] + neighbour * (left + right))) / (
                    1.0 + a * (h + 2.0 * neighbour)
                )
            else:
                t_new[k, p - u0] = (tc + a * (heat[k, p - u0] + h * ambient[p])) / (1.0 + a * h)
    for k in range(cells):
        for p in range(u0, u1):
            temperature[k, p] = t_new[k, p - u0]
    for p in range(u0, u1):
        current = currents[p]
        fet_heat = current * current * fet_r_s
        fet_t[p] = (fet_t[p] + b_fet * (fet_heat + fet_cooling_s * ambient[p])) / fet_denominator
        pack_current[p] = 0.0 if scd_tripped[p] else current
    _lane_sum(cell_v, series, pack_v, acc, p0, p1, False)


@_stage
def _readings(  # pragma: no cover - compiled
    p0: int,
    p1: int,
    series: int,
    start_v: int,
    start_t: int,
    v_sd: float,
    v_off: float,
    v_step: float,
    t_sd: float,
    t_step: float,
    pool: FloatArray,
    cell_v: FloatArray,
    temperature: FloatArray,
    m_v: FloatArray,
    m_t: FloatArray,
) -> None:
    """The AFE's cell voltage and temperature readings of packs [p0, p1) (``Twin._decide``)."""
    u0, u1 = uintp(p0), uintp(p1)  # unsigned: no negative-index wrap, so LLVM vectorises
    for g in range(series):
        for p in range(u0, u1):
            m_v[g, p] = _noisy(cell_v[g, p], pool[start_v + np.int64(p) * series + g], v_sd, v_off, v_step)
            m_t[g, p] = _noisy(temperature[g, p], pool[start_t + np.int64(p) * series + g], t_sd, 0.0, t_step)


@_stage
def _extremes(  # pragma: no cover - compiled
    p0: int,
    p1: int,
    series: int,
    m_v: FloatArray,
    m_t: FloatArray,
    m_current: FloatArray,
    m_stack_v: FloatArray,
    m_fet_t: FloatArray,
    max_v: FloatArray,
    min_v: FloatArray,
    max_t: FloatArray,
    min_t: FloatArray,
    sum_v: FloatArray,
    stop_code: FloatArray,
    acc: FloatArray,
) -> None:
    """``CellStats.of`` and the finiteness check of ``Bms._quantities`` for packs [p0, p1)."""
    u0, u1 = uintp(p0), uintp(p1)  # unsigned: no negative-index wrap, so LLVM vectorises
    for p in range(u0, u1):
        max_v[p] = m_v[0, p]
        min_v[p] = m_v[0, p]
        max_t[p] = m_t[0, p]
        min_t[p] = m_t[0, p]
        ok = math.isfinite(m_current[p]) and math.isfinite(m_stack_v[p]) and math.isfinite(m_fet_t[p])
        stop_code[p] = 0.0 if ok else _NOT_FINITE
    for g in range(series):
        for p in range(u0, u1):
            v = m_v[g, p]
            t = m_t[g, p]
            finite = math.isfinite(v) and math.isfinite(t)
            stop_code[p] = stop_code[p] if finite else _NOT_FINITE
            max_v[p] = max(max_v[p], v)
            min_v[p] = min(min_v[p], v)
            max_t[p] = max(max_t[p], t)
            min_t[p] = min(min_t[p], t)
    _lane_sum(m_v, series, sum_v, acc, p0, p1, False)


@_stage
def _unchanged(  # pragma: no cover - compiled
    p0: int,
    p1: int,
    series: int,
    dt_s: float,
    window_s: float,
    min_readings: float,
    now: FloatArray,
    was: FloatArray,
    was_s: FloatArray,
    was_n: IntArray,
    new_s_row: FloatArray,
    new_n_row: IntArray,
    frozen: FloatArray,
) -> None:
    """``SensorWatch._stuck``'s counters of one kind of sensor for packs [p0, p1), and which pack has a
    reading unchanged long enough to be looked at (``frozen``)."""
    u0, u1 = uintp(p0), uintp(p1)  # unsigned: no negative-index wrap, so LLVM vectorises
    for p in range(u0, u1):
        frozen[p] = 0.0
    for g in range(series):
        for p in range(u0, u1):
            same = now[g, p] == was[g, p]
            new_s = was_s[g, p] + dt_s if same else 0.0
            new_n = was_n[g, p] + np.int32(1) if same else np.int32(0)
            new_s_row[g, p] = new_s
            new_n_row[g, p] = new_n
            frozen_now = new_s >= window_s and new_n >= min_readings
            frozen[p] = 1.0 if frozen_now else frozen[p]


@_stage
def _group_soc(  # pragma: no cover - compiled
    p0: int,
    p1: int,
    series: int,
    dt_s: float,
    balancing_enabled: bool,
    any_brain_balance: bool,
    threshold: float,
    bleed_ohm: float,
    m_v: FloatArray,
    min_v: FloatArray,
    brain_balance: BoolArray,
    ok_bal: FloatArray,
    common_a: FloatArray,
    capacity_ah: FloatArray,
    soc_was: FloatArray,
    soc_now: FloatArray,
    stop_code: FloatArray,
) -> None:
    """``outputs.update_balancing``'s mask (a change stops) and ``SocEstimator.update``'s SOC per group
    for packs [p0, p1); ``common_a`` is each pack's stored current less the board's own draw."""
    u0, u1 = uintp(p0), uintp(p1)  # unsigned: no negative-index wrap, so LLVM vectorises
    for g in range(series):
        if balancing_enabled:
            for p in range(u0, u1):
                above = m_v[g, p] - min_v[p]
                on = brain_balance[g, p]
                mask = ((above > threshold) or (on and above > 0.5 * threshold)) and ok_bal[p] != 0.0
                changes = mask != on and stop_code[p] == 0.0
                stop_code[p] = _BALANCING if changes else stop_code[p]
        for p in range(u0, u1):
            bleed_a = 0.0
            if any_brain_balance and brain_balance[g, p]:
                bleed_a = max(m_v[g, p], 0.0) / bleed_ohm
            group_a = common_a[p] - bleed_a
            soc_now[g, p] = soc_was[g, p] + group_a * (dt_s / 3600.0) / capacity_ah[p]


@_lane_kernel
def run_lanes(  # noqa: PLR0912, PLR0913, PLR0915, C901  # pragma: no cover - compiled
    # ---- the clock and what the caller set per cycle
    cycles: int,
    pa: int,  # the packs this call runs: [pa, pb) (see fast.engine's windows)
    pb: int,
    any_active: bool,  # a fault is active in some pack of the whole batch (not only [pa, pb))
    handoff_at_end: bool,  # hand the last cycle over even when it is quiet (a window's rerun)
    t_twin: float,
    t_last: float,
    profile_a: FloatArray,  # (cycles,) or empty
    ext_profile_a: FloatArray,  # (packs,)
    fs: FloatArray,
    flags: BoolArray,
    # ---- cells
    ocv_table: FloatArray,
    ocv_slope: FloatArray,
    r0_table: FloatArray,
    rc_r: FloatArray,
    decay: FloatArray,
    pow2: FloatArray,
    cc: FloatArray,  # (CC_ROWS, cells, packs)
    # ---- cell and pack state, transposed (cells, packs); the pack's own arrays (packs,)
    soc: FloatArray,
    v_rc: FloatArray,  # (pairs, cells, packs)
    temperature: FloatArray,
    ocv: FloatArray,
    cell_v: FloatArray,
    pack_v: FloatArray,
    pack_current: FloatArray,
    fet_t: FloatArray,
    # ---- board and terminals (packs,)
    ambient: FloatArray,
    charge_fet: BoolArray,
    discharge_fet: BoolArray,
    fet_stuck_charge: BoolArray,
    fet_stuck_discharge: BoolArray,
    balance: BoolArray,  # (series, packs)
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
    pool: FloatArray,
    offsets: npt.NDArray[np.int64],  # (cycles, 3): where each cycle's noise starts in the pool (v, t, i)
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
    trip_due: FloatArray,
    release_due: FloatArray,
    warn_due: FloatArray,
    sleep_columns: BoolArray,
    full_columns: BoolArray,
    stops_balancing: BoolArray,
    blocks_charge: BoolArray,
    blocks_discharge: BoolArray,
    # ---- the brain's state: read (transposed where per protection or per cell)
    active: BoolArray,  # (n_prot, packs)
    may_clear: BoolArray,  # (n_prot, packs)
    warning_active: BoolArray,  # (n_prot, packs)
    sleeping: BoolArray,
    operator_charge_off: BoolArray,
    operator_discharge_off: BoolArray,
    brain_charge_fet: BoolArray,
    brain_discharge_fet: BoolArray,
    brain_balance: BoolArray,  # (series, packs)
    health_flag: FloatArray,  # (packs,) 1.0 where a cell is judged failed
    soc_capacity_ah: FloatArray,
    recovery_only: BoolArray,
    recovery_blocked: BoolArray,
    # ---- the brain's state kept twice, and which copy is current
    ss: Any,  # 2 * S_ROWS separate (series, packs) arrays: row r's copy c is ss[2 * r + c]
    sn: Any,  # 2 * N_ROWS separate (series, packs) int32 arrays, as ss
    ps: FloatArray,  # (2, P_ROWS, packs)
    tr: Any,  # 4 separate (n_prot, packs) arrays: trip timer copies 0, 1, then seen copies 0, 1
    rl: Any,  # the same for the release timer
    wn: Any,  # 6: the warning timer's copies, seen's, then how long it has been gone
    vals: Any,  # 2 separate (n_prot, packs) arrays: the protections' values (last_values)
    cur: npt.NDArray[np.int64],  # (G_COUNT,)
    # ---- the brain's state written in place once a cycle is quiet
    reference_soc: FloatArray,  # (series, packs)
    bled_ah: FloatArray,  # (series, packs)
    intervals: FloatArray,
    last_save_s: FloatArray,
    running: BoolArray,
    # ---- outputs
    m_current: FloatArray,
    m_stack_v: FloatArray,
    m_fet_t: FloatArray,
    m_charger: BoolArray,
    m_load: BoolArray,
    scd_tripped: BoolArray,
    scd_peak_a: FloatArray,
    telemetry: FloatArray,
    telemetry_state: float,
    record_next: FloatArray,
    out: npt.NDArray[np.int64],
    out_t: FloatArray,
    saved: FloatArray,
    # ---- scratch
    lane: Any,  # L_ROWS separate (packs,) arrays
    cell_work: Any,  # C_ROWS separate (cells, packs) arrays: one object each, so LLVM may vectorise
    q: Any,  # Q_COUNT separate (packs,) arrays
    acc: FloatArray,  # (8, packs)
    tmp: FloatArray,  # (3, series)
    tmp_n: npt.NDArray[np.int32],  # (series,)
) -> int:
    arrhenius_s = fs[F_ARRHENIUS]
    asleep_a_s = fs[F_ASLEEP_A]
    awake_a_s = fs[F_AWAKE_A]
    bal_max_t_s = fs[F_BAL_MAX_T]
    bal_min_cell_v_s = fs[F_BAL_MIN_CELL_V]
    bal_threshold_v_s = fs[F_BAL_THRESHOLD_V]
    bal_top_out_ah_s = fs[F_BAL_TOP_OUT_AH]
    bleed_ohm_s = fs[F_BLEED_OHM]
    capacity_ah_s = fs[F_CAPACITY_AH]
    cell_v_max_s = fs[F_CELL_V_MAX]
    cell_v_min_s = fs[F_CELL_V_MIN]
    charge_confirm_s_s = fs[F_CHARGE_CONFIRM_S]
    current_max_a_s = fs[F_CURRENT_MAX_A]
    dt_s = fs[F_DT]
    eta_s = fs[F_ETA]
    fet_cooling_s = fs[F_FET_COOLING]
    fet_leak_a_s = fs[F_FET_LEAK_A]
    fet_leak_delay_s_s = fs[F_FET_LEAK_DELAY_S]
    fet_mass_s = fs[F_FET_MASS]
    fet_r_s = fs[F_FET_R]
    full_cell_v_s = fs[F_FULL_CELL_V]
    full_hold_s_s = fs[F_FULL_HOLD_S]
    full_tail_a_s = fs[F_FULL_TAIL_A]
    inv_ref_k_s = fs[F_INV_REF_K]
    i_off_s = fs[F_I_OFF]
    i_sd_s = fs[F_I_SD]
    i_step_s = fs[F_I_STEP]
    learn_interval_s_s = fs[F_LEARN_INTERVAL_S]
    mismatch_fraction_s = fs[F_MISMATCH_FRACTION]
    mismatch_min_v_s = fs[F_MISMATCH_MIN_V]
    neighbour_s = fs[F_NEIGHBOUR]
    ocv_rest_s_s = fs[F_OCV_REST_S]
    rearm_s_s = fs[F_REARM_S]
    record_every_s_s = fs[F_RECORD_EVERY_S]
    recovery_limit_a_s = fs[F_RECOVERY_LIMIT_A]
    rest_a_s = fs[F_REST_A]
    rest_c_s = fs[F_REST_C]
    save_interval_s_s = fs[F_SAVE_INTERVAL_S]
    scd_delay_s_s = fs[F_SCD_DELAY_S]
    scd_trip_a_s = fs[F_SCD_TRIP_A]
    sleep_delay_s_s = fs[F_SLEEP_DELAY_S]
    stack_step_s = fs[F_STACK_STEP]
    stuck_dev_c_s = fs[F_STUCK_DEV_C]
    stuck_dev_v_s = fs[F_STUCK_DEV_V]
    stuck_min_readings_s = fs[F_STUCK_MIN_READINGS]
    stuck_window_s_s = fs[F_STUCK_WINDOW_S]
    twin_bleed_ohm_s = fs[F_TWIN_BLEED_OHM]
    t_max_s = fs[F_T_MAX]
    t_min_s = fs[F_T_MIN]
    t_sd_s = fs[F_T_SD]
    t_step_s = fs[F_T_STEP]
    v_off_s = fs[F_V_OFF]
    v_sd_s = fs[F_V_SD]
    v_step_s = fs[F_V_STEP]
    cells, packs = soc.shape
    series = cells
    pairs = rc_r.size
    n_prot = sign.shape[0]
    dt_s = dt_s
    eta = eta_s
    has_neighbours = cells > 1
    rows_cap = telemetry.shape[0]
    rows = 0
    scd_fraction = min(scd_delay_s_s / dt_s, 1.0)
    arrhenius = arrhenius_s
    inv_ref_k = inv_ref_k_s
    rest_a = rest_a_s
    capacity_ah = capacity_ah_s
    scd_enabled = flags[B_SCD_ENABLED]
    balancing_enabled = flags[B_BALANCING_ENABLED]
    any_recovery = flags[B_ANY_RECOVERY]
    any_balance = False
    any_brain_balance = False
    for p in range(pa, pb):
        for g in range(series):
            if balance[g, p]:
                any_balance = True
            if brain_balance[g, p]:
                any_brain_balance = True
    # What the (fixed) faults of each pack mean for its outputs (recovery.update_sleep and friends).
    for p in range(pa, pb):
        sleepy = charge_blocked = discharge_blocked = full_fault = stopping = False
        for j in range(n_prot):
            if active[j, p]:
                sleepy = sleepy or sleep_columns[j]
                charge_blocked = charge_blocked or blocks_charge[j]
                discharge_blocked = discharge_blocked or blocks_discharge[j]
                full_fault = full_fault or full_columns[j]
                stopping = stopping or stops_balancing[j]
        lane[L_SLEEPY][p] = 1.0 if sleepy else 0.0
        lane[L_CHARGE_BLOCKED][p] = 1.0 if charge_blocked else 0.0
        lane[L_DISCHARGE_BLOCKED][p] = 1.0 if discharge_blocked else 0.0
        lane[L_FULL_FAULT][p] = 1.0 if full_fault else 0.0
        lane[L_STOPPING][p] = 1.0 if stopping else 0.0
    # Which packs' rest learner is already forgotten (no reference, nothing bled, no interval):
    # out of rest there is then nothing to write.
    for p in range(pa, pb):
        clear = intervals[p] == 0.0
        for g in range(series):
            if not math.isnan(reference_soc[g, p]) or bled_ah[g, p] != 0.0:
                clear = False
        lane[L_HEALTH_CLEAR][p] = 1.0 if clear else 0.0
    factor = cell_work[C_FACTOR]
    r0 = cell_work[C_R0]
    e = cell_work[C_E]
    r = cell_work[C_R]
    heat = cell_work[C_HEAT]
    terminal = cell_work[C_TERMINAL]
    t_new = cell_work[C_T_NEW]
    e_pack = lane[L_E_PACK]
    r_pack = lane[L_R_PACK]
    currents = lane[L_CURRENT]
    charging_row = lane[L_CHARGING_ROW]
    max_v = lane[L_MAX_V]
    min_v = lane[L_MIN_V]
    max_t = lane[L_MAX_T]
    min_t = lane[L_MIN_T]
    sum_v = lane[L_SUM_V]
    stop_code = lane[L_STOP]
    frozen_v = lane[L_FROZEN_V]
    frozen_t = lane[L_FROZEN_T]
    charger_gone = lane[L_CHARGER_GONE]
    resting_row = lane[L_RESTING]
    previous_t = t_last
    has_profile = profile_a.size > 0
    t_s = t_twin
    out_t[1] = t_last
    neighbour = neighbour_s
    b_fet = dt_s / fet_mass_s
    fet_denominator = 1.0 + b_fet * fet_cooling_s
    for c in range(cycles):
        out_t[2] = out_t[1]
        out_t[1] = t_s
        t_s = round(t_s + dt_s, 9)
        out_t[0] = t_s
        brain_dt = max(t_s - previous_t, 0.0)
        cycle_profile = profile_a[c] if has_profile else 0.0
        # The AFE's draws of this cycle (Twin._decide), in the reference's order.
        start_v = offsets[c, 0]
        start_t = offsets[c, 1]
        start_i = offsets[c, 2]
        i_ss = cur[G_SERIES]
        n_ss = 1 - i_ss
        i_ps = cur[G_PACK]
        n_ps = 1 - i_ps
        i_tr = cur[G_TRIP]
        n_tr = 1 - i_tr
        i_rl = cur[G_RELEASE]
        n_rl = 1 - i_rl
        i_wn = cur[G_WARN]
        n_wn = 1 - i_wn
        n_val = 1 - cur[G_VALUES]
        tt_was, tt_now, ts_was, ts_now = tr[i_tr], tr[n_tr], tr[2 + i_tr], tr[2 + n_tr]
        rt_was, rt_now, rs_was, rs_now = rl[i_rl], rl[n_rl], rl[2 + i_rl], rl[2 + n_rl]
        wt_was, wt_now, ws_was, ws_now = wn[i_wn], wn[n_wn], wn[2 + i_wn], wn[2 + n_wn]
        wg_was, wg_now = wn[4 + i_wn], wn[4 + n_wn]
        val_now = vals[n_val]
        trip_on = running[0]  # timers counting somewhere: they are written this cycle
        warn_on = running[1]
        any_scd = False
        any_stop = False
        any_condition = False
        any_warn = False
        for p0 in range(pa, pb, BLOCK_PACKS):
            p1 = min(p0 + BLOCK_PACKS, pb)
            u0, u1 = uintp(p0), uintp(p1)  # unsigned: no negative-index wrap, so LLVM vectorises
            # ======================================================== Pack.advance
            _thevenin(
                p0, p1, cells, pairs, arrhenius, inv_ref_k, fet_r_s, pow2, cc, soc, v_rc, temperature, ocv,
                pack_current, r0_table, rc_r, decay, factor, r0, e, r, e_pack, r_pack, charging_row, acc,
            )  # fmt: skip
            # ---- External.draw_a, the charger, the AFE's short-circuit detector (per pack)
            for p in range(u0, u1):
                wanted = terminal_current(
                    e_pack[p], r_pack[p], cycle_profile if has_profile else ext_profile_a[p], load_mode[p],
                    load_value[p], short_ohm[p], pack_v[p], charge_fet[p], discharge_fet[p], main_leads[p],
                    charger_connected[p], charger_v[p], charger_a[p], charger_min_v[p],
                )  # fmt: skip
                scd = scd_enabled and -wanted >= scd_trip_a_s
                currents[p] = wanted * (scd_fraction if scd else 1.0)
                scd_tripped[p] = scd
                scd_peak_a[p] = -wanted if scd else 0.0
                if scd:
                    any_scd = True
                    charge_fet[p] = False
                    discharge_fet[p] = False
            # ---- CellBank.advance: SOC, the RC pairs, the OCV, the terminal voltage, the heat
            _advance(
                p0, p1, cells, pairs, eta, any_balance, twin_bleed_ohm_s, has_neighbours, neighbour, fet_r_s,
                b_fet, fet_cooling_s, fet_denominator, cc, soc, v_rc, temperature, ocv, cell_v, pack_v,
                pack_current, fet_t, ambient, balance, supply_draw, scd_tripped, ocv_table, ocv_slope, rc_r, decay,
                currents, factor, r0, heat, terminal, t_new, acc,
            )  # fmt: skip
            # ======================================================== the AFE (readings into the next copy)
            m_v = ss[2 * S_LAST_V + n_ss]
            m_t = ss[2 * S_LAST_T + n_ss]
            _readings(
                p0, p1, series, start_v, start_t, v_sd_s, v_off_s, v_step_s, t_sd_s, t_step_s, pool, cell_v,
                temperature, m_v, m_t,
            )  # fmt: skip
            for p in range(u0, u1):
                prof = cycle_profile if has_profile else ext_profile_a[p]
                term = pack_v[p] if (charge_fet[p] or discharge_fet[p]) else 0.0
                if not main_leads[p]:
                    term = 0.0
                m_charger[p] = (charger_connected[p] and term >= charger_min_v[p]) or (
                    charger_connected[p] and charger_min_v[p] <= 0 and main_leads[p]
                )
                m_load[p] = (
                    load_mode[p] != 0 or math.isfinite(short_ohm[p]) or (0.0 if math.isnan(prof) else prof) < 0.0
                )
                m_current[p] = _noisy(pack_current[p], pool[start_i + np.int64(p)], i_sd_s, i_off_s, i_step_s)
                m_stack_v[p] = _quantise(pack_v[p], stack_step_s)
                m_fet_t[p] = _quantise(fet_t[p], t_step_s)
            # ======================================================== Bms._quantities (CellStats, SensorWatch)
            _extremes(
                p0, p1, series, m_v, m_t, m_current, m_stack_v, m_fet_t, max_v, min_v, max_t, min_t, sum_v,
                stop_code, acc,
            )  # fmt: skip
            # ---- SensorWatch._stuck's counters (into the next copy)
            for kind in range(2):
                row_m = S_LAST_V if kind == 0 else S_LAST_T
                row_s = S_SAME_V_S if kind == 0 else S_SAME_T_S
                row_n = N_SAME_V if kind == 0 else N_SAME_T
                frozen = frozen_v if kind == 0 else frozen_t
                _unchanged(
                    p0, p1, series, brain_dt, stuck_window_s_s, stuck_min_readings_s, ss[2 * row_m + n_ss],
                    ss[2 * row_m + i_ss], ss[2 * row_s + i_ss], sn[2 * row_n + i_ss], ss[2 * row_s + n_ss],
                    sn[2 * row_n + n_ss], frozen,
                )  # fmt: skip
            # ---- per pack: plausibility, the leak watch, the quantities
            for p in range(u0, u1):
                current = m_current[p]
                leak_a = fet_leak_a_s
                leaking = (current > leak_a and not brain_charge_fet[p]) or (
                    current < -leak_a and not brain_discharge_fet[p]
                )
                leak_s = ps[i_ps, P_LEAK_S, p] + brain_dt if leaking else 0.0
                ps[n_ps, P_LEAK_S, p] = leak_s
                fet_stuck = leak_s >= fet_leak_delay_s_s
                good_v = min_v[p] >= cell_v_min_s and max_v[p] <= cell_v_max_s
                good_t = min_t[p] >= t_min_s and max_t[p] <= t_max_s
                good_i = abs(current) <= current_max_a_s
                mismatch = abs(m_stack_v[p] - sum_v[p])
                allowed = max(mismatch_fraction_s * abs(m_stack_v[p]), mismatch_min_v_s)
                if stop_code[p] == 0.0 and not (good_v and good_t and good_i and mismatch <= allowed):
                    stop_code[p] = _IMPLAUSIBLE
                current_c = current / capacity_ah_s
                q[Q_MAX_V][p] = max_v[p]
                q[Q_MIN_V][p] = min_v[p]
                q[Q_CHARGE_C][p] = max(current_c, 0.0)
                q[Q_DISCHARGE_C][p] = max(-current_c, 0.0)
                q[Q_MAX_T][p] = max_t[p]
                q[Q_MIN_T][p] = min_t[p]
                q[Q_FET_T][p] = m_fet_t[p]
                q[Q_IMBALANCE][p] = max_v[p] - min_v[p] if abs(current_c) < rest_c_s else np.nan
                q[Q_SENSOR][p] = 0.0
                q[Q_AFE][p] = 1.0 if (afe_damaged[p] or fet_stuck) else 0.0
                q[Q_LINK][p] = 0.0 if link_ok[p] else 1.0
                q[Q_FLAG][p] = health_flag[p]
                charger_gone[p] = 1.0 if ((not m_charger[p]) or current <= rest_a) else 0.0
            for i in range(Q_COUNT):
                q_row = q[i]
                for p in range(u0, u1):
                    q_row[p] = q_row[p] if math.isfinite(q_row[p]) else np.nan
            # ---- the sensor watch's stuck test, for the rare pack with a reading frozen long enough
            if series >= 3:
                for p in range(u0, u1):
                    if stop_code[p] != 0.0 or (frozen_v[p] == 0.0 and frozen_t[p] == 0.0):
                        continue
                    for kind in range(2):
                        row_m = S_LAST_V if kind == 0 else S_LAST_T
                        row_s = S_SAME_V_S if kind == 0 else S_SAME_T_S
                        row_n = N_SAME_V if kind == 0 else N_SAME_T
                        now_m = ss[2 * row_m + n_ss]
                        new_s_row = ss[2 * row_s + n_ss]
                        new_n_row = sn[2 * row_n + n_ss]
                        for g in range(series):
                            tmp[0, g] = now_m[g, p]
                            tmp[1, g] = new_s_row[g, p]
                            tmp_n[g] = new_n_row[g, p]
                        deviation = stuck_dev_v_s if kind == 0 else stuck_dev_c_s
                        if stop_code[p] == 0.0 and _stuck_kind(tmp[0], tmp[1], tmp_n, fs, deviation, tmp[2]):
                            stop_code[p] = _STUCK
            # ======================================================== the protections
            for j in range(n_prot):
                q_row = q[quantity_index[j]]
                s_j = sign[j]
                on = enabled[j]
                trip_j = trip[j]
                warn_j = warn[j]
                n_condition = 0
                n_warn = 0
                for p in range(u0, u1):
                    v = q_row[p]
                    val_now[j, p] = v
                    condition = on and s_j * (v - trip_j) >= 0.0
                    w_on = on and s_j * (v - warn_j) >= 0.0
                    n_condition += 1 if condition else 0
                    n_warn += 1 if w_on else 0
                any_condition = any_condition or n_condition > 0
                any_warn = any_warn or n_warn > 0
                # ---- faults.update_faults: the trip timer (and the release timer while faults are active)
                due = trip_due[j]
                afe_own = in_afe[j]
                if any_active:
                    release_j = release[j]
                    mode_j = release_mode[j]
                    r_due = release_due[j]
                    for p in range(u0, u1):
                        v = val_now[j, p]
                        condition = on and s_j * (v - trip_j) >= 0.0
                        if trip_on:
                            tt = _debounce(tt_was[j, p], condition, ts_was[j, p] != 0.0, brain_dt)
                            tt_now[j, p] = tt
                            ts_now[j, p] = 1.0 if condition else 0.0
                        else:  # every timer is at zero and nothing was seen (running is False)
                            tt = _debounce(0.0, condition, False, brain_dt)
                        tripping = condition and tt >= due and not afe_own
                        if tripping and not active[j, p] and stop_code[p] == 0.0:
                            stop_code[p] = _FAULT_SETS
                        releasing = active[j, p] and _releasing(
                            v, s_j, release_j, mode_j, m_load[p], charger_gone[p] != 0.0
                        )
                        rt = _debounce(rt_was[j, p], releasing, rs_was[j, p] != 0.0, brain_dt)
                        rt_now[j, p] = rt
                        rs_now[j, p] = 1.0 if releasing else 0.0
                        if releasing and rt >= r_due and may_clear[j, p] and not tripping and stop_code[p] == 0.0:
                            stop_code[p] = _FAULT_CLEARS
                elif trip_on:
                    for p in range(u0, u1):
                        condition = on and s_j * (val_now[j, p] - trip_j) >= 0.0
                        tt = _debounce(tt_was[j, p], condition, ts_was[j, p] != 0.0, brain_dt)
                        tt_now[j, p] = tt
                        ts_now[j, p] = 1.0 if condition else 0.0
                        tripping = condition and tt >= due and not afe_own
                        sets = tripping and not active[j, p] and stop_code[p] == 0.0
                        stop_code[p] = _FAULT_SETS if sets else stop_code[p]
                elif n_condition > 0:  # timers at rest: a condition trips now only with no delay
                    for p in range(u0, u1):
                        condition = on and s_j * (val_now[j, p] - trip_j) >= 0.0
                        tt = _debounce(0.0, condition, False, brain_dt)
                        tripping = condition and tt >= due and not afe_own
                        sets = tripping and not active[j, p] and stop_code[p] == 0.0
                        stop_code[p] = _FAULT_SETS if sets else stop_code[p]
                # ---- faults.update_warnings (at rest, no warning is up: nothing changes without w_on)
                w_due = warn_due[j]
                hold = warn_hold_s[j]
                if warn_on:
                    for p in range(u0, u1):
                        w_on = on and s_j * (val_now[j, p] - warn_j) >= 0.0
                        was = warning_active[j, p]
                        wt = _debounce(wt_was[j, p], w_on, ws_was[j, p] != 0.0, brain_dt)
                        gone = 0.0 if w_on else wg_was[j, p] + brain_dt
                        rises = w_on and wt >= w_due
                        now = rises or (was and not gone >= hold)
                        changes = now != was and stop_code[p] == 0.0
                        stop_code[p] = _WARNING if changes else stop_code[p]
                        wt_now[j, p] = wt
                        ws_now[j, p] = 1.0 if w_on else 0.0
                        wg_now[j, p] = gone if now else 0.0
                elif n_warn > 0:
                    for p in range(u0, u1):
                        w_on = on and s_j * (val_now[j, p] - warn_j) >= 0.0
                        was = warning_active[j, p]
                        wt = _debounce(0.0, w_on, False, brain_dt)
                        gone = 0.0 if w_on else 0.0 + brain_dt
                        rises = w_on and wt >= w_due
                        now = rises or (was and not gone >= hold)
                        changes = now != was and stop_code[p] == 0.0
                        stop_code[p] = _WARNING if changes else stop_code[p]
            # ======================================================== the rest of Bms._step, per pack
            for p in range(u0, u1):
                current = m_current[p]
                charger = m_charger[p]
                # ---- recovery.update_sleep
                new_charging_s = ps[i_ps, P_CHARGING_S, p] + brain_dt if current > rest_a else 0.0
                charging = new_charging_s >= charge_confirm_s_s
                asleep_soon = lane[L_SLEEPY][p] != 0.0 and not charging and not sleeping[p]
                if asleep_soon:
                    new_sleep_timer = ps[i_ps, P_SLEEP_TIMER_S, p] + (
                        brain_dt if ps[i_ps, P_SLEEP_SEEN, p] != 0.0 else 0.0
                    )
                else:
                    new_sleep_timer = 0.0
                stop = 0
                if new_sleep_timer >= sleep_delay_s_s and not sleeping[p]:
                    stop = _SLEEP
                rising = charger and ps[i_ps, P_CHARGER_WAS, p] == 0.0 and ps[i_ps, P_CHARGER_AWAY_S, p] >= rearm_s_s
                if stop == 0 and sleeping[p] and rising:
                    stop = _SLEEP
                # ---- outputs.update_fets (the recovery charge's over-rate timer included)
                charge_blocked = lane[L_CHARGE_BLOCKED][p] != 0.0
                new_overrate_s = ps[i_ps, P_OVERRATE_S, p]
                overrate = ps[i_ps, P_OVERRATE_SEEN, p] != 0.0
                if any_recovery:
                    only = recovery_only[p]
                    overrate = only and current > recovery_limit_a_s
                    if overrate:
                        new_overrate_s = ps[i_ps, P_OVERRATE_S, p] + (
                            brain_dt if ps[i_ps, P_OVERRATE_SEEN, p] != 0.0 else 0.0
                        )
                    else:
                        new_overrate_s = 0.0
                    blocked = (recovery_blocked[p] or (only and new_overrate_s >= 1.0)) and only and charger
                    if stop == 0 and blocked != recovery_blocked[p]:
                        stop = _FETS
                    if only and blocked:
                        charge_blocked = True
                charge_cmd = not charge_blocked and not sleeping[p] and not operator_charge_off[p]
                discharge_cmd = (
                    lane[L_DISCHARGE_BLOCKED][p] == 0.0 and not sleeping[p] and not operator_discharge_off[p]
                )
                if stop == 0 and (charge_cmd != brain_charge_fet[p] or discharge_cmd != brain_discharge_fet[p]):
                    stop = _FETS
                # ---- SocEstimator.update
                ah = current * brain_dt / 3600.0
                wh = ah * sum_v[p]
                near_full = max_v[p] >= full_cell_v_s and current > 0.0 and current < full_tail_a_s
                new_full_timer = ps[i_ps, P_FULL_TIMER_S, p] + brain_dt if near_full else 0.0
                if stop == 0 and new_full_timer >= full_hold_s_s and ps[i_ps, P_FULL_DONE, p] == 0.0:
                    stop = _FULL
                resting = abs(current) < rest_a
                new_soc_rest = ps[i_ps, P_SOC_REST_S, p] + brain_dt if resting else 0.0
                if stop == 0 and new_soc_rest >= ocv_rest_s_s and new_soc_rest - brain_dt < ocv_rest_s_s:
                    stop = _OCV
                # ---- CellHealthLearner.observe_rest
                new_health_rest = ps[i_ps, P_HEALTH_REST_S, p] + brain_dt if resting else 0.0
                interval = learn_interval_s_s
                if (
                    stop == 0
                    and resting
                    and _floor_div(new_health_rest, interval) > _floor_div(new_health_rest - brain_dt, interval)
                ):
                    stop = _REST
                # ---- outputs.update_balancing (the mask itself is compared per cell below)
                new_out = ps[i_ps, P_OUT_SINCE_TOP_AH, p]
                new_after_top = ps[i_ps, P_AFTER_TOP, p] != 0.0
                ok_bal = False
                if balancing_enabled:
                    current_c = current / capacity_ah
                    topping = (current_c > 0 and max_v[p] >= bal_min_cell_v_s) or lane[L_FULL_FAULT][p] != 0.0
                    out_ah = -current * brain_dt / 3600.0
                    new_out = 0.0 if topping else max(ps[i_ps, P_OUT_SINCE_TOP_AH, p] + out_ah, 0.0)
                    ended = new_out > bal_top_out_ah_s
                    new_after_top = (new_after_top or topping) and not ended
                    allowed = lane[L_STOPPING][p] == 0.0 and not sleeping[p] and new_after_top
                    rest_c = abs(current_c) < rest_c_s
                    topping_now = current_c > 0 and max_v[p] >= bal_min_cell_v_s
                    cool = max_t[p] <= bal_max_t_s
                    ok_bal = (rest_c or topping_now) and cool and allowed
                lane[L_OK_BAL][p] = 1.0 if ok_bal else 0.0
                if stop != 0 and stop_code[p] == 0.0:
                    stop_code[p] = stop
                # ---- the next copy of the pack's state
                stored = current * eta if current > 0.0 else current
                ps[n_ps, P_OVERRATE_S, p] = new_overrate_s
                ps[n_ps, P_OVERRATE_SEEN, p] = 1.0 if overrate else 0.0
                ps[n_ps, P_CHARGING_S, p] = new_charging_s
                ps[n_ps, P_SLEEP_TIMER_S, p] = new_sleep_timer
                ps[n_ps, P_SLEEP_SEEN, p] = 1.0 if asleep_soon else 0.0
                ps[n_ps, P_CHARGER_AWAY_S, p] = 0.0 if charger else ps[i_ps, P_CHARGER_AWAY_S, p] + brain_dt
                ps[n_ps, P_CHARGER_WAS, p] = 1.0 if charger else 0.0
                ps[n_ps, P_CHARGE_AH, p] = ps[i_ps, P_CHARGE_AH, p] + max(ah, 0.0)
                discharge_ah = ps[i_ps, P_DISCHARGE_AH, p] + max(-ah, 0.0)
                ps[n_ps, P_DISCHARGE_AH, p] = discharge_ah
                ps[n_ps, P_CHARGE_WH, p] = ps[i_ps, P_CHARGE_WH, p] + max(wh, 0.0)
                ps[n_ps, P_DISCHARGE_WH, p] = ps[i_ps, P_DISCHARGE_WH, p] + max(-wh, 0.0)
                ps[n_ps, P_CYCLES, p] = discharge_ah / capacity_ah_s
                ps[n_ps, P_AH_SINCE_FULL, p] = ps[i_ps, P_AH_SINCE_FULL, p] - ah
                ps[n_ps, P_FULL_TIMER_S, p] = new_full_timer
                ps[n_ps, P_FULL_DONE, p] = 1.0 if (ps[i_ps, P_FULL_DONE, p] != 0.0 and current > -rest_a) else 0.0
                ps[n_ps, P_SOC_REST_S, p] = new_soc_rest
                ps[n_ps, P_HEALTH_REST_S, p] = new_health_rest
                ps[n_ps, P_OUT_SINCE_TOP_AH, p] = new_out
                ps[n_ps, P_AFTER_TOP, p] = 1.0 if new_after_top else 0.0
                resting_row[p] = 1.0 if resting else 0.0
                # the group SOC's common term, kept for the per-cell loop below
                charging_row[p] = stored - (asleep_a_s if sleeping[p] else awake_a_s)
            # ---- the balancing mask, the SOC per group (outputs.update_balancing, SocEstimator.update)
            threshold = bal_threshold_v_s
            soc_was = ss[2 * S_GROUP_SOC + i_ss]
            soc_now = ss[2 * S_GROUP_SOC + n_ss]
            _group_soc(
                p0, p1, series, brain_dt, balancing_enabled, any_brain_balance, threshold, bleed_ohm_s, m_v, min_v,
                brain_balance, lane[L_OK_BAL], charging_row, soc_capacity_ah, soc_was, soc_now, stop_code,
            )  # fmt: skip
            for p in range(u0, u1):
                if stop_code[p] != 0.0:
                    any_stop = True
        # ================================================================ the cycle's verdict
        if any_scd or any_stop:
            reason = _SHORT
            first = pa
            if not any_scd:
                for p in range(pa, pb):
                    if stop_code[p] != 0.0:
                        first = p
                        reason = int(stop_code[p])
                        break
            out[0], out[1], out[2], out[3] = c + 1, rows, reason, first
            return HANDOFF
        if handoff_at_end and c == cycles - 1:  # a window's rerun ends where another block stopped
            out[0], out[1], out[2], out[3] = c + 1, rows, 0, pa
            return HANDOFF
        # ---- nothing discrete in any pack: the next copies become current
        if not trip_on and any_condition:  # timers start: the seen flags are the conditions
            for j in range(n_prot):
                for p in range(pa, pb):
                    condition = enabled[j] and sign[j] * (val_now[j, p] - trip[j]) >= 0.0
                    tt_was[j, p] = 0.0
                    ts_was[j, p] = 1.0 if condition else 0.0
        if not warn_on and any_warn:
            for j in range(n_prot):
                for p in range(pa, pb):
                    w_on = enabled[j] and sign[j] * (val_now[j, p] - warn[j]) >= 0.0
                    wt_was[j, p] = 0.0
                    ws_was[j, p] = 1.0 if w_on else 0.0
                    wg_was[j, p] = 0.0
        cur[G_SERIES] = n_ss
        cur[G_PACK] = n_ps
        cur[G_VALUES] = n_val
        if trip_on:
            cur[G_TRIP] = n_tr
        if any_active:
            cur[G_RELEASE] = n_rl
        if warn_on:
            cur[G_WARN] = n_wn
        # protections.running_after: a timer counting or a condition seen (or a warning up).
        trip_running = False
        warn_running = False
        if trip_on or any_condition:
            t_timer, t_seen = tr[cur[G_TRIP]], tr[2 + cur[G_TRIP]]
            for j in range(n_prot):
                for p in range(pa, pb):
                    if t_timer[j, p] != 0.0 or t_seen[j, p] != 0.0:
                        trip_running = True
        if warn_on or any_warn:
            w_timer, w_seen = wn[cur[G_WARN]], wn[2 + cur[G_WARN]]
            for j in range(n_prot):
                for p in range(pa, pb):
                    if w_timer[j, p] != 0.0 or w_seen[j, p] != 0.0 or warning_active[j, p]:
                        warn_running = True
        else:
            for j in range(n_prot):
                for p in range(pa, pb):
                    if warning_active[j, p]:
                        warn_running = True
        running[0] = trip_running
        running[1] = warn_running
        # ---- CellHealthLearner: out of rest the reference is forgotten; at rest the bleed is counted
        readings = ss[2 * S_LAST_V + n_ss]
        for p in range(pa, pb):
            if resting_row[p] == 0.0:
                if lane[L_HEALTH_CLEAR][p] == 0.0:
                    for g in range(series):
                        reference_soc[g, p] = np.nan
                        bled_ah[g, p] = 0.0
                    intervals[p] = 0.0
                    lane[L_HEALTH_CLEAR][p] = 1.0
            elif any_brain_balance:
                lane[L_HEALTH_CLEAR][p] = 0.0
                for g in range(series):
                    bleed_a = 0.0
                    if brain_balance[g, p]:
                        bleed_a = max(readings[g, p], 0.0) / bleed_ohm_s
                    bled_ah[g, p] += bleed_a * brain_dt / 3600.0
        # ---- Twin._apply: the board drives the FETs as commanded; a stuck FET conducts
        for p in range(pa, pb):
            charge_fet[p] = brain_charge_fet[p] or fet_stuck_charge[p]
            discharge_fet[p] = brain_discharge_fet[p] or fet_stuck_discharge[p]
        previous_t = t_s
        # ---- the runner's telemetry (pack 0)
        if t_s + 1e-9 >= record_next[0]:
            row = telemetry[rows]
            row[0] = t_s
            row[1] = pack_v[0]
            row[2] = pack_current[0]
            gs = ss[2 * S_GROUP_SOC + n_ss]
            low = gs[0, 0]
            high = gs[0, 0]
            for g in range(1, series):
                low = min(low, gs[g, 0])
                high = max(high, gs[g, 0])
            low = min(max(low, 0.0), 1.0)
            high = min(max(high, 0.0), 1.0)
            row[3] = min(max(low / max(1.0 - high + low, 1e-9), 0.0), 1.0)
            row[4] = telemetry_state
            row[5] = 1.0 if charge_fet[0] else 0.0
            row[6] = 1.0 if discharge_fet[0] else 0.0
            for g in range(series):
                row[7 + g] = cell_v[g, 0]
                row[7 + series + g] = temperature[g, 0]
            rows += 1
            record_next[0] = t_s + record_every_s_s - 1e-9
            if rows == rows_cap:
                out[0], out[1], out[2], out[3] = c + 1, rows, 0, 0
                return TELEMETRY_FULL
        # ---- Bms._mark_dirty: the memory's save
        if flags[B_SAVE_MATTERS]:
            pcur = cur[G_PACK]
            gs = ss[2 * S_GROUP_SOC + n_ss]
            for p in range(pa, pb):
                if t_s - last_save_s[p] >= save_interval_s_s:
                    last_save_s[p] = t_s
                    keep = saved[p]
                    keep[0] = t_s
                    keep[1] = ps[pcur, P_CHARGE_AH, p]
                    keep[2] = ps[pcur, P_DISCHARGE_AH, p]
                    keep[3] = ps[pcur, P_CHARGE_WH, p]
                    keep[4] = ps[pcur, P_DISCHARGE_WH, p]
                    keep[5] = ps[pcur, P_CYCLES, p]
                    for g in range(series):
                        keep[SAVED_COLUMNS_FIXED + g] = readings[g, p]
                        keep[SAVED_COLUMNS_FIXED + series + g] = gs[g, p]
    out[0], out[1], out[2], out[3] = cycles, rows, 0, 0
    return DONE


run_lanes._compiler._customize_flags = _no_aliasing


@njit(cache=True)
def draw_offsets(  # pragma: no cover - compiled
    rng: np.random.Generator,
    cycles: int,
    v_on: bool,
    t_on: bool,
    i_on: bool,
    high_cells: int,
    high_packs: int,
    out: npt.NDArray[np.int64],
) -> None:
    """Where the noise of each of the next ``cycles`` cycles starts in the AFE's pool, drawn from its
    generator in the order ``Twin._decide`` draws them (cell voltages, temperatures, current)."""
    for c in range(cycles):
        out[c, 0] = draw_below(rng, high_cells) if v_on else 0
        out[c, 1] = draw_below(rng, high_cells) if t_on else 0
        out[c, 2] = draw_below(rng, high_packs) if i_on else 0
