"""Never let the brain be fooled: what makes a reading untrustworthy.

A reading that is NaN, outside physics, inconsistent with the stack voltage, or frozen while
everything around it moves is implausible; the brain turns that into ``sensor_fault`` and opens
the FETs. A current flowing through a FET the brain switched off means the FET is stuck closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from openbms.bms.interface import Measurements
from openbms.bms.profile import Sensors

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class CellStats:
    """The per-pack extremes every part of a cycle needs, reduced once per cycle.

    ``*_raw`` propagate NaN (for plausibility); the others skip NaN cells, so one unreadable
    cell never hides another's over-voltage while the sensor fault debounces.
    """

    max_v: FloatArray
    min_v: FloatArray
    max_v_raw: FloatArray
    min_v_raw: FloatArray
    sum_v: FloatArray
    max_t: FloatArray
    min_t: FloatArray
    max_t_raw: FloatArray
    min_t_raw: FloatArray
    current_a: FloatArray  # NaN read as 0 A for counting; the sensor fault handles it

    @staticmethod
    def of(m: Measurements) -> CellStats:
        max_v_raw = m.cell_v.max(axis=1)
        min_v_raw = m.cell_v.min(axis=1)
        max_t_raw = m.cell_t_c.max(axis=1)
        min_t_raw = m.cell_t_c.min(axis=1)
        if np.isnan(max_v_raw).any() or np.isnan(max_t_raw).any():
            max_v, min_v = np.fmax.reduce(m.cell_v, axis=1), np.fmin.reduce(m.cell_v, axis=1)
            max_t, min_t = np.fmax.reduce(m.cell_t_c, axis=1), np.fmin.reduce(m.cell_t_c, axis=1)
        else:
            max_v, min_v, max_t, min_t = max_v_raw, min_v_raw, max_t_raw, min_t_raw
        current = m.current_a
        if np.isnan(current).any():
            current = np.where(np.isnan(current), 0.0, current)
        return CellStats(
            max_v=max_v,
            min_v=min_v,
            max_v_raw=max_v_raw,
            min_v_raw=min_v_raw,
            sum_v=_sum_without_warning(m.cell_v),
            max_t=max_t,
            min_t=min_t,
            max_t_raw=max_t_raw,
            min_t_raw=min_t_raw,
            current_a=current,
        )


def _sum_without_warning(cell_v: FloatArray) -> FloatArray:
    """Σ cells; absurd readings may overflow to ±inf or NaN, which plausibility then rejects."""
    with np.errstate(over="ignore", invalid="ignore"):
        total: FloatArray = cell_v.sum(axis=1)
    return total


ERRATIC_JUMPS = 3  # one jump is a wire coming loose; several are a glitching front end
REASONS = ("", "erratic", "stuck", "unreadable", "out_of_range", "stack_mismatch")
# Reasons seen only over many readings: a boot's first reading cannot tell them gone (docs/behaviour.md §4).
# (Erratic readings are implausible one by one; only their label needs a history.)
JUDGED_OVER_TIME = ("stuck",)


class SensorWatch:
    """Plausibility of every reading, including sensors stuck at one value, and FET leakage.

    A stuck *current* sensor is not detected here: with a quiet load a real current reading can
    sit still too, so only its consequences (SOC against voltage) can give it away.
    """

    def __init__(self, settings: Sensors, packs: int, cells: int, capacity_ah: float) -> None:
        self.settings = settings
        self.current_max_a = settings.current_max_c_rate * capacity_ah
        self.last_v = np.full((packs, cells), np.nan)
        self.last_t = np.full((packs, cells), np.nan)
        self.unchanged_v_s = np.zeros((packs, cells))
        self.unchanged_t_s = np.zeros((packs, cells))
        self.unchanged_v_n = np.zeros((packs, cells), dtype=np.int32)  # readings in a row, same bit
        self.unchanged_t_n = np.zeros((packs, cells), dtype=np.int32)
        self.fet_leak_s = np.zeros(packs)
        self.jumps = np.zeros(packs, dtype=np.int32)  # readings that jumped while implausible
        self.reason = np.zeros(packs, dtype=np.int8)  # index into REASONS of the last implausible cycle

    def forget(self, packs: BoolArray) -> None:
        """A boot starts the history afresh for these packs."""
        self.last_v[packs] = np.nan
        self.last_t[packs] = np.nan
        self.unchanged_v_s[packs] = 0.0
        self.unchanged_t_s[packs] = 0.0
        self.unchanged_v_n[packs] = 0
        self.unchanged_t_n[packs] = 0
        self.fet_leak_s[packs] = 0.0
        self.jumps[packs] = 0
        self.reason[packs] = 0

    def implausible(self, m: Measurements, stats: CellStats, dt_s: float) -> BoolArray:
        """Per pack: is any reading untrustworthy this cycle? NaN fails every comparison."""
        sens = self.settings
        good_v = (stats.min_v_raw >= sens.cell_v_min_v) & (stats.max_v_raw <= sens.cell_v_max_v)
        good_t = (stats.min_t_raw >= sens.temperature_min_c) & (stats.max_t_raw <= sens.temperature_max_c)
        good_i = (np.abs(m.current_a) <= self.current_max_a) & np.isfinite(m.stack_v) & np.isfinite(m.fet_t_c)
        mismatch = np.abs(m.stack_v - stats.sum_v)
        allowed = np.maximum(sens.stack_mismatch_fraction * np.abs(m.stack_v), sens.stack_mismatch_min_v)
        good_stack = mismatch <= allowed
        jumped = (np.abs(m.cell_v - self.last_v) > self.settings.erratic_jump_v).any(axis=1)
        stuck = self._stuck(m, dt_s)
        bad = ~(good_v & good_t & good_i & good_stack) | stuck
        if bad.any():
            self.jumps += bad & jumped
            erratic = self.jumps >= ERRATIC_JUMPS
            nan = np.isnan(stats.max_v_raw) | np.isnan(stats.max_t_raw) | ~good_i
            reason = np.select(
                [erratic, stuck, nan, ~(good_v & good_t), ~good_stack],
                [REASONS.index(r) for r in ("erratic", "stuck", "unreadable", "out_of_range", "stack_mismatch")],
                0,
            )
            self.reason = np.where(bad, reason, self.reason).astype(np.int8)
        return bad

    def _stuck(self, m: Measurements, dt_s: float) -> BoolArray:
        """A reading frozen to the last bit for ``stuck_window_s`` and ``stuck_min_readings``
        readings while the other sensors of its kind keep changing, and that has wandered off from
        them: a live ADC reading wobbles in its last bit, and a frozen one that still tracks the
        others does no harm yet. The count of readings matters as much as the time: at a slow
        cycle, a live reading on a flat plateau can repeat its bit a dozen times by chance."""
        sens = self.settings
        same_v = m.cell_v == self.last_v
        same_t = m.cell_t_c == self.last_t
        self.unchanged_v_s = np.where(same_v, self.unchanged_v_s + dt_s, 0.0)
        self.unchanged_t_s = np.where(same_t, self.unchanged_t_s + dt_s, 0.0)
        self.unchanged_v_n = np.where(same_v, self.unchanged_v_n + 1, 0)
        self.unchanged_t_n = np.where(same_t, self.unchanged_t_n + 1, 0)
        self.last_v, self.last_t = m.cell_v, m.cell_t_c
        stuck = np.zeros(m.cell_v.shape[0], dtype=bool)
        for unchanged, count, readings, deviation in (
            (self.unchanged_v_s, self.unchanged_v_n, m.cell_v, sens.stuck_deviation_v),
            (self.unchanged_t_s, self.unchanged_t_n, m.cell_t_c, sens.stuck_deviation_c),
        ):
            frozen = (unchanged >= sens.stuck_window_s) & (count >= sens.stuck_min_readings)
            if unchanged.shape[1] < 3 or not frozen.any():
                continue
            others_live = np.median(unchanged, axis=1) <= sens.stuck_others_changed_within_s
            off = np.abs(readings - np.median(readings, axis=1, keepdims=True)) > deviation
            stuck |= others_live & (frozen & off).any(axis=1)
        return stuck

    def fet_stuck_closed(
        self, current_a: FloatArray, charge_fet: BoolArray, discharge_fet: BoolArray, dt_s: float
    ) -> BoolArray:
        """Current flowing in a direction whose FET is commanded off, for longer than a glitch."""
        sens = self.settings
        leaking = ((current_a > sens.fet_leak_a) & ~charge_fet) | ((current_a < -sens.fet_leak_a) & ~discharge_fet)
        self.fet_leak_s = np.where(leaking, self.fet_leak_s + dt_s, 0.0)
        return self.fet_leak_s >= sens.fet_leak_delay_s
