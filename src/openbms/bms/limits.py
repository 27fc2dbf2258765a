"""Charge and discharge current limits, the charge voltage limit, and passive balancing.

Limits derate near full, near empty and at the temperature edges (as dbus-serialbattery's
tables do) so a smart charger or inverter that follows them rarely meets a protection at all.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from openbms.bms.plausibility import CellStats
from openbms.bms.profile import Balancing, Limits

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def current_limits(lim: Limits, capacity_ah: float, stats: CellStats) -> tuple[FloatArray, FloatArray]:
    """(charge limit A, discharge limit A) before any path is blocked."""

    def worst(points: list[float], factors: list[float]) -> FloatArray:
        return np.minimum(np.interp(stats.max_t, points, factors), np.interp(stats.min_t, points, factors))

    charge_t = worst(lim.charge_temperature_points_c, lim.charge_temperature_factors)
    discharge_t = worst(lim.discharge_temperature_points_c, lim.discharge_temperature_factors)
    charge_v = np.interp(stats.max_v, lim.charge_cell_v_points, lim.charge_cell_v_factors)
    discharge_v = np.interp(stats.min_v, lim.discharge_cell_v_points, lim.discharge_cell_v_factors)
    return (
        lim.charge_c_rate * capacity_ah * charge_v * charge_t,
        lim.discharge_c_rate * capacity_ah * discharge_v * discharge_t,
    )


def balancing_mask(
    bal: Balancing,
    cell_v: FloatArray,
    stats: CellStats,
    capacity_ah: float,
    rest_current_c_rate: float,
    allowed: BoolArray,
    bleeding: BoolArray,
) -> BoolArray:
    """Bleed cells more than ``threshold_v`` above the lowest, only while charging near the top
    or resting, never during a fault or above ``max_temperature_c`` (docs/behaviour.md §6). A cell already
    bleeding goes on until it is within half the threshold, so noise does not toggle it."""
    current_c = stats.current_a / capacity_ah
    resting = np.abs(current_c) < rest_current_c_rate
    topping = (current_c > 0) & (stats.max_v >= bal.min_cell_v)
    cool = stats.max_t_raw <= bal.max_temperature_c  # NaN counts as hot
    ok = (resting | topping) & cool & allowed
    above = cell_v - stats.min_v[:, None]
    return ((above > bal.threshold_v) | (bleeding & (above > 0.5 * bal.threshold_v))) & ok[:, None]
