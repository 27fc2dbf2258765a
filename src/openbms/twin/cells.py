"""The cells: a batch of equivalent-circuit models, arrays shaped (packs, cells).

Each cell is OCV(SOC) + R0 + one or two RC pairs. The RC pairs use the exact discretisation
v ← v·exp(−dt/τ) + R·(1 − exp(−dt/τ))·I for a current held over the step, so the model is exact
for piecewise-constant current and stable for any step. Current is positive when charging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from openbms.chemistry import CellParams

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Spread:
    """Cell-to-cell manufacturing spread (relative standard deviations), reproducible by seed."""

    capacity: float = 0.0
    resistance: float = 0.0
    soc: float = 0.0
    self_discharge: float = 0.0
    seed: int = 0


_R0_POINTS = 101
R0_POINTS = _R0_POINTS  # the R0 table's SOC grid size, for a compiled twin that reads the same table


def r0_table_ohm(params: CellParams) -> FloatArray:
    """R0 over SOC on a uniform 101-point grid: discharge row first, then charge, flattened.

    Flattened so that one gather picks both the SOC point and the current direction
    (``index + charging * R0_POINTS``); a pure function so the compiled fast path
    (``openbms.fast``) looks up exactly the table the reference does.
    """
    grid = np.linspace(0, 1, _R0_POINTS)
    return params.r0_ohm * np.concatenate(
        [
            np.interp(grid, np.linspace(0, 1, params.r0_discharge_factor.size), params.r0_discharge_factor),
            np.interp(grid, np.linspace(0, 1, params.r0_charge_factor.size), params.r0_charge_factor),
        ]
    )


class CellBank:
    """State and per-cell parameters of every cell in a batch of packs."""

    def __init__(
        self,
        params: CellParams,
        packs: int,
        cells: int,
        soc: float | FloatArray,
        temperature_c: float,
        spread: Spread,
    ) -> None:
        rng = np.random.default_rng(spread.seed)
        shape = (packs, cells)
        self.params = params
        self.shape = shape

        def varied(rel_sd: float) -> FloatArray:
            if rel_sd == 0.0:
                return np.ones(shape)
            return np.clip(1.0 + rel_sd * rng.standard_normal(shape), 0.5, 1.5)

        self.capacity_ah = params.capacity_ah * varied(spread.capacity)
        self.resistance_scale = varied(spread.resistance)
        soc_offset = spread.soc * rng.standard_normal(shape) if spread.soc else np.zeros(shape)
        self.soc = np.clip(np.broadcast_to(np.asarray(soc, dtype=float), shape) + soc_offset, 0.0, 1.0)
        self.self_discharge_a = (
            params.self_discharge_per_day * params.capacity_ah / 24.0 * varied(spread.self_discharge)
        )
        self._soh = np.ones(shape)
        self.v_rc = np.zeros((len(params.rc),) + shape)
        self.rc_r_ohm = np.array([r for r, _ in params.rc])
        self.rc_tau_s = np.array([r * c for r, c in params.rc])
        self.temperature_c = np.full(shape, float(temperature_c))
        self.extra_leak_a = np.zeros(shape)  # internal shorts, balancing bleed (set by the pack)
        self._r0_flat = r0_table_ohm(params)
        self._factor = self.resistance_scale.copy()
        self._ocv = params.ocv.voltage_v(self.soc)
        self._refresh_capacity()
        self._decay_dt_s = -1.0
        self._decay = np.ones(len(params.rc))

    # ------------------------------------------------------------------ state changes from outside
    @property
    def soh(self) -> FloatArray:
        return self._soh

    def set_soh(self, soh: FloatArray) -> None:
        self._soh = np.asarray(soh, dtype=float)
        self._refresh_capacity()

    def set_soc(self, soc: FloatArray) -> None:
        """Change SOC from outside the time step (a replaced cell): keeps the OCV cache true."""
        self.soc = np.asarray(soc, dtype=float)
        self._ocv = self.params.ocv.voltage_v(self.soc)

    def _refresh_capacity(self) -> None:
        self._soc_per_coulomb = 1.0 / (3600.0 * self.capacity_ah * self._soh)

    # ------------------------------------------------------------------ views
    def ocv_v(self) -> FloatArray:
        """OCV at the present SOC (cached: computed once per step)."""
        return self._ocv

    def _decay_for(self, dt_s: float) -> FloatArray:
        if dt_s != self._decay_dt_s:
            self._decay = np.exp(-dt_s / self.rc_tau_s)
            self._decay_dt_s = dt_s
        return self._decay

    def thevenin(self, dt_s: float, charging: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Each cell as E + R·I over the next step: returns (E, R, R0).

        E holds the OCV now plus the decayed RC voltages; R the ohmic part plus what each RC pair
        charges to within the step, so the end-of-step voltage is exact for a constant current.
        ``charging`` (per pack) picks the charge or discharge resistance table.
        """
        factor = self.resistance_scale * self.params.temperature_factor(self.temperature_c)
        self._factor = factor
        index = (np.clip(self.soc, 0.0, 1.0) * (_R0_POINTS - 1) + 0.5).astype(np.intp)
        index += (charging * _R0_POINTS)[:, None]
        r0 = self._r0_flat[index]
        r0 *= factor
        decay = self._decay_for(dt_s)
        e = self._ocv.copy()
        r = r0.copy()
        for k in range(self.v_rc.shape[0]):  # at most two RC pairs, never a loop over cells
            e += self.v_rc[k] * decay[k]
            r += factor * (self.rc_r_ohm[k] * (1.0 - decay[k]))
        return e, r, r0

    def advance(self, dt_s: float, current_a: FloatArray, r0_ohm: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Apply ``current_a`` (per cell, held for ``dt_s``); return (terminal voltage, heat in W).

        Call ``thevenin`` first in the same step: it sets the resistance factor used here.
        """
        decay = self._decay_for(dt_s)
        factor = self._factor
        eta = self.params.coulombic_efficiency
        internal = np.where(current_a > 0.0, current_a * eta, current_a)
        internal -= self.self_discharge_a
        internal -= self.extra_leak_a
        internal *= dt_s * self._soc_per_coulomb
        self.soc = self.soc + internal
        heat_w = current_a * current_a * r0_ohm
        terminal_v = r0_ohm * current_a
        for k in range(self.v_rc.shape[0]):
            r_k = self.rc_r_ohm[k] * factor
            v_k = self.v_rc[k] * decay[k] + r_k * ((1.0 - decay[k]) * current_a)
            self.v_rc[k] = v_k
            terminal_v += v_k
            heat_w += v_k * v_k / r_k
        self._ocv = self.params.ocv.voltage_v(self.soc)
        terminal_v += self._ocv
        np.maximum(terminal_v, 0.0, out=terminal_v)
        return terminal_v, heat_w
