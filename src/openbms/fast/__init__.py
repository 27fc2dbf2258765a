"""The compiled fast path: numba kernels for what runs every control cycle for every pack.

The Python code in ``twin`` and ``bms`` stays the reference: it is what the behaviour is defined
by and what a reader checks. The kernels here reproduce its arithmetic (same operations, same
order where rounding could show) so a differential test (``tests/fast``) can hold them equal to
within 1e-9, and they exist only because a fleet of packs over days of simulated time is too slow
one vectorised NumPy step at a time. ``cycle`` is the whole quiet control cycle and ``engine``
drives a ``Twin`` with it (the scenario runner's ``engine="fast"``, the CLI's default);
``physics``, ``guard`` and ``afe`` are the earlier single-purpose kernels.

numba is a dependency; an install without it (built from source without its wheels) gets an
ImportError that says how to get it, rather than a bare "No module named 'numba'", and the CLI's
``--engine reference`` still runs.
"""

from __future__ import annotations

try:
    import numba  # noqa: F401  (checked here once, so every kernel module may assume it)
except ImportError as err:  # pragma: no cover - exercised only where numba is absent
    raise ImportError("openbms.fast needs numba (a dependency of openbms): pip install 'numba>=0.60,<0.70'") from err

from openbms.fast.afe import AfeFaultError, AfeNoise, AfeReadings, draw_noise, fault_reason, measure_many
from openbms.fast.guard import GuardContext, GuardState, advance_guard, reference_advance
from openbms.fast.physics import KernelParams, KernelState, advance_many, params_from_pack, state_from_pack

__all__ = [
    "AfeFaultError",
    "AfeNoise",
    "AfeReadings",
    "GuardContext",
    "GuardState",
    "KernelParams",
    "KernelState",
    "advance_guard",
    "advance_many",
    "draw_noise",
    "fault_reason",
    "measure_many",
    "params_from_pack",
    "reference_advance",
    "state_from_pack",
]
