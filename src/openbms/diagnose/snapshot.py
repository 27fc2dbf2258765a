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
from openbms.twin.board import BoardProfile, default_board

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
    """The limits the reasons quote, read from a BMS profile (``from_profile``); never restated
    here, so an NMC or LTO pack is judged with its own limits."""

    model_config = ConfigDict(frozen=True)

    profile: str = ""  # the profile the limits come from ("": a state file saved before they named it)
    cell_overvoltage_v: float
    cell_undervoltage_v: float
    cell_undervoltage_release_v: float
    deep_discharge_v: float
    charge_overtemperature_release_c: float
    charge_undertemperature_release_c: float
    discharge_overtemperature_release_c: float
    discharge_undertemperature_release_c: float
    fet_overtemperature_release_c: float
    charge_voltage_v: float | None  # None: unknown (no cell count, or no chemistry)
    recovery_charge_a: float | None  # None: unknown (no capacity known)
    hold_up_s: float
    # False: the board is not the one measured (a real board, a person's): its hold-up time is the
    # default board's, good for judging "too short", never quoted as this board's own.
    hold_up_known: bool = True
    recovery_classes: dict[str, str] = Field(default_factory=dict)  # each fault's class in this profile

    @staticmethod
    def from_profile(
        profile: Profile,
        series: int | None,
        capacity_ah: float | None,
        board: BoardProfile,
        board_known: bool = True,
    ) -> Thresholds:
        """The limits of ``profile``; the pack charge voltage needs the cell count and the recovery
        charge current the capacity (None where they are unknown). The hold-up time is the
        ``board``'s (for a real board, the twin's default board's: an assumption)."""
        prot = profile.protections

        def release(name: str) -> float:
            value = prot[name].release
            return prot[name].trip if value is None else value

        recovery_c_rate = prot["deep_discharge"].recovery_charge_c_rate
        return Thresholds(
            profile=profile.name,
            cell_overvoltage_v=prot["cell_overvoltage"].trip,
            cell_undervoltage_v=prot["cell_undervoltage"].trip,
            cell_undervoltage_release_v=release("cell_undervoltage"),
            deep_discharge_v=prot["deep_discharge"].trip,
            charge_overtemperature_release_c=release("charge_overtemperature"),
            charge_undertemperature_release_c=release("charge_undertemperature"),
            discharge_overtemperature_release_c=release("discharge_overtemperature"),
            discharge_undertemperature_release_c=release("discharge_undertemperature"),
            fet_overtemperature_release_c=release("fet_overtemperature"),
            charge_voltage_v=None if series is None else profile.limits.charge_voltage_cell_v * series,
            recovery_charge_a=None if capacity_ah is None or recovery_c_rate is None else recovery_c_rate * capacity_ah,
            hold_up_s=board.supply.hold_up_s,
            hold_up_known=board_known,
            recovery_classes={name: p.recovery for name, p in prot.items()},
        )


def default_thresholds() -> Thresholds:
    """The built-in LiFePO4 profile's limits for a 16S 100 Ah pack: what a snapshot judges with when
    its source names no profile (a saved twin state always names its own)."""
    from openbms.profiles import load_profile

    return Thresholds.from_profile(load_profile("lfp"), 16, 100.0, default_board(), board_known=False)


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
    thresholds: Thresholds = Field(default_factory=default_thresholds)
    # The profile was not named by the source but chosen for it (a board does not say its
    # chemistry): the report says so.
    profile_assumed: bool = False

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
        errors = err.errors()
        # a value of the wrong kind says more than a field left out; name it first
        first = next((e for e in errors if e["type"] != "missing"), errors[0])
        where = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and "[" in p))
        raise SnapshotError(f"{path}: {where}: {str(first['msg']).removeprefix('Value error, ')}") from None
