"""The analog front end: what the brain can know about the pack, with a real AFE's flaws.

It measures every series group's voltage, the pack current, the temperatures and the stack
voltage with configurable noise, offset and resolution. The noise comes from the twin's own
seeded generator, so a run is reproducible.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from openbms.bms.interface import Measurements
from openbms.bms.profile import Afe
from openbms.twin.pack import Pack, StepResult

FloatArray = npt.NDArray[np.float64]


def _quantise(x: FloatArray, step: float) -> FloatArray:
    return x if step <= 0 else np.round(x / step) * step


NOISE_POOL_SIZE = 1 << 20


class AnalogFrontEnd:
    """Measurement noise is read from a pool of seeded Gaussian samples at a random offset each
    cycle: statistically white for a BMS's purposes and far cheaper than fresh draws for
    thousands of packs."""

    def __init__(self, settings: Afe, seed: int) -> None:
        self.settings = settings
        self.rng = np.random.default_rng(seed + 7919)
        self._pool = self.rng.standard_normal(NOISE_POOL_SIZE)

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

    def measure(self, pack: Pack, step: StepResult) -> Measurements:
        s = self.settings
        n = pack.packs
        ext = pack.external
        return Measurements(
            cell_v=self._noisy(pack.group_v, s.cell_v_noise_v, s.cell_v_offset_v, s.cell_v_resolution_v),
            cell_t_c=self._noisy(
                pack.group_temperature_c(), s.temperature_noise_c, 0.0, s.temperature_resolution_c
            ),
            current_a=self._noisy(
                pack.current_a, s.current_noise_a, s.current_offset_a, s.current_resolution_a
            ),
            stack_v=_quantise(pack.pack_v, 0.01),
            fet_t_c=_quantise(pack.fet_t_c, s.temperature_resolution_c),
            afe_ok=np.ones(n, dtype=bool),
            short_circuit_tripped=step.short_circuit_tripped,
            short_circuit_at_s=step.short_circuit_at_s,
            short_circuit_peak_a=step.short_circuit_peak_a,
            charger_present=ext.charger_outputs(pack.terminal_visible_v())
            | (ext.charger_connected & (ext.charger_min_battery_v <= 0)),
            load_present=ext.load_connected(),
            link_ok=np.ones(n, dtype=bool),
        )
