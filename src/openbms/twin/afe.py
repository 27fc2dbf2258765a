"""The analog front end: what the brain can know about the pack, with a real AFE's flaws.

It measures every series group's voltage, the pack current, the temperatures and the stack
voltage with configurable noise, offset and resolution, and it carries the AFE-side faults a user
can inject: a sensor stuck at a value or drifting, an open balance wire, erratic readings (a
glitch that lasts until the AFE loses power) and damage. The noise comes from the twin's own
seeded generator, so a run is reproducible.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from openbms.bms.interface import Measurements
from openbms.twin.board import Afe
from openbms.twin.pack import Pack, StepResult

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NOISE_POOL_SIZE = 1 << 20
GLITCH_PROBABILITY = 0.9  # share of cycles in which a glitching AFE returns a garbage reading
GLITCH_MAX_V = 6.0


def _quantise(x: FloatArray, step: float) -> FloatArray:
    return x if step <= 0 else np.round(x / step) * step


class AnalogFrontEnd:
    """Measurement noise is read from a pool of seeded Gaussian samples at a random offset each
    cycle: statistically white for a BMS's purposes and far cheaper than fresh draws for
    thousands of packs."""

    def __init__(self, settings: Afe, seed: int, packs: int, cells: int) -> None:
        self.settings = settings
        self.rng = np.random.default_rng(seed + 7919)
        self._pool = self.rng.standard_normal(NOISE_POOL_SIZE)
        # A stuck sensor reports its value whatever it is, NaN or infinity included (a broken
        # ADC may): the masks say which sensors are stuck, the values what they report.
        self.stuck_v = np.full((packs, cells), np.nan)
        self.stuck_t = np.full((packs, cells), np.nan)
        self.stuck_i = np.full(packs, np.nan)
        self.stuck_v_on = np.zeros((packs, cells), dtype=bool)
        self.stuck_t_on = np.zeros((packs, cells), dtype=bool)
        self.stuck_i_on = np.zeros(packs, dtype=bool)
        self.drift_v_per_h = np.zeros((packs, cells))
        self.drift_t_per_h = np.zeros((packs, cells))
        self.drift_i_per_h = np.zeros(packs)
        self.drift_offset_v = np.zeros((packs, cells))
        self.drift_offset_t = np.zeros((packs, cells))
        self.drift_offset_i = np.zeros(packs)
        self.open_wire = np.zeros((packs, cells), dtype=bool)
        self.glitch = np.zeros(packs, dtype=bool)
        self.damaged = np.zeros(packs, dtype=bool)
        self._any_fault = False

    def faults_changed(self) -> None:
        """Call after injecting or repairing a fault, so the fast path knows to apply them."""
        self._any_fault = bool(
            self.stuck_v_on.any()
            or self.stuck_t_on.any()
            or self.stuck_i_on.any()
            or self.drift_v_per_h.any()
            or self.drift_t_per_h.any()
            or self.drift_i_per_h.any()
            or self.drift_offset_v.any()
            or self.drift_offset_t.any()
            or self.drift_offset_i.any()
            or self.open_wire.any()
            or self.glitch.any()
        )

    def power_lost(self, packs: BoolArray) -> None:
        """An AFE that lost power forgets its glitch (docs/behaviour.md §2); damage stays."""
        self.glitch[packs] = False
        self.faults_changed()

    def _gaussian(self, shape: tuple[int, ...]) -> FloatArray:
        size = int(np.prod(shape))
        if size > NOISE_POOL_SIZE // 2:
            return self.rng.standard_normal(shape)
        start = int(self.rng.integers(0, NOISE_POOL_SIZE - size))
        return self._pool[start : start + size].reshape(shape)

    def _noisy(self, x: FloatArray, sd: float, offset: float, step: float) -> FloatArray:
        if sd > 0:
            x = x + sd * self._gaussian(x.shape)
        return _quantise(x + offset, step)

    def measure(
        self,
        pack: Pack,
        step: StepResult,
        dt_s: float,
        link_ok: BoolArray,
        reset_button: BoolArray,
        charger_present: BoolArray,
    ) -> Measurements:
        s = self.settings
        n = pack.packs
        true_v = pack.group_v
        cell_v = self._noisy(true_v, s.cell_v_noise_v, s.cell_v_offset_v, s.cell_v_resolution_v)
        cell_t = self._noisy(pack.group_temperature_c(), s.temperature_noise_c, 0.0, s.temperature_resolution_c)
        current = self._noisy(pack.current_a, s.current_noise_a, s.current_offset_a, s.current_resolution_a)
        if self._any_fault:
            cell_v, cell_t, current = self._faulty(true_v, cell_v, cell_t, current, dt_s)
        return Measurements(
            cell_v=cell_v,
            cell_t_c=cell_t,
            current_a=current,
            stack_v=_quantise(pack.pack_v, self.settings.stack_v_resolution_v),
            fet_t_c=_quantise(pack.fet_t_c, s.temperature_resolution_c),
            afe_ok=np.ones(n, dtype=bool),
            afe_damaged=self.damaged.copy(),
            short_circuit_tripped=step.short_circuit_tripped,
            short_circuit_at_s=step.short_circuit_at_s,
            short_circuit_peak_a=step.short_circuit_peak_a,
            charger_present=charger_present,
            load_present=pack.external.load_connected(),
            link_ok=link_ok,
            reset_button=reset_button,
        )

    def _faulty(
        self, true_v: FloatArray, cell_v: FloatArray, cell_t: FloatArray, current: FloatArray, dt_s: float
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        hours = dt_s / 3600.0
        self.drift_offset_v += self.drift_v_per_h * hours
        self.drift_offset_t += self.drift_t_per_h * hours
        self.drift_offset_i += self.drift_i_per_h * hours
        cell_v = cell_v + self.drift_offset_v
        cell_t = cell_t + self.drift_offset_t
        current = current + self.drift_offset_i
        if self.open_wire.any():
            # An open tap between group k and k+1: k reads nothing, k+1 reads both groups.
            pack_idx, cell_idx = np.nonzero(self.open_wire)
            last = cell_v.shape[1] - 1
            cell_v = cell_v.copy()
            for p, k in zip(pack_idx, cell_idx, strict=True):
                if k < last:
                    cell_v[p, k + 1] += true_v[p, k]
                cell_v[p, k] = 0.0
        cell_v = np.where(self.stuck_v_on, self.stuck_v, cell_v)
        cell_t = np.where(self.stuck_t_on, self.stuck_t, cell_t)
        current = np.where(self.stuck_i_on, self.stuck_i, current)
        if self.glitch.any():
            erratic = self.glitch & (self.rng.random(self.glitch.shape) < GLITCH_PROBABILITY)
            if erratic.any():
                cell_v = cell_v.copy()
                cells = np.asarray(self.rng.integers(0, cell_v.shape[1], size=cell_v.shape[0]))
                # Clearly false readings: far below any live cell, or beyond any cell's range.
                low = self.rng.uniform(0.0, 1.5, size=cell_v.shape[0])
                high = self.rng.uniform(4.6, GLITCH_MAX_V, size=cell_v.shape[0])
                garbage = np.where(self.rng.random(cell_v.shape[0]) < 0.5, low, high)
                rows = np.nonzero(erratic)[0]
                cell_v[rows, cells[rows]] = garbage[rows]
        return cell_v, cell_t, current
