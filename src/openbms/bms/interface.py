"""The boundary between the brain and the hardware: what an AFE reports, what the brain commands.

Everything is an array over packs (first axis), so one brain instance runs one pack or thousands.
A real device driver fills ``Measurements`` from its AFE; the twin fills it from its simulated
AFE. Nothing here knows which.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Measurements:
    """One AFE read-out. Shapes: (packs, cells) for per-cell values, (packs,) otherwise.

    ``cell_v`` are the series-group voltages a real AFE sees; a value the AFE could not read is
    NaN. ``short_circuit_tripped`` is the AFE's own hardware short-circuit detector, which acts
    inside the control cycle; ``short_circuit_at_s`` says when it fired. ``afe_damaged`` is the
    AFE's self-test result (a damaged AFE never recovers by a reset). ``charger_present`` is a
    charger's voltage at the pack terminals (its rising edge wakes a sleeping BMS);
    ``load_present`` is the load-detect input; ``link_ok`` is false while the monitoring link
    errors or falls silent; ``reset_button`` is true in a cycle in which the button was pressed.
    """

    cell_v: FloatArray
    cell_t_c: FloatArray
    current_a: FloatArray
    stack_v: FloatArray
    fet_t_c: FloatArray
    afe_ok: BoolArray
    afe_damaged: BoolArray
    short_circuit_tripped: BoolArray
    short_circuit_at_s: FloatArray
    short_circuit_peak_a: FloatArray
    charger_present: BoolArray
    load_present: BoolArray
    link_ok: BoolArray
    reset_button: BoolArray


@dataclass(frozen=True)
class Commands:
    """What the brain asks the hardware to do until the next cycle."""

    charge_fet: BoolArray
    discharge_fet: BoolArray
    balance: BoolArray
    charge_current_limit_a: FloatArray
    discharge_current_limit_a: FloatArray
    charge_voltage_limit_v: FloatArray


@dataclass(frozen=True)
class AfeProtectionConfig:
    """Settings the brain writes into the AFE at boot, as a real BMS programs its AFE registers.

    The AFE then acts on its own, within the control cycle (hardware short-circuit detection).
    """

    short_circuit_enabled: bool
    short_circuit_trip_a: float
    short_circuit_delay_s: float


_FLOAT_FIELDS = tuple(f.name for f in fields(Measurements) if f.name != "short_circuit_at_s")


def finite_or_nan(m: Measurements) -> Measurements:
    """An infinite reading is no more a value than NaN: the brain sees both as unreadable."""
    bad = {}
    for name in _FLOAT_FIELDS:
        value = getattr(m, name)
        if value.dtype.kind == "f" and np.isinf(value).any():
            bad[name] = np.where(np.isinf(value), np.nan, value)
    return replace(m, **bad) if bad else m
