"""Waiting in a test for what another thread or process does (a twin running in real time, a
board polled, a broker delivering)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(what: Callable[[], Any], timeout_s: float = 20.0, every_s: float = 0.05) -> Any:
    """Poll ``what`` until it returns something truthy, and return that; fail after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = what()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"not within {timeout_s} s")
