"""Faults a user can inject into the twin, each with its matching repair (docs/behaviour.md §2).

Cells are series groups, numbered from 0 here (the scenario numbers them from 1); in a pack with
parallel cells a cell fault (internal short, fade) hits the first cell of the group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openbms.twin.afe import AnalogFrontEnd
from openbms.twin.simulator import Twin, TwinError

COOLING_FAILURE_FACTOR = 0.05  # what is left of the cooling when the fan or the path fails


@dataclass(frozen=True)
class FaultSpec:
    fault: str
    cell: int | None = None  # 0-based series group
    resistance_ohm: float | None = None
    soh: float | None = None
    sensor: str | None = None
    value: float | None = None
    per_hour: float | None = None
    fet: str | None = None


def _sensor(spec: FaultSpec) -> tuple[str, int]:
    """('v' | 't' | 'i', 0-based index) of a sensor name like cell_v_3, cell_t_2, current."""
    name = spec.sensor or ""
    if name == "current":
        return "i", 0
    kind, _, number = name.rpartition("_")
    if kind not in ("cell_v", "cell_t") or not number.isdigit():
        raise TwinError(f"unknown sensor {name!r}")
    return kind[-1], int(number) - 1


def _stick(afe: AnalogFrontEnd, pack: int, spec: FaultSpec, repair: bool) -> None:
    """A sensor stuck at ``spec.value`` (any float: NaN and ±inf are what a dead ADC reports)."""
    kind, k = _sensor(spec)
    if not repair and spec.value is None:
        raise TwinError("sensor_stuck needs a value")
    value = np.nan if repair or spec.value is None else float(spec.value)
    values, stuck = {"v": (afe.stuck_v, afe.stuck_v_on), "t": (afe.stuck_t, afe.stuck_t_on)}.get(
        kind, (afe.stuck_i, afe.stuck_i_on)
    )
    index = (pack, k) if kind in ("v", "t") else pack
    values[index] = value
    stuck[index] = not repair


def _cell(spec: FaultSpec) -> int:
    if spec.cell is None:
        raise TwinError(f"{spec.fault} needs a cell")
    return spec.cell


def inject(twin: Twin, pack: int, spec: FaultSpec) -> None:
    _apply(twin, pack, spec, repair=False)


def repair(twin: Twin, pack: int, spec: FaultSpec) -> None:
    _apply(twin, pack, spec, repair=True)


def _apply(twin: Twin, pack: int, spec: FaultSpec, repair: bool) -> None:
    afe, p = twin.afe, twin.config.topology.parallel
    fault = spec.fault
    if fault == "cell_internal_short":
        r = np.inf if repair else float(spec.resistance_ohm or np.inf)
        twin.pack.set_internal_short(pack, _cell(spec) * p, r)
    elif fault == "capacity_fade":
        soh = twin.pack.cells.soh.copy()
        soh[pack, _cell(spec) * p] = 1.0 if repair else float(spec.soh or 1.0)
        twin.pack.cells.set_soh(soh)
    elif fault == "open_balance_wire":
        afe.open_wire[pack, _cell(spec)] = not repair
    elif fault == "sensor_stuck":
        _stick(afe, pack, spec, repair)
    elif fault == "sensor_drift":
        kind, k = _sensor(spec)
        rate = 0.0 if repair else float(spec.per_hour or 0.0)
        if kind == "v":
            afe.drift_v_per_h[pack, k] = rate
            afe.drift_offset_v[pack, k] = 0.0 if repair else afe.drift_offset_v[pack, k]
        elif kind == "t":
            afe.drift_t_per_h[pack, k] = rate
            afe.drift_offset_t[pack, k] = 0.0 if repair else afe.drift_offset_t[pack, k]
        else:
            afe.drift_i_per_h[pack] = rate
            afe.drift_offset_i[pack] = 0.0 if repair else afe.drift_offset_i[pack]
    elif fault == "afe_glitch":
        afe.glitch[pack] = not repair
    elif fault == "firmware_hang":
        twin.hung[pack] = not repair
    elif fault == "monitor_link_errors":
        twin.link_errors[pack] = not repair
    elif fault == "fet_stuck_closed":
        target = twin.fet_stuck_charge if spec.fet == "charge" else twin.fet_stuck_discharge
        target[pack] = not repair
    elif fault == "cooling_failure":
        twin.pack.cooling_factor[pack] = 1.0 if repair else COOLING_FAILURE_FACTOR
    else:
        raise TwinError(f"unknown fault {fault!r}")
    afe.faults_changed()
