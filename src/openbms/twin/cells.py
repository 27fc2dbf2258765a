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
        self.soh = np.ones(shape)
        self.v_rc = np.zeros((len(params.rc),) + shape)
        self.rc_r_ohm = np.array([r for r, _ in params.rc])
        self.rc_tau_s = np.array([r * c for r, c in params.rc])
        self.temperature_c = np.full(shape, float(temperature_c))
        self.extra_leak_a = np.zeros(shape)  # internal shorts, balancing bleed (set by the pack)
        # R0 over SOC: row 0 discharge, row 1 charge, on a uniform grid.
        self._r0_table = params.r0_ohm * np.vstack(
            [
                np.interp(
                    np.linspace(0, 1, 101),
                    np.linspace(0, 1, params.r0_discharge_factor.size),
                    params.r0_discharge_factor,
                ),
                np.interp(
                    np.linspace(0, 1, 101),
                    np.linspace(0, 1, params.r0_charge_factor.size),
                    params.r0_charge_factor,
                ),
            ]
        )
        self._decay_dt_s = -1.0
        self._decay = np.ones(len(params.rc))

    # ------------------------------------------------------------------ views
    def ocv_v(self) -> FloatArray:
        return self.params.ocv.voltage_v(self.soc)

    def _decay_for(self, dt_s: float) -> FloatArray:
        if dt_s != self._decay_dt_s:
            self._decay = np.exp(-dt_s / self.rc_tau_s)
            self._decay_dt_s = dt_s
        return self._decay

    def resistance_factor(self) -> FloatArray:
        """Per-cell multiplier of every resistance: spread × temperature (Arrhenius)."""
        return self.resistance_scale * self.params.temperature_factor(self.temperature_c)

    def r0_ohm(self, charging: npt.NDArray[np.bool_], factor: FloatArray) -> FloatArray:
        index = np.rint(np.clip(self.soc, 0.0, 1.0) * 100).astype(np.intp)
        return self._r0_table[charging.astype(np.intp), index] * factor

    def thevenin(
        self, dt_s: float, charging: npt.NDArray[np.bool_]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Each cell as E + R·I over the next step: returns (E, R, R0).

        E holds the OCV now plus the decayed RC voltages; R the ohmic part plus what each RC pair
        charges to within the step, so the end-of-step voltage is exact for a constant current.
        """
        factor = self.resistance_factor()
        r0 = self.r0_ohm(charging, factor)
        decay = self._decay_for(dt_s)
        e = self.ocv_v()
        r = r0.copy()
        for k in range(self.v_rc.shape[0]):  # at most two RC pairs, never a loop over cells
            e = e + self.v_rc[k] * decay[k]
            r = r + self.rc_r_ohm[k] * factor * (1.0 - decay[k])
        return e, r, r0

    def advance(
        self, dt_s: float, current_a: FloatArray, r0_ohm: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Apply ``current_a`` (per cell, held for ``dt_s``); return (terminal voltage, heat in W)."""
        decay = self._decay_for(dt_s)
        factor = self.resistance_factor()
        eta = np.where(current_a > 0.0, self.params.coulombic_efficiency, 1.0)
        internal = current_a * eta - self.self_discharge_a - self.extra_leak_a
        self.soc = self.soc + internal * dt_s / (3600.0 * self.capacity_ah * self.soh)
        v_rc_sum = np.zeros(self.shape)
        heat_w = current_a * current_a * r0_ohm
        for k in range(self.v_rc.shape[0]):
            r_k = self.rc_r_ohm[k] * factor
            self.v_rc[k] = self.v_rc[k] * decay[k] + r_k * (1.0 - decay[k]) * current_a
            v_rc_sum = v_rc_sum + self.v_rc[k]
            heat_w = heat_w + self.v_rc[k] * self.v_rc[k] / r_k
        terminal_v = np.maximum(self.ocv_v() + r0_ohm * current_a + v_rc_sum, 0.0)
        return terminal_v, heat_w
