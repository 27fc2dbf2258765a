"""What the diagnosis works from: a BMS's state and its recent history, whatever its source.

The same ``Snapshot`` is built from a simulated twin, from a state file saved by
``openbms simulate --save-state``, from a real device, or from a person's answers in the guide
(where many fields are unknown: ``None``). The diagnosis never sees a scenario's name or notes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from openbms.bms.profile import Profile
from openbms.files import atomic_write
from openbms.inputs import InputLimitError, read_text_limited

STATE_FILE_VERSION = 1
# Limits of the state-file reader: a day's event log of a troubled pack is well under 1 MB, and
# the file's own nesting is 4 levels; beyond these it is not a state file openbms wrote.
MAX_STATE_BYTES = 20_000_000
MAX_STATE_DEPTH = 16
EventScalar = str | int | float | bool | None
EventRecord = dict[str, EventScalar | list[EventScalar]]
_WORD_FIELDS = ("kind", "method", "result", "fault", "reason", "by", "warning")


class SnapshotError(ValueError):
    """A state file that cannot be used; the message says which file and why."""


class Thresholds(BaseModel):
    """The limits the reasons quote, taken from the BMS profile."""

    model_config = ConfigDict(frozen=True)

    cell_overvoltage_v: float = 3.65
    cell_undervoltage_v: float = 2.50
    cell_undervoltage_release_v: float = 2.90
    deep_discharge_v: float = 2.00
    charge_overtemperature_c: float = 45.0
    charge_overtemperature_release_c: float = 40.0
    charge_undertemperature_c: float = 0.0
    charge_undertemperature_release_c: float = 5.0
    discharge_overtemperature_c: float = 60.0
    discharge_overtemperature_release_c: float = 55.0
    discharge_undertemperature_c: float = -20.0
    discharge_undertemperature_release_c: float = -15.0
    fet_overtemperature_release_c: float = 70.0
    cell_v_max_plausible_v: float = 4.5
    charge_voltage_v: float | None = 55.2  # None: unknown (the guide without chemistry or cell count)
    recovery_charge_a: float | None = 5.0  # None: unknown (no capacity known)
    hold_up_s: float = 600.0

    @staticmethod
    def from_profile(profile: Profile, series: int, capacity_ah: float) -> Thresholds:
        prot = profile.protections

        def trip(name: str, default: float) -> float:
            return prot[name].trip if name in prot else default

        def release(name: str, default: float) -> float:
            value = prot[name].release if name in prot else None
            return default if value is None else value

        recovery = prot["deep_discharge"].recovery_charge_c_rate if "deep_discharge" in prot else None
        return Thresholds(
            cell_overvoltage_v=trip("cell_overvoltage", 3.65),
            cell_undervoltage_v=trip("cell_undervoltage", 2.5),
            cell_undervoltage_release_v=release("cell_undervoltage", 2.9),
            deep_discharge_v=trip("deep_discharge", 2.0),
            charge_overtemperature_c=trip("charge_overtemperature", 45.0),
            charge_overtemperature_release_c=release("charge_overtemperature", 40.0),
            charge_undertemperature_c=trip("charge_undertemperature", 0.0),
            charge_undertemperature_release_c=release("charge_undertemperature", 5.0),
            discharge_overtemperature_c=trip("discharge_overtemperature", 60.0),
            discharge_overtemperature_release_c=release("discharge_overtemperature", 55.0),
            discharge_undertemperature_c=trip("discharge_undertemperature", -20.0),
            discharge_undertemperature_release_c=release("discharge_undertemperature", -15.0),
            fet_overtemperature_release_c=release("fet_overtemperature", 70.0),
            cell_v_max_plausible_v=profile.sensors.cell_v_max_v,
            charge_voltage_v=profile.limits.charge_voltage_cell_v * series,
            recovery_charge_a=(recovery or 0.05) * capacity_ah,
            hold_up_s=profile.hardware.supply.hold_up_s,
        )


class ActiveFault(BaseModel):
    model_config = ConfigDict(frozen=True)

    fault: str
    klass: str = Field(alias="class")
    since_s: float | None = None


class Snapshot(BaseModel):
    """A BMS as the diagnosis sees it. ``None`` means unknown."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    source: str = "twin"
    t_s: float | None = None
    state: str | None = None
    faults: list[ActiveFault] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    charge_fet: bool | None = None
    discharge_fet: bool | None = None
    cell_v: list[float | None] | None = None
    temperature_c: list[float | None] | None = None
    fet_temperature_c: float | None = None
    current_a: float | None = None
    pack_v: float | None = None
    soc: float | None = None
    soc_uncertain: bool | None = None
    soh: float | None = None
    failed_cells: list[int] = Field(default_factory=list)
    charger_connected: bool | None = None
    load_connected: bool | None = None
    link_ok: bool | None = None
    responds: bool | None = None  # does the BMS answer at all (False for unresponsive / off)
    cell_replaced: bool | None = None  # the person says a cell was just replaced
    sensor_reason: str | None = None  # why the BMS distrusts its readings now (erratic, stuck, …)
    events: list[dict[str, Any]] = Field(default_factory=list)
    # Fields whose value was filled in by an assumption (the guide, for what the person did not
    # know); a reason drawn from them says it is assumed.
    assumed_fields: list[str] = Field(default_factory=list)
    thresholds: Thresholds = Field(default_factory=Thresholds)

    @field_validator("events")
    @classmethod
    def _flat_events(cls, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Events carry words, numbers and lists of them, and the fields the diagnosis reads are
        words; it relies on that."""
        TypeAdapter(list[EventRecord]).validate_python(events, strict=True)
        for i, event in enumerate(events):
            for key in _WORD_FIELDS:
                if key in event and not isinstance(event[key], str):
                    raise ValueError(f"events.{i}.{key} must be a word")
        return events

    @property
    def fault_names(self) -> set[str]:
        return {f.fault for f in self.faults}

    def fault_class(self, fault: str) -> str | None:
        return next((f.klass for f in self.faults if f.fault == fault), None)


def save_state(snapshot: Snapshot, path: Path) -> None:
    """Write a state file (JSON) atomically."""
    doc = {"openbms_state": STATE_FILE_VERSION, **snapshot.model_dump(by_alias=True)}
    with atomic_write(Path(path)) as handle:
        json.dump(doc, handle, indent=1, allow_nan=False)
        handle.write("\n")


def _depth(doc: Any) -> int:
    """How deeply lists and objects nest in ``doc`` (iterative: a deep file must not recurse)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_STATE_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _read_json(path: Path) -> Any:
    try:
        doc = json.loads(read_text_limited(Path(path), MAX_STATE_BYTES))
    except OSError as err:
        raise SnapshotError(f"{path}: cannot read the state file ({err.strerror or err})") from None
    except InputLimitError as err:
        raise SnapshotError(f"{path}: {err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SnapshotError(f"{path}: not a JSON state file ({' '.join(str(err).split())})") from None
    except RecursionError:
        raise SnapshotError(f"{path}: nested deeper than any state file ({MAX_STATE_DEPTH} levels)") from None
    if _depth(doc) > MAX_STATE_DEPTH:
        raise SnapshotError(f"{path}: nested deeper than any state file ({MAX_STATE_DEPTH} levels)")
    return doc


def load_state(path: Path) -> Snapshot:
    """Read a state file written by ``openbms simulate --save-state``."""
    doc = _read_json(path)
    if not isinstance(doc, dict) or doc.get("openbms_state") != STATE_FILE_VERSION:
        raise SnapshotError(f"{path}: not an openbms state file (saved by `openbms simulate --save-state`)")
    doc.pop("openbms_state")
    try:
        return Snapshot.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and "[" in p))
        raise SnapshotError(f"{path}: {where}: {str(first['msg']).removeprefix('Value error, ')}") from None
