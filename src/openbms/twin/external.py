"""The world outside the pack's terminals: charger, loads, short circuit, a current profile.

Every element is an array over packs so a batch can hold different set-ups. Given the pack as a
Thevenin source (E, R) over the next step, ``terminal_current_a`` says what current the
terminals would carry if both FETs conducted; the pack then gates it by its FETs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

LOAD_NONE, LOAD_CURRENT, LOAD_POWER, LOAD_RESISTANCE = range(4)
_LOAD_KEYWORDS = {LOAD_CURRENT: "current_a", LOAD_POWER: "power_w", LOAD_RESISTANCE: "resistance_ohm"}


@dataclass(frozen=True)
class Load:
    """One pack's load as ``Twin.connected_load`` reports it: a mode and its value."""

    mode: int
    value: float

    def kwargs(self) -> dict[str, float]:
        """The keyword ``Twin.connect_load`` takes to connect this load again."""
        return {_LOAD_KEYWORDS[self.mode]: self.value}


@dataclass(frozen=True)
class Charger:
    """One pack's charger as ``Twin.connected_charger`` reports it."""

    voltage_v: float
    current_a: float
    min_battery_v: float = 0.0


class External:
    """What is connected to each pack's terminals."""

    def __init__(self, packs: int) -> None:
        self.load_mode = np.zeros(packs, dtype=np.int8)
        self.load_value = np.zeros(packs)
        self.short_ohm = np.full(packs, np.inf)
        self.charger_connected = np.zeros(packs, dtype=bool)
        self.charger_v = np.zeros(packs)
        self.charger_a = np.zeros(packs)
        self.charger_min_battery_v = np.zeros(packs)
        self.profile_a = np.full(packs, np.nan)  # NaN: no profile driving the terminals

    def load_connected(self) -> BoolArray:
        drawing_profile = np.nan_to_num(self.profile_a) < 0.0
        return (self.load_mode != LOAD_NONE) | np.isfinite(self.short_ohm) | drawing_profile

    def charger_outputs(self, terminal_v: FloatArray) -> BoolArray:
        """A smart charger starts only when it sees at least ``min_battery_v`` at its terminals."""
        return self.charger_connected & (terminal_v >= self.charger_min_battery_v)

    def draw_a(self, e_v: FloatArray, r_ohm: FloatArray) -> FloatArray:
        """Current the loads, a short and a profile would take from (E, R); negative discharges."""
        mode, value = self.load_mode, self.load_value
        current = np.where(mode == LOAD_CURRENT, -value, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            # Constant power P: I·(E + R·I) = −P; the smaller-magnitude root is the operating
            # point; past the maximum power the source collapses to I = −E/2R.
            disc = e_v * e_v - 4.0 * r_ohm * value
            power_i = np.where(disc >= 0, (-e_v + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * r_ohm), -e_v / (2.0 * r_ohm))
            current = np.where(mode == LOAD_POWER, power_i, current)
            current = np.where(mode == LOAD_RESISTANCE, -e_v / (r_ohm + value), current)
            current = current + np.where(np.isfinite(self.short_ohm), -e_v / (r_ohm + self.short_ohm), 0.0)
        return current + np.where(np.isnan(self.profile_a), 0.0, self.profile_a)

    def charge_a(self, e_v: FloatArray, r_ohm: FloatArray, draw_a: FloatArray, outputs: BoolArray) -> FloatArray:
        """Charger current: constant current, then constant voltage at its set point (CC/CV)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            cv_a = (self.charger_v - e_v) / r_ohm - draw_a
        return np.where(outputs, np.clip(cv_a, 0.0, self.charger_a), 0.0)
