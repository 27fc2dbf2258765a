"""Series a fleet campaign draws per pack: a usage profile (current over time) and an ambient
temperature series, each either one of a list of CSV files or a named generator with drawn
parameters. See ``openbms.apps.fleet`` for the campaign file and the README for the keys.

A generator is a small function of named parameters whose units are in their names
(``current_a``, ``duration_s``, ``mean_c``). A campaign gives each parameter a number or a
``[low, high]`` range, drawn uniformly per pack. Everything a worker will need is checked when the
campaign is loaded (generator, parameters, bounds, that the CSV files exist and read), so a bad
campaign is refused in one sentence before any pack runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from openbms.scenario.runner import MAX_PROFILE_CURRENT_A, read_profile_csv, read_series_csv
from openbms.scenario.schema import MAX_DURATION_S, Step

FloatArray = npt.NDArray[np.float64]
Range = tuple[float, float]
Series = tuple[FloatArray, FloatArray]  # times (s from the start of the timeline), values
# At most this many points in a drawn series: each ambient point is a timeline step, and a pulsed
# load far beyond it is a typo in its on_s/off_s.
MAX_SERIES_POINTS = 10_000
# Where the ambient steps of the runner may go (its AmbientSpec).
AMBIENT_MIN_C, AMBIENT_MAX_C = -60.0, 120.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Generator:
    """A named generator: its parameters' bounds (low, high, a default when optional) and the
    function from drawn parameters (and, for a time series sampled over the run, the run's
    length in seconds) to its series."""

    bounds: dict[str, tuple[float, float, float | None]]
    make: Callable[[dict[str, float], float], Series]
    summary: str

    def required(self) -> list[str]:
        return [name for name, (_, _, default) in self.bounds.items() if default is None]


def _changes(points: list[tuple[float, float]]) -> Series:
    """A zero-order-hold series from (time, value) changes starting at 0 s with 0: a later change at
    the same time replaces an earlier one."""
    merged: dict[float, float] = {0.0: 0.0}
    for t, value in points:
        merged[t] = value
    times = sorted(merged)
    return np.array(times, dtype=float), np.array([merged[t] for t in times], dtype=float)


def evening_load(p: dict[str, float], _run_s: float) -> Series:
    """One block of load: nothing until ``start_s``, then ``current_a`` drawn (a discharge,
    negative in the profile's sign) for ``duration_s``, then nothing."""
    start, end = p["start_s"], p["start_s"] + p["duration_s"]
    return _changes([(start, -p["current_a"]), (end, 0.0)])


def pulsed_load(p: dict[str, float], _run_s: float) -> Series:
    """A duty cycle: from ``start_s``, ``current_a`` drawn for ``on_s`` then nothing for ``off_s``,
    repeated until ``duration_s`` has passed (the last pulse cut short there)."""
    start, end = p["start_s"], p["start_s"] + p["duration_s"]
    points: list[tuple[float, float]] = []
    t = start
    while t < end:
        points += [(t, -p["current_a"]), (min(t + p["on_s"], end), 0.0)]
        t += p["on_s"] + p["off_s"]
    return _changes(points)


def day_night(p: dict[str, float], run_s: float) -> Series:
    """A day-night sinusoid: ``mean_c + amplitude_c * cos(2 pi (t - peak_s) / period_s)``, warmest
    at ``peak_s`` (15:00 by default, the timeline starting at midnight), sampled every ``step_s``
    from 0 s to the end of the run."""
    times = np.arange(0.0, run_s, p["step_s"]) if run_s > 0 else np.zeros(1)
    return times, p["mean_c"] + p["amplitude_c"] * np.cos(2 * np.pi * (times - p["peak_s"]) / p["period_s"])


_CURRENT = (0.0, MAX_PROFILE_CURRENT_A)
_DURATION = (0.0, MAX_DURATION_S)
USAGE_GENERATORS: dict[str, Generator] = {
    "evening": Generator(
        {"current_a": (*_CURRENT, None), "duration_s": (*_DURATION, None), "start_s": (*_DURATION, 0.0)},
        evening_load,
        "one block of load current_a for duration_s from start_s",
    ),
    "pulses": Generator(
        {
            "current_a": (*_CURRENT, None),
            "on_s": (1.0, MAX_DURATION_S, None),
            "off_s": (*_DURATION, None),
            "duration_s": (*_DURATION, None),
            "start_s": (*_DURATION, 0.0),
        },
        pulsed_load,
        "current_a for on_s, nothing for off_s, repeated for duration_s from start_s",
    ),
}
AMBIENT_GENERATORS: dict[str, Generator] = {
    "day_night": Generator(
        {
            "mean_c": (AMBIENT_MIN_C, AMBIENT_MAX_C, None),
            "amplitude_c": (0.0, 90.0, None),
            "peak_s": (0.0, MAX_DURATION_S, 15 * 3600.0),
            "period_s": (60.0, MAX_DURATION_S, 86_400.0),
            "step_s": (1.0, MAX_DURATION_S, 900.0),
        },
        day_night,
        "mean_c + amplitude_c cos(2 pi (t - peak_s) / period_s), an ambient step every step_s",
    ),
}


class SeriesDraw(_Strict):
    """One of ``csv`` (files, one picked per pack, uniformly; relative to the campaign file) or a
    ``generator`` with its parameters, each a number or a ``[low, high]`` range drawn per pack.
    The parameters may be written beside ``generator`` (``{generator: evening, current_a: [20,
    50]}``); they are kept under ``params``."""

    GENERATORS: ClassVar[dict[str, Generator]] = {}
    csv: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    generator: str | None = None
    params: dict[str, float | Range] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flat_params(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "params" in data:
            return data
        own = set(cls.model_fields)
        return {
            **{k: v for k, v in data.items() if k in own},
            "params": {k: v for k, v in data.items() if k not in own},
        }

    @field_validator("csv", mode="before")
    @classmethod
    def _one_file(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("params", mode="before")
    @classmethod
    def _shapes(cls, value: Any) -> Any:
        """A parameter is a number or a [low, high] pair of numbers (said so, not as pydantic's
        first failed alternative)."""
        for name, v in (value or {}).items() if isinstance(value, dict) else ():
            pair = isinstance(v, list | tuple) and len(v) == 2 and all(_is_number(x) for x in v)
            if not (_is_number(v) or pair):
                raise ValueError(f"{name} is a number or a [low, high] range, not {v!r}")
        return value

    @model_validator(mode="after")
    def _known(self) -> SeriesDraw:
        if (self.csv is None) == (self.generator is None):
            raise ValueError("give csv (a list of files) or generator, not both or neither")
        if self.csv is not None:
            if self.params:
                raise ValueError(f"{', '.join(self.params)}: only a generator takes parameters")
            return self
        table = self.GENERATORS
        gen = table.get(str(self.generator))
        if gen is None:
            raise ValueError(f"unknown generator {self.generator!r}; use one of {', '.join(table)}")
        for name, value in self.params.items():
            if name not in gen.bounds:
                raise ValueError(f"{self.generator} takes {', '.join(gen.bounds)}, not {name!r}")
            _check_value(name, value, gen.bounds[name])
        missing = [name for name in gen.required() if name not in self.params]
        if missing:
            raise ValueError(f"{self.generator} needs {', '.join(missing)}")
        return self

    def ranges(self) -> dict[str, Range]:
        """Every parameter of the generator as a range (a number x as [x, x], a default likewise),
        in the generator's own order: the order they are drawn in."""
        gen = self.GENERATORS[str(self.generator)]
        out: dict[str, Range] = {}
        for name, (_, _, default) in gen.bounds.items():
            value = self.params.get(name, default)
            assert value is not None  # required ones were checked
            out[name] = (float(value), float(value)) if isinstance(value, int | float) else value
        return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_value(name: str, value: float | Range, bounds: tuple[float, float, float | None]) -> None:
    low, high, _ = bounds
    values = (value,) if isinstance(value, int | float) else value
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be a finite number")
    if len(values) == 2 and values[0] > values[1]:
        raise ValueError(f"{name}: a range is [low, high] with low ≤ high")
    if not all(low <= v <= high for v in values):
        raise ValueError(f"{name} must lie within {low:g}..{high:g}")


class UsageDraw(SeriesDraw):
    """A pack's usage: a current profile played from the start of the timeline, as a ``profile``
    step does (the CSV's columns t_s, current_a, positive charging). ``mode: replace`` (the
    default) drops the base scenario's load and profile steps; ``add`` plays it on top of them."""

    GENERATORS: ClassVar[dict[str, Generator]] = USAGE_GENERATORS
    mode: Literal["replace", "add"] = "replace"


class AmbientDraw(SeriesDraw):
    """A pack's ambient temperature over time: ``ambient`` steps at the series' times (the CSV's
    columns t_s, temperature_c), the pack starting at the series' first value."""

    GENERATORS: ClassVar[dict[str, Generator]] = AMBIENT_GENERATORS


@dataclass(frozen=True)
class DrawnSeries:
    """What one pack drew: the CSV file picked or the generator's drawn parameters."""

    csv: str | None
    generator: str | None
    params: tuple[tuple[str, float], ...]

    def as_json(self) -> dict[str, Any]:
        return {"csv": self.csv} if self.csv is not None else {"generator": self.generator, **dict(self.params)}


def draw_series(rng: np.random.Generator, spec: SeriesDraw | None) -> DrawnSeries | None:
    """A pack's pick: one integer draw for a CSV list, one uniform draw per parameter otherwise."""
    if spec is None:
        return None
    if spec.csv is not None:
        return DrawnSeries(spec.csv[int(rng.integers(0, len(spec.csv)))], None, ())
    params = tuple((name, float(rng.uniform(low, high))) for name, (low, high) in spec.ranges().items())
    return DrawnSeries(None, spec.generator, params)


def usage_series(drawn: DrawnSeries) -> Series:
    """The pack's current profile (times from 0 s, current positive charging)."""
    if drawn.csv is not None:
        return read_profile_csv(Path(drawn.csv))
    return USAGE_GENERATORS[str(drawn.generator)].make(dict(drawn.params), 0.0)


def ambient_series(drawn: DrawnSeries, run_s: float) -> Series:
    """The pack's ambient temperatures (times from 0 s) over a run of ``run_s``."""
    if drawn.csv is not None:
        return read_temperature_csv(Path(drawn.csv))
    return AMBIENT_GENERATORS[str(drawn.generator)].make(dict(drawn.params), run_s)


def read_temperature_csv(path: Path) -> Series:
    """An ambient series: columns t_s (from 0, increasing) and temperature_c (-60..120 °C)."""
    bounds = (AMBIENT_MIN_C, AMBIENT_MAX_C)
    return read_series_csv(path, "ambient series", "temperature_c", bounds, "-60..120 °C", MAX_SERIES_POINTS)


def worst_points(spec: SeriesDraw, run_s: float) -> int:
    """The most points a generator can make over a run of ``run_s`` with its parameters' ranges
    (each range at its worst end), to refuse a campaign that would be too long before it runs."""
    r = spec.ranges()
    if spec.generator == "day_night":
        return int(run_s // max(r["step_s"][0], 1.0)) + 1
    if spec.generator == "pulses":
        return 2 * int(r["duration_s"][1] // max(r["on_s"][0] + r["off_s"][0], 1.0)) + 4
    return 3


def ambient_extremes(spec: SeriesDraw) -> Range:
    """The coldest and hottest a day_night series can be with its parameters' ranges."""
    r = spec.ranges()
    return r["mean_c"][0] - r["amplitude_c"][1], r["mean_c"][1] + r["amplitude_c"][1]


def at_times(steps: list[Step], timed: list[tuple[float, Step]], dt_s: float) -> list[Step]:
    """The timeline ``steps`` with each of ``timed`` (time in s from the start, step) played at its
    time: a ``run`` that spans one is split there. Times are rounded to whole cycles (a run counts
    whole cycles); a step at 0 s comes before the timeline's first step, one at or beyond the
    timeline's end is dropped. The timeline must hold no ``run_until`` (its length is unknown)."""
    pending = sorted(((round(t / dt_s), i, s) for i, (t, s) in enumerate(timed)), key=lambda x: (x[0], x[1]))
    out: list[Step] = []
    clock = 0  # cycles
    k = 0
    for step in steps:
        if step.kind != "run":
            while k < len(pending) and pending[k][0] <= clock and clock == 0:
                out.append(pending[k][2])
                k += 1
            out.append(step)
            continue
        end = clock + round(float(step.value) / dt_s)
        while k < len(pending) and pending[k][0] < end:
            at = max(pending[k][0], clock)
            if at > clock:
                out.append(step.model_copy(update={"value": (at - clock) * dt_s}))
                clock = at
            out.append(pending[k][2])
            k += 1
        if end > clock:
            out.append(step.model_copy(update={"value": (end - clock) * dt_s}))
        clock = end
    return out


def run_length_s(steps: list[Step]) -> float:
    """The timeline's length: its runs (a timeline without ``run_until``)."""
    return sum(float(s.value) for s in steps if s.kind == "run")
