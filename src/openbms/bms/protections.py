"""Vectorised evaluation of the protection table: debounce, hysteresis, trip and release.

The profile's protections are compiled once into arrays (one column per protection), so a control
cycle is a handful of array operations over (packs, protections), whatever the number of packs.
Debounce timers count up while a condition holds and down while it does not (docs/behaviour.md §3), so a
noisy signal near a threshold neither trips at once nor is forgotten at the first clean sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from openbms.bms.profile import Profile

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Quantities the brain derives from a measurement, one column each, in this order.
QUANTITIES = (
    "max_cell_v",
    "min_cell_v",
    "charge_c_rate",
    "discharge_c_rate",
    "max_cell_t",
    "min_cell_t",
    "fet_t",
    "imbalance_v",
    "sensor_implausible",
    "afe_not_answering",
    "link_bad",
    "cell_failure_flag",
)
RELEASE_MODES = ("hysteresis", "load_removed", "charger_removed", "never")
_TIMER_EPSILON_S = 1e-9


@dataclass(frozen=True)
class ProtectionTable:
    """The profile's protections as arrays; column j is ``names[j]``."""

    names: tuple[str, ...]
    quantity_index: npt.NDArray[np.intp]
    sign: FloatArray  # +1 trips above the threshold, -1 below
    enabled: BoolArray
    trip: FloatArray
    trip_delay_s: FloatArray
    release: FloatArray  # NaN where the release is not by hysteresis
    release_delay_s: FloatArray
    release_mode: npt.NDArray[np.intp]
    warn: FloatArray  # NaN where there is no warning tier
    blocks_charge: BoolArray
    blocks_discharge: BoolArray
    recovery: tuple[str, ...]
    in_afe: BoolArray
    escalate_count: npt.NDArray[np.intp]  # 0: never escalates
    escalate_window_s: FloatArray
    presumed_after_boot_s: FloatArray  # 0: judged from one reading; >0: judged over time
    stops_balancing: BoolArray

    @staticmethod
    def from_profile(profile: Profile) -> ProtectionTable:
        items = list(profile.protections.items())
        unknown = [p.quantity for _, p in items if p.quantity not in QUANTITIES]
        if unknown:
            raise ValueError(f"unknown protection quantity {unknown[0]!r}")

        def column(values: list[float | None]) -> FloatArray:
            return np.array([np.nan if v is None else v for v in values], dtype=float)

        return ProtectionTable(
            names=tuple(name for name, _ in items),
            quantity_index=np.array([QUANTITIES.index(p.quantity) for _, p in items], dtype=np.intp),
            sign=np.array([1.0 if p.direction == "above" else -1.0 for _, p in items]),
            enabled=np.array([p.enabled for _, p in items]),
            trip=column([p.trip for _, p in items]),
            trip_delay_s=column([p.trip_delay_s for _, p in items]),
            release=column([p.release for _, p in items]),
            release_delay_s=column([p.release_delay_s for _, p in items]),
            release_mode=np.array([RELEASE_MODES.index(p.release_when) for _, p in items], dtype=np.intp),
            warn=column([p.warn for _, p in items]),
            blocks_charge=np.array([p.blocks_charge for _, p in items]),
            blocks_discharge=np.array([p.blocks_discharge for _, p in items]),
            recovery=tuple(p.recovery for _, p in items),
            in_afe=np.array([p.in_afe for _, p in items]),
            escalate_count=np.array([p.escalate_count or 0 for _, p in items], dtype=np.intp),
            escalate_window_s=column([p.escalate_window_s for _, p in items]),
            presumed_after_boot_s=column([p.presumed_after_boot_s for _, p in items]),
            stops_balancing=np.array([p.stops_balancing for _, p in items]),
        )

    @property
    def size(self) -> int:
        """The number of protections (columns)."""
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def values(self, quantities: FloatArray) -> FloatArray:
        """(packs, protections): each protection's watched quantity."""
        return quantities[:, self.quantity_index]

    def trip_condition(self, values: FloatArray) -> BoolArray:
        with np.errstate(invalid="ignore"):
            return (self.sign * (values - self.trip) >= 0.0) & self.enabled

    def warn_condition(self, values: FloatArray) -> BoolArray:
        with np.errstate(invalid="ignore"):
            return (self.sign * (values - self.warn) >= 0.0) & self.enabled

    def release_condition(self, values: FloatArray, load_present: BoolArray, charger_gone: BoolArray) -> BoolArray:
        """(packs, protections): whether each protection's own release condition holds now."""
        with np.errstate(invalid="ignore"):
            by_hysteresis = self.sign * (values - self.release) <= 0.0
        mode = self.release_mode
        return np.where(
            mode == 0,
            by_hysteresis,
            np.where(mode == 1, ~load_present[:, None], np.where(mode == 2, charger_gone[:, None], False)),
        )


def debounce(timer_s: FloatArray, condition: BoolArray, previous: BoolArray, dt_s: float) -> FloatArray:
    """Count up while the condition holds, down (to zero) while it does not.

    Time is counted from the first sample that sees the condition (``previous`` is the last
    cycle's condition), so a protection trips ``delay`` after the condition was first observed,
    never a cycle before.
    """
    return np.where(condition, timer_s + np.where(previous, dt_s, 0.0), np.maximum(timer_s - dt_s, 0.0))


def elapsed(timer_s: FloatArray, delay_s: FloatArray) -> BoolArray:
    return timer_s >= delay_s - _TIMER_EPSILON_S


def trip_timers(
    timer_s: FloatArray, seen: BoolArray, running: bool, condition: BoolArray, delay_s: FloatArray, dt_s: float
) -> tuple[FloatArray, BoolArray, bool, BoolArray]:
    """One cycle of the trip debounce: the timers, the conditions seen, whether anything runs,
    and which conditions held for their delay.

    Quiet cycles (no condition now, and ``running`` False: every timer at zero and no condition
    seen last cycle) are the common case for thousands of packs: they skip the arithmetic, which
    would change nothing. A condition seen in the last cycle keeps ``running`` True although its
    timer is still 0 (its first sample), so the next cycle forgets it as the counting path does;
    else the condition's return would count a cycle early, and only when no other pack of the
    batch kept the debounce running."""
    if not (condition.any() or running):
        return timer_s, seen, running, condition
    timer_s = debounce(timer_s, condition, seen, dt_s)
    return timer_s, condition, running_after(timer_s, condition), condition & elapsed(timer_s, delay_s)


def running_after(timer_s: FloatArray, seen: BoolArray) -> bool:
    """Whether a debounce must run next cycle although no condition holds: a timer counts down,
    or a condition seen this cycle must be forgotten."""
    return bool(timer_s.any() or seen.any())
