"""The twin's cell physics as one compiled kernel: many steps per call, every pack, every cell.

Why: ``Pack.advance`` is vectorised over cells but pays NumPy's per-call overhead (dozens of small
array operations) on every step, which dominates for one pack and still costs for a fleet. This
kernel runs the same arithmetic as ``CellBank.thevenin`` + ``CellBank.advance`` +
``Pack._advance_thermal`` in plain loops, packs outermost so one pack's state stays in cache
for all its steps, and takes a whole current profile per call so Python is entered once.

What it covers is what ``Pack.advance`` does when the pack terminal current is imposed (a
current profile, both FETs closed, no short-circuit trip): 2-RC Thevenin cells with the OCV table
look-up and its extrapolation, R0 over SOC for charge and discharge (chosen, as in the reference,
by the sign of the previous step's current), the Arrhenius temperature factor, coulombic
efficiency, self-discharge, a constant per-cell drain (the BMS board's supply), the lumped
thermal model with neighbour conduction, the FET temperature, and parallel groups sharing their
group voltage. Balancing bleed and internal shorts depend on the cell voltage of the step before
and are refused by ``params_from_pack`` rather than silently dropped.

Arithmetic is reproduced operation by operation (same associativity, constants computed the same
way in NumPy before the call) so the differential test holds the two within 1e-9; what still
differs is the last bit of ``exp`` (libm against NumPy's own) and NumPy's pairwise sums, both far
below that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from openbms.chemistry.cells import _KELVIN, SOC_SPAN_TO_ZERO_VOLT
from openbms.twin.cells import R0_POINTS, r0_table_ohm
from openbms.twin.pack import NEIGHBOUR_CONDUCTANCE_FRACTION, Pack

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class KernelParams:
    """Everything constant over a kernel call, as contiguous float64 arrays shaped (packs, cells).

    Built from a ``Pack`` by ``params_from_pack`` so the kernel reads exactly the numbers the
    reference does (spread, state of health and cooling factors included).
    """

    series: int
    parallel: int
    ocv_v: FloatArray  # the chemistry's uniform OCV table
    ocv_slope: FloatArray  # its forward differences, last entry 0 (as OcvTable keeps them)
    r0_table_ohm: FloatArray  # (2 * R0_POINTS,): discharge row, then charge row
    rc_r_ohm: FloatArray  # (rc pairs,)
    rc_tau_s: FloatArray  # (rc pairs,)
    arrhenius_k: float
    inverse_reference_k: float  # 1 / (reference temperature in K), computed as the reference does
    coulombic_efficiency: float
    resistance_scale: FloatArray
    soc_per_coulomb: FloatArray
    self_discharge_a: FloatArray
    drain_a: FloatArray  # constant current leaving each cell inside the pack (board supply)
    thermal_mass_j_per_k: FloatArray
    cooling_w_per_k: FloatArray  # to ambient, cooling factor applied
    neighbour_w_per_k: float
    ambient_c: FloatArray  # (packs,)
    fet_r_ohm: float  # both FETs in series
    fet_thermal_mass_j_per_k: float
    fet_cooling_w_per_k: float

    @property
    def shape(self) -> tuple[int, int]:
        packs, cells = self.resistance_scale.shape
        return packs, cells


@dataclass(frozen=True)
class KernelState:
    """What changes from step to step; ``current_a`` is the last step's pack current, because
    the reference picks the charge or discharge R0 row by its sign."""

    soc: FloatArray  # (packs, cells)
    v_rc: FloatArray  # (rc pairs, packs, cells)
    temperature_c: FloatArray  # (packs, cells)
    fet_t_c: FloatArray  # (packs,)
    current_a: FloatArray  # (packs,)

    def copy(self) -> KernelState:
        """A contiguous float64 copy: the kernel writes its state in place and never into yours."""
        return KernelState(*(np.array(a, dtype=np.float64, order="C", copy=True) for a in self.arrays()))

    def arrays(self) -> tuple[FloatArray, ...]:
        """The five arrays in field order (for copying and comparing)."""
        return (self.soc, self.v_rc, self.temperature_c, self.fet_t_c, self.current_a)


def _f64(x: npt.ArrayLike, shape: tuple[int, ...]) -> FloatArray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(x, dtype=np.float64), shape))


def params_from_pack(pack: Pack) -> KernelParams:
    """The kernel's constants for ``pack`` as it stands now (its cells, board and surroundings).

    Refuses what the kernel does not model yet rather than dropping it: active balancing and
    internal shorts, whose drain follows the previous step's cell voltage.
    """
    if pack.balance.any():
        raise ValueError("the fast physics kernel does not model balancing bleed yet: switch balancing off")
    if np.isfinite(pack.internal_short_ohm).any():
        raise ValueError("the fast physics kernel does not model internal shorts yet")
    cells = pack.cells
    params = cells.params
    shape = cells.shape
    table = np.ascontiguousarray(params.ocv.ocv_v, dtype=np.float64)
    fet = pack.board.fet
    return KernelParams(
        series=pack.topology.series,
        parallel=pack.topology.parallel,
        ocv_v=table,
        ocv_slope=np.append(np.diff(table), 0.0),
        r0_table_ohm=np.ascontiguousarray(r0_table_ohm(params)),
        rc_r_ohm=_f64(cells.rc_r_ohm, cells.rc_r_ohm.shape),
        rc_tau_s=_f64(cells.rc_tau_s, cells.rc_tau_s.shape),
        arrhenius_k=float(params.arrhenius_k),
        inverse_reference_k=1.0 / (params.reference_temperature_c + _KELVIN),
        coulombic_efficiency=float(params.coulombic_efficiency),
        resistance_scale=_f64(cells.resistance_scale, shape),
        soc_per_coulomb=_f64(1.0 / (3600.0 * cells.capacity_ah * cells.soh), shape),
        self_discharge_a=_f64(cells.self_discharge_a, shape),
        drain_a=_f64((pack.supply_draw_a / pack.topology.parallel)[:, None], shape),
        thermal_mass_j_per_k=_f64(params.thermal_mass_j_per_k * cells.capacity_ah / params.capacity_ah, shape),
        cooling_w_per_k=_f64(params.cooling_w_per_k * pack.cooling_factor, shape),
        neighbour_w_per_k=NEIGHBOUR_CONDUCTANCE_FRACTION * params.cooling_w_per_k,
        ambient_c=_f64(pack.ambient_c, (pack.packs,)),
        fet_r_ohm=2.0 * fet.on_resistance_ohm,
        fet_thermal_mass_j_per_k=float(fet.thermal_mass_j_per_k),
        fet_cooling_w_per_k=float(fet.cooling_w_per_k),
    )


def state_from_pack(pack: Pack) -> KernelState:
    """The kernel's starting state: a copy of ``pack``'s, so the two can run side by side."""
    cells = pack.cells
    return KernelState(
        soc=_f64(cells.soc, cells.shape),
        v_rc=_f64(cells.v_rc, cells.v_rc.shape),
        temperature_c=_f64(cells.temperature_c, cells.shape),
        fet_t_c=_f64(pack.fet_t_c, (pack.packs,)),
        current_a=_f64(pack.current_a, (pack.packs,)),
    ).copy()


def advance_many(
    params: KernelParams, state: KernelState, current_a: npt.ArrayLike, dt_s: float
) -> tuple[KernelState, FloatArray]:
    """Advance every pack by ``len(current_a)`` steps of ``dt_s`` under the imposed currents.

    ``current_a`` is (steps, packs), or (steps,) for the same profile on every pack; positive
    charges. Returns the state after the last step (``state`` itself is left untouched) and the
    terminal voltage of every cell after every step, shaped (steps, packs, cells).
    """
    packs, cells = params.shape
    currents = np.asarray(current_a, dtype=np.float64)
    if currents.ndim == 1:
        currents = np.broadcast_to(currents[:, None], (currents.shape[0], packs))
    if currents.ndim != 2 or currents.shape[1] != packs:
        raise ValueError(f"current_a must be shaped (steps, {packs}) or (steps,), not {currents.shape}")
    if not np.all(np.isfinite(currents)):
        raise ValueError("current_a holds a value that is not a finite number")
    if not (math.isfinite(dt_s) and dt_s > 0.0):
        raise ValueError(f"dt_s must be a positive finite number of seconds, not {dt_s}")
    if params.series * params.parallel != cells:
        raise ValueError(f"{params.series}s{params.parallel}p does not make {cells} cells")
    # A fresh writable C array every time: a read-only or strided one is another numba type and
    # would compile a second specialisation inside the caller's timed run.
    currents = np.array(currents, dtype=np.float64, order="C")
    out = state.copy()
    if out.soc.shape != (packs, cells) or out.v_rc.shape != (params.rc_r_ohm.size, packs, cells):
        raise ValueError("the state does not match the parameters' packs, cells or RC pairs")
    # As CellBank._decay_for computes it, in NumPy, so the two share every bit of it.
    decay = np.exp(-dt_s / params.rc_tau_s)
    cell_v = np.empty((currents.shape[0], packs, cells))
    _advance_kernel(
        currents,
        float(dt_s),
        int(params.parallel),
        params.ocv_v,
        params.ocv_slope,
        params.r0_table_ohm,
        params.rc_r_ohm,
        decay,
        params.arrhenius_k,
        params.inverse_reference_k,
        params.coulombic_efficiency,
        params.resistance_scale,
        params.soc_per_coulomb,
        params.self_discharge_a,
        params.drain_a,
        params.thermal_mass_j_per_k,
        params.cooling_w_per_k,
        params.neighbour_w_per_k,
        params.ambient_c,
        params.fet_r_ohm,
        params.fet_thermal_mass_j_per_k,
        params.fet_cooling_w_per_k,
        out.soc,
        out.v_rc,
        out.temperature_c,
        out.fet_t_c,
        out.current_a,
        cell_v,
    )
    return out, cell_v


# ---------------------------------------------------------------------------------- the kernel
# Each line names the reference line it reproduces; keep them in step when the physics changes
# (the differential test in tests/fast fails otherwise).


@njit(cache=True)
def _ocv(table: FloatArray, slope: FloatArray, soc: float) -> float:  # pragma: no cover - compiled
    """OcvTable.voltage_v for one SOC, extrapolations included."""
    last = table.size - 1
    if soc < 0.0:
        return table[0] * min(max(1.0 + soc / SOC_SPAN_TO_ZERO_VOLT, 0.0), 1.0)
    if soc > 1.0:
        return table[last] + (soc - 1.0) * ((table[last] - table[last - 1]) * last)
    x = soc * last
    index = int(x)
    if index > last - 1:
        index = last - 1
    x -= index
    return table[index] + x * slope[index]


@njit(cache=True)
def _advance_kernel(  # pragma: no cover - compiled; flat arguments are what numba compiles best
    currents: FloatArray,
    dt_s: float,
    parallel: int,
    ocv_table: FloatArray,
    ocv_slope: FloatArray,
    r0_table: FloatArray,
    rc_r: FloatArray,
    decay: FloatArray,
    arrhenius_k: float,
    inverse_reference_k: float,
    eta: float,
    resistance_scale: FloatArray,
    soc_per_coulomb: FloatArray,
    self_discharge: FloatArray,
    drain: FloatArray,
    mass: FloatArray,
    cooling: FloatArray,
    neighbour: float,
    ambient: FloatArray,
    fet_r: float,
    fet_mass: float,
    fet_cooling: float,
    soc: FloatArray,
    v_rc: FloatArray,
    temperature: FloatArray,
    fet_t: FloatArray,
    last_current: FloatArray,
    cell_v: FloatArray,
) -> None:
    steps, packs = currents.shape
    cells = soc.shape[1]
    pairs = rc_r.size
    series = cells // parallel
    has_neighbours = cells > 1
    factor = np.empty(cells)
    r0 = np.empty(cells)
    cell_i = np.empty(cells)
    heat = np.empty(cells)
    e = np.empty(cells)
    r = np.empty(cells)
    ocv = np.empty(cells)
    t_new = np.empty(cells)
    for p in range(packs):
        for c in range(cells):
            ocv[c] = _ocv(ocv_table, ocv_slope, soc[p, c])  # CellBank._ocv, kept from step to step
        previous = last_current[p]
        for step in range(steps):
            current = currents[step, p]
            charging_row = R0_POINTS if previous > 0.0 else 0  # thevenin(dt, self.current_a > 0)
            # ---- CellBank.thevenin
            for c in range(cells):
                t = temperature[p, c]
                if arrhenius_k == 0.0:
                    temperature_factor = 1.0
                else:
                    t_k = max(t + _KELVIN, 200.0)
                    temperature_factor = math.exp(arrhenius_k * (1.0 / t_k - inverse_reference_k))
                f = resistance_scale[p, c] * temperature_factor
                factor[c] = f
                s = min(max(soc[p, c], 0.0), 1.0)
                index = int(s * (R0_POINTS - 1) + 0.5) + charging_row
                r0[c] = r0_table[index] * f
            # ---- Pack.advance: the cell currents
            if parallel == 1:
                for c in range(cells):
                    cell_i[c] = current
            else:
                for c in range(cells):
                    e_c = ocv[c]
                    r_c = r0[c]
                    for k in range(pairs):
                        e_c += v_rc[k, p, c] * decay[k]
                        r_c += factor[c] * (rc_r[k] * (1.0 - decay[k]))
                    e[c] = e_c
                    r[c] = r_c
                for g in range(series):
                    first = g * parallel
                    g_sum = 0.0
                    ge_sum = 0.0
                    for j in range(first, first + parallel):
                        conductance = 1.0 / r[j]
                        g_sum += conductance
                        ge_sum += e[j] * conductance
                    r_group = 1.0 / g_sum
                    e_group = ge_sum * r_group
                    v_group = e_group + r_group * current
                    for j in range(first, first + parallel):
                        cell_i[j] = (v_group - e[j]) / r[j]
            # ---- CellBank.advance
            for c in range(cells):
                i = cell_i[c]
                internal = i * eta if i > 0.0 else i
                internal -= self_discharge[p, c]
                internal -= drain[p, c]
                internal *= dt_s * soc_per_coulomb[p, c]
                soc_c = soc[p, c] + internal
                soc[p, c] = soc_c
                r0_c = r0[c]
                heat_c = i * i * r0_c
                terminal = r0_c * i
                f = factor[c]
                for k in range(pairs):
                    r_k = rc_r[k] * f
                    v_k = v_rc[k, p, c] * decay[k] + r_k * ((1.0 - decay[k]) * i)
                    v_rc[k, p, c] = v_k
                    terminal += v_k
                    heat_c += v_k * v_k / r_k
                ocv_c = _ocv(ocv_table, ocv_slope, soc_c)
                ocv[c] = ocv_c
                terminal += ocv_c
                if terminal < 0.0:  # np.maximum(terminal_v, 0.0)
                    terminal = 0.0
                cell_v[step, p, c] = terminal
                heat[c] = heat_c
            # ---- Pack._advance_thermal
            amb = ambient[p]
            for c in range(cells):
                t = temperature[p, c]
                h = cooling[p, c]
                a = dt_s / mass[p, c]
                if has_neighbours:
                    left = temperature[p, c - 1] if c > 0 else t
                    right = temperature[p, c + 1] if c < cells - 1 else t
                    t_new[c] = (t + a * (heat[c] + h * amb + neighbour * (left + right))) / (
                        1.0 + a * (h + 2.0 * neighbour)
                    )
                else:
                    t_new[c] = (t + a * (heat[c] + h * amb)) / (1.0 + a * h)
            for c in range(cells):
                temperature[p, c] = t_new[c]
            b = dt_s / fet_mass
            fet_heat = current * current * fet_r
            fet_t[p] = (fet_t[p] + b * (fet_heat + fet_cooling * amb)) / (1.0 + b * fet_cooling)
            previous = current  # self.current_a = where(scd, 0, current): no trip here
        last_current[p] = previous
