"""Learning a failing cell (``cell_failure``): one that loses charge on its own, or holds too little.

A cell with an internal short falls further and further behind the others at rest; a cell that
has lost much of its capacity reaches the cut-off long before the pack has delivered what it
should. Both are learned from the data over time; neither can be fixed by a reset.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from openbms.bms.profile import CellHealth

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class CellHealthLearner:
    def __init__(self, settings: CellHealth, packs: int, cells: int) -> None:
        self.settings = settings
        self.rest_s = np.zeros(packs)
        self.reference_dev_v = np.full((packs, cells), np.nan)
        self.falling_count = np.zeros((packs, cells), dtype=np.int32)
        self.failed = np.zeros((packs, cells), dtype=bool)  # kept in non-volatile memory

    def forget_rest(self, packs: BoolArray) -> None:
        self.rest_s[packs] = 0.0
        self.reference_dev_v[packs] = np.nan

    def observe_rest(self, cell_v: FloatArray, resting: BoolArray, dt_s: float) -> None:
        """At rest, compare each cell with the median every ``learn_interval_s``."""
        s = self.settings
        self.rest_s = np.where(resting, self.rest_s + dt_s, 0.0)
        self.reference_dev_v[~resting] = np.nan
        if not resting.any():
            return
        interval = s.learn_interval_s
        due = resting & (np.floor(self.rest_s / interval) > np.floor((self.rest_s - dt_s) / interval))
        if not due.any():
            return
        dev = cell_v - np.median(cell_v, axis=1, keepdims=True)
        drop = self.reference_dev_v - dev  # positive when the cell fell behind the others
        falling = np.nan_to_num(drop, nan=0.0) > s.self_discharge_drop_v
        self.falling_count = np.where(due[:, None], np.where(falling, self.falling_count + 1, 0), self.falling_count)
        self.reference_dev_v = np.where(due[:, None], dev, self.reference_dev_v)
        self.failed |= self.falling_count >= s.self_discharge_intervals

    def observe_capacity(self, pack: int, weakest_cell: int, learned_ah: float, rated_ah: float) -> None:
        if learned_ah < self.settings.min_capacity_fraction * rated_ah:
            self.failed[pack, weakest_cell] = True

    def flag(self) -> BoolArray:
        flagged: BoolArray = np.any(self.failed, axis=1)
        return flagged
