"""State of charge: coulomb counting, OCV correction, full-charge recalibration, learned capacity.

SOC is kept per series group. The pack's SOC is what a user can still take out: the weakest
group's charge over the span between the weakest and the fullest group,
``min / (1 − max + min)``, so it reads 0 when the first group is empty and 1 when the first is full.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from openbms.bms.events import Event
from openbms.bms.plausibility import CellStats
from openbms.bms.profile import SocSettings
from openbms.chemistry import OcvTable

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class Counters:
    """Lifetime counters kept in non-volatile memory."""

    charge_ah: FloatArray
    discharge_ah: FloatArray
    charge_wh: FloatArray
    discharge_wh: FloatArray
    cycles: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.cycles = np.zeros_like(self.charge_ah)


class SocEstimator:
    def __init__(
        self,
        settings: SocSettings,
        ocv: OcvTable,
        capacity_ah: float,
        packs: int,
        cells: int,
        rest_current_a: float,
        coulombic_efficiency: float = 1.0,
    ) -> None:
        self.settings = settings
        self.ocv = ocv
        self.rated_capacity_ah = capacity_ah
        self.capacity_ah = np.full(packs, capacity_ah)  # learned, per pack
        self.rest_current_a = rest_current_a
        self.coulombic_efficiency = coulombic_efficiency
        self.soc = np.full((packs, cells), np.nan)
        self.uncertain = np.zeros(packs, dtype=bool)
        self.full_timer_s = np.zeros(packs)
        self.full_done = np.zeros(packs, dtype=bool)
        self.rest_s = np.zeros(packs)
        self.ah_since_full = np.full(packs, np.nan)  # NaN until a full point has been seen
        z = np.zeros(packs)
        self.counters = Counters(z.copy(), z.copy(), z.copy(), z.copy())
        slope = np.gradient(ocv.ocv_v, ocv.grid_soc)
        self._slope_v = slope  # dOCV/dSOC on the table grid

    # ------------------------------------------------------------------ initialisation
    def set_from_ocv(self, packs: BoolArray, cell_v: FloatArray) -> None:
        """SOC of these packs' groups read from their (resting) voltages."""
        from_ocv = self.ocv.soc_from_voltage(np.where(np.isnan(cell_v), 0.0, cell_v))
        self.soc[packs] = from_ocv[packs]

    def set_cell_from_ocv(self, pack: int, cell: int, volts: float) -> None:
        self.soc[pack, cell] = float(self.ocv.soc_from_voltage(np.array([volts]))[0])

    @property
    def pack_soc(self) -> FloatArray:
        low = np.clip(self.soc.min(axis=1), 0.0, 1.0)
        high = np.clip(self.soc.max(axis=1), 0.0, 1.0)
        return np.clip(low / np.maximum(1.0 - high + low, 1e-9), 0.0, 1.0)

    # ------------------------------------------------------------------ the cycle
    def update(
        self,
        stats: CellStats,
        cell_v: FloatArray,
        t_s: float,
        dt_s: float,
        events: list[Event],
        own_draw_a: FloatArray,
        bleed_a: FloatArray,
        trusted: BoolArray,
    ) -> None:
        """Count the charge every group gained or lost: the measured terminal current (charge
        scaled by the coulombic efficiency), less the draws the BMS knows it causes itself, its
        own supply from every group and the balancing bleed from some (docs/behaviour.md §6)."""
        # An untrusted cycle (a sensor fault debouncing; its FETs open a second later) counts nothing.
        current = np.where(trusted, stats.current_a, 0.0)
        stored_a = np.where(current > 0.0, current * self.coulombic_efficiency, current)
        group_a = (stored_a - own_draw_a)[:, None] - bleed_a
        self.soc += group_a * (dt_s / 3600.0) / self.capacity_ah[:, None]
        self._count(current, stats, dt_s, trusted)
        self._full_charge(stats, current, t_s, dt_s, events)
        self._ocv_correction(cell_v, current, t_s, dt_s, events)

    def _count(self, current: FloatArray, stats: CellStats, dt_s: float, trusted: BoolArray) -> None:
        """Lifetime counters count only readings the brain trusts, so no garbage reading can
        turn them into something non-volatile memory cannot store."""
        c = self.counters
        ah = np.where(trusted, current, 0.0) * dt_s / 3600.0
        wh = np.where(trusted, ah * stats.sum_v, 0.0)
        c.charge_ah += np.maximum(ah, 0.0)
        c.discharge_ah += np.maximum(-ah, 0.0)
        c.charge_wh += np.maximum(wh, 0.0)
        c.discharge_wh += np.maximum(-wh, 0.0)
        c.cycles = c.discharge_ah / self.rated_capacity_ah
        self.ah_since_full -= ah

    def _full_charge(self, stats: CellStats, current: FloatArray, t_s: float, dt_s: float, events: list[Event]) -> None:
        s = self.settings
        tail_a = s.full_tail_c_rate * self.rated_capacity_ah
        near_full = (stats.max_v >= s.full_cell_v) & (current > 0.0) & (current < tail_a)
        self.full_timer_s = np.where(near_full, self.full_timer_s + dt_s, 0.0)
        full = (self.full_timer_s >= s.full_hold_s) & ~self.full_done
        # A new full point counts only after a real discharge (not the noise of a finished charge).
        self.full_done = (self.full_done | full) & (current > -self.rest_current_a)
        for pack in np.nonzero(full)[0]:
            self.full_point(int(pack), t_s, "full_charge", events)

    def full_point(self, pack: int, t_s: float, by: str, events: list[Event]) -> None:
        """The first group is full (end of charge, or its over-voltage cut): SOC is 100 %."""
        before = float(self.pack_soc[pack])
        self.soc[pack] += 1.0 - self.soc[pack].max()
        self.uncertain[pack] = False
        self.ah_since_full[pack] = 0.0
        self.full_done[pack] = True
        events.append(Event(t_s, pack, "soc_recalibrated", {"by": by, "soc_before": round(before, 4), "soc": 1.0}))

    def _ocv_correction(
        self, cell_v: FloatArray, current: FloatArray, t_s: float, dt_s: float, events: list[Event]
    ) -> None:
        s = self.settings
        resting = np.abs(current) < self.rest_current_a
        self.rest_s = np.where(resting, self.rest_s + dt_s, 0.0)
        due = (self.rest_s >= s.ocv_rest_s) & (self.rest_s - dt_s < s.ocv_rest_s)
        if not due.any():
            return
        for pack in np.nonzero(due)[0]:
            v = cell_v[pack]
            if np.isnan(v).any():
                continue
            ocv_soc = self.ocv.soc_from_voltage(v)
            index = np.clip(np.rint(ocv_soc * (self._slope_v.size - 1)).astype(int), 0, self._slope_v.size - 1)
            steep = self._slope_v[index] >= s.ocv_min_slope_v
            off = np.abs(ocv_soc - self.soc[pack]) > s.ocv_min_correction
            fix = steep & off
            if fix.any():
                before = float(self.pack_soc[pack])
                self.soc[pack, fix] = ocv_soc[fix]
                events.append(
                    Event(
                        t_s,
                        int(pack),
                        "soc_recalibrated",
                        {
                            "by": "ocv",
                            "cells": [int(c) + 1 for c in np.nonzero(fix)[0]],
                            "soc_before": round(before, 4),
                            "soc": round(float(self.pack_soc[pack]), 4),
                        },
                    )
                )

    def empty_point(self, pack: int, t_s: float, events: list[Event]) -> float | None:
        """The first group reached its cut-off: learn capacity if a full point came before it.

        Returns the learned capacity in Ah, or None when there was no full point to learn from.
        """
        learned = None
        since_full = self.ah_since_full[pack]
        if np.isfinite(since_full) and since_full > 0.05 * self.rated_capacity_ah:
            learned = float(since_full)
            self.capacity_ah[pack] = learned
        before = float(self.pack_soc[pack])
        self.soc[pack] -= self.soc[pack].min()
        self.ah_since_full[pack] = np.nan
        events.append(
            Event(
                t_s,
                int(pack),
                "soc_recalibrated",
                {"by": "empty", "soc_before": round(before, 4), "soc": 0.0}
                | ({"capacity_ah": round(learned, 3)} if learned is not None else {}),
            )
        )
        return learned
