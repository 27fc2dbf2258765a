"""Learning a failing cell (``cell_failure``): one that loses charge on its own, or holds too little.

A cell with an internal short falls further and further behind the others at rest; a cell that
has lost much of its capacity reaches the cut-off long before the pack has delivered what it
should. Both are learned from the data over time; neither can be fixed by a reset.

The rest learner compares like with like (docs/behaviour.md §6). A voltage drop means very different things on
the steep top of the OCV curve (a few mAh) and on its flat middle (many Ah), so every cell's rest
voltage is turned into charge through the OCV curve, the charge the BMS itself took out of that
cell (its balancing bleed) is added back, and only then is the cell compared with the others. A
reading's uncertainty is carried through the same curve: where the curve is too flat to tell
charge from voltage, there is no evidence, and no healthy cell is ever condemned on it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from openbms.bms.profile import CellHealth
from openbms.chemistry import OcvTable

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MIN_TRUSTED_CELLS = 3  # a median of fewer cells is no "others" to compare with


class CellHealthLearner:
    def __init__(self, settings: CellHealth, ocv: OcvTable, capacity_ah: float, packs: int, cells: int) -> None:
        self.settings = settings
        self.ocv = ocv
        self.capacity_ah = capacity_ah
        self.rest_s = np.zeros(packs)
        self.reference_soc = np.full((packs, cells), np.nan)
        self.reference_spread = np.full((packs, cells), np.nan)  # SOC uncertainty of the reference
        self.bled_ah = np.zeros((packs, cells))  # taken out by balancing since the reference
        self.intervals = np.zeros(packs)  # learning intervals since the reference was taken
        self.falling_count = np.zeros((packs, cells), dtype=np.int32)
        self.failed = np.zeros((packs, cells), dtype=bool)  # kept in non-volatile memory

    def forget_rest(self, packs: BoolArray) -> None:
        self.rest_s[packs] = 0.0
        self.reference_soc[packs] = np.nan
        self.reference_spread[packs] = np.nan
        self.bled_ah[packs] = 0.0
        self.intervals[packs] = 0.0

    def observe_rest(self, cell_v: FloatArray, resting: BoolArray, bleed_a: FloatArray, dt_s: float) -> None:
        """At rest, every ``learn_interval_s``, compare each cell's unexplained loss of charge
        with the other cells' (``bleed_a``: the balancing current the BMS drew from each cell)."""
        s = self.settings
        self.rest_s = np.where(resting, self.rest_s + dt_s, 0.0)
        if not resting.all():
            moving = ~resting
            self.reference_soc[moving] = np.nan
            self.bled_ah[moving] = 0.0
            self.intervals[moving] = 0.0
        if not resting.any():
            return
        self.bled_ah += np.where(resting[:, None], bleed_a * dt_s / 3600.0, 0.0)
        interval = s.learn_interval_s
        due = resting & (np.floor(self.rest_s / interval) > np.floor((self.rest_s - dt_s) / interval))
        if not due.any():
            return
        soc, spread = self._soc_with_spread(cell_v)
        # The first reading of a rest (after one interval of relaxing) is the reference that all
        # later ones compare with: the loss grows with time, a reading's doubt does not.
        first = due & np.isnan(self.reference_soc).all(axis=1)
        self.intervals = np.where(due & ~first, self.intervals + 1.0, self.intervals)
        falling = self._falling(soc, spread) & (due & ~first)[:, None]
        self.falling_count = np.where(due[:, None], np.where(falling, self.falling_count + 1, 0), self.falling_count)
        self.reference_soc = np.where(first[:, None], soc, self.reference_soc)
        self.reference_spread = np.where(first[:, None], spread, self.reference_spread)
        self.bled_ah = np.where(first[:, None], 0.0, self.bled_ah)
        self.failed |= self.falling_count >= s.self_discharge_intervals

    def _soc_with_spread(self, cell_v: FloatArray) -> tuple[FloatArray, FloatArray]:
        """SOC read from each rest voltage, and the SOC span its measurement uncertainty covers."""
        tol = self.settings.voltage_uncertainty_v
        finite = np.isfinite(cell_v)
        v = np.where(finite, cell_v, 0.0)
        soc = np.where(finite, self.ocv.soc_from_voltage(v), np.nan)
        spread = self.ocv.soc_from_voltage(v + tol) - self.ocv.soc_from_voltage(v - tol)
        return soc, np.where(finite, spread, np.nan)

    def _falling(self, soc: FloatArray, spread: FloatArray) -> BoolArray:
        """Cells that lost, beyond any doubt, more charge than the others since the reference."""
        s = self.settings
        cap = self.capacity_ah
        loss_ah = (self.reference_soc - soc) * cap - self.bled_ah
        doubt_ah = 0.5 * (self.reference_spread + spread) * cap  # ± half of each reading's span
        limit_ah = s.self_discharge_c_rate * cap * s.learn_interval_s / 3600.0 * self.intervals[:, None]
        # "The others" are the cells whose loss the curve resolves (not those on a flat plateau).
        trusted = np.isfinite(loss_ah) & (doubt_ah <= s.compare_max_doubt_soc * cap)
        enough = trusted.sum(axis=1) >= MIN_TRUSTED_CELLS
        falling = np.zeros(soc.shape, dtype=bool)
        if not enough.any():
            return falling
        rows = np.nonzero(enough)[0]
        typical = np.nanmedian(np.where(trusted[rows], loss_ah[rows], np.nan), axis=1, keepdims=True)
        typical_doubt = np.nanmedian(np.where(trusted[rows], doubt_ah[rows], np.nan), axis=1, keepdims=True)
        excess = loss_ah[rows] - typical - typical_doubt - doubt_ah[rows]
        falling[rows] = np.nan_to_num(excess, nan=0.0) > limit_ah[rows]
        return falling

    def observe_capacity(self, pack: int, weakest_cell: int, learned_ah: float, rated_ah: float) -> None:
        if learned_ah < self.settings.min_capacity_fraction * rated_ah:
            self.failed[pack, weakest_cell] = True

    def flag(self) -> BoolArray:
        flagged: BoolArray = np.any(self.failed, axis=1)
        return flagged
