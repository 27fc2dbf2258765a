"""Parsing of the human units used in scenario files and on the command line.

Durations in files are strings such as ``300us``, ``500ms``, ``30s``, ``10min``, ``2h``, ``1d`` or
plain numbers of seconds (docs/behaviour.md §1). One parser, used everywhere, so every place agrees.
"""

from __future__ import annotations

import re

_DURATION_UNITS_S = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zµ]*)\s*$")


def parse_duration_s(value: str | float | int) -> float:
    """Return a duration in seconds; raise ValueError with the accepted forms when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match or match.group(2) not in {*_DURATION_UNITS_S, ""}:
            raise ValueError(
                f"{value!r} is not a duration (use a number of seconds or e.g. 300us, 500ms, 30s, 10min, 2h, 1d)"
            )
        seconds = float(match.group(1)) * _DURATION_UNITS_S.get(match.group(2) or "s", 1.0)
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a finite, non-negative duration")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form of a duration, for reports."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
