"""The scenario file format (docs/behaviour.md §8), validated with pydantic before anything runs.

A timeline step is a mapping with exactly one key, the step's kind (``- run: 10min``); its value
is validated by that kind's model. Every error is turned into one sentence naming the file, the
line and the key at fault.

``bms: {profile, set}`` chooses the brain's profile and overrides its settings; ``board: {set}``
overrides the twin's board (``twin/boards/default.yaml``: ``afe.current_noise_a: 0.0``,
``supply.hold_up_s: 900``). The old spelling of a board setting, ``bms: {set: {hardware.X: v}}``
(from when the board lived in the brain's profile), still works: it is read as ``board: {set:
{X: v}}``, and ``hardware.supply.quiescent_a`` / ``sleep_a``, which the brain then also counted,
set the firmware's ``board_draw.awake_a`` / ``asleep_a`` too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from openbms.bms.events import EVENT_KINDS, FAULT_NAMES
from openbms.bms.profile import ProfileError
from openbms.profiles import load_profile
from openbms.scenario.yaml_lines import InputLimitError, Location, line_of, load_yaml_with_lines
from openbms.twin.board import BoardError, load_board
from openbms.units import parse_duration_s

# Limits of the validator (not of the BMS): they keep every accepted scenario bounded in time
# and memory. A year of simulated time is far beyond any test a scenario describes; a run of it
# at the default 100 ms step already takes hours, so longer runs are typos (``1e9s``).
MAX_DURATION_S = 366 * 86_400.0
MAX_STEPS = 10_000
MAX_SEED = 2**63 - 1
MAX_TEXT_CHARS = 10_000

KNOWN_FAULTS = FAULT_NAMES
INJECTABLE_FAULTS = (
    "cell_internal_short",
    "capacity_fade",
    "open_balance_wire",
    "sensor_stuck",
    "sensor_drift",
    "afe_glitch",
    "firmware_hang",
    "monitor_link_errors",
    "fet_stuck_closed",
    "cooling_failure",
)


class ScenarioError(ValueError):
    """An invalid scenario: the message is the one sentence a user sees."""


def _duration(value: Any) -> float:
    seconds = parse_duration_s(value)
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than the longest run a scenario may ask for (366 d)")
    return seconds


def _fet_state(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "off", "true", "false"):
        return value.lower() in ("on", "true")
    raise ValueError("a FET state is on or off")


Duration = Annotated[float, BeforeValidator(_duration)]
FetState = Annotated[bool, BeforeValidator(_fet_state)]


def _state_name(value: Any) -> Any:
    """YAML 1.1 reads a bare ``off`` as false; in a state field it means the state ``off``."""
    return "off" if value is False else value


StateName = Annotated[
    Literal["off", "sleep", "normal", "protected", "latched", "locked", "unresponsive"],
    BeforeValidator(_state_name),
]
FaultName = Literal[KNOWN_FAULTS]  # type: ignore[valid-type]
Range = tuple[float, float]


class _Strict(BaseModel):
    """No unknown keys; no NaN or infinity (one would compare false with every limit)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ---------------------------------------------------------------------------- pack and BMS
class SpreadSpec(_Strict):
    capacity: float = Field(default=0.0, ge=0, le=0.3)
    resistance: float = Field(default=0.0, ge=0, le=0.5)
    soc: float = Field(default=0.0, ge=0, le=0.3)
    self_discharge: float = Field(default=0.0, ge=0, le=2.0)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class UserCellSpec(_Strict):
    capacity_ah: float = Field(gt=0, le=100_000)
    r0_ohm: float = Field(ge=0, le=100)
    rc: list[tuple[Annotated[float, Field(ge=0, le=100)], Annotated[float, Field(gt=0, le=1e6)]]] = Field(
        default_factory=list, max_length=2
    )
    ocv_csv: str = Field(max_length=4096)
    thermal_mass_j_per_k: float = Field(default=100.0, gt=0, le=1e7)
    cooling_w_per_k: float = Field(default=0.05, ge=0, le=1e4)


class PackSpec(_Strict):
    chemistry: Literal["lfp", "nmc", "lto", "lfp_prada2013"] = "lfp"
    series: int = Field(default=16, ge=1, le=1000)
    parallel: int = Field(default=1, ge=1, le=1000)
    capacity_ah: float | None = Field(default=None, gt=0, le=100_000, description="capacity of one cell")
    soc: float = Field(default=0.5, ge=0, le=1)
    temperature_c: float = Field(default=25.0, ge=-60, le=120)
    spread: SpreadSpec = Field(default_factory=SpreadSpec)
    cell: Literal["lfp", "nmc", "lto", "lfp_prada2013"] | UserCellSpec | None = None


class BmsSpec(_Strict):
    profile: str = Field(default="lfp", max_length=100)
    set: dict[str, Any] = Field(default_factory=dict, max_length=1000)


class BoardSpec(_Strict):
    """The twin's board: dotted-key overrides of the default board profile."""

    set: dict[str, Any] = Field(default_factory=dict, max_length=1000)


OLD_BOARD_PREFIX = "hardware."  # the old spelling: a board setting in the brain's profile
# Old-spelling settings the brain also read (as its own draw): they set its assumption as well.
_OLD_FIRMWARE_TWINS = {"supply.quiescent_a": "board_draw.awake_a", "supply.sleep_a": "board_draw.asleep_a"}


def _translate_old_board_spelling(data: Any) -> Any:
    """``bms: {set: {hardware.X: v}}`` becomes ``board: {set: {X: v}}`` (see the module docstring)."""
    if not isinstance(data, dict) or not isinstance(data.get("bms"), dict):
        return data
    bms_set = data["bms"].get("set")
    if not isinstance(bms_set, dict) or not any(str(k).startswith(OLD_BOARD_PREFIX) for k in bms_set):
        return data
    board = data.get("board")
    if board is None:
        board = {}
    if not isinstance(board, dict) or not isinstance(board.get("set", {}), dict):
        return data  # the board key's own error is reported
    kept: dict[Any, Any] = {}
    moved: dict[str, Any] = {}
    for key, value in bms_set.items():
        if str(key).startswith(OLD_BOARD_PREFIX):
            new = str(key).removeprefix(OLD_BOARD_PREFIX)
            moved[new] = value
            if new in _OLD_FIRMWARE_TWINS:
                kept.setdefault(_OLD_FIRMWARE_TWINS[new], value)
        else:
            kept[key] = value
    return {
        **data,
        "bms": {**data["bms"], "set": kept},
        "board": {**board, "set": {**moved, **(board.get("set") or {})}},
    }


# ---------------------------------------------------------------------------- conditions
class Conditions(_Strict):
    """What ``expect`` checks and ``run_until`` waits for; every given key must hold."""

    state: StateName | None = None
    faults: list[FaultName] | None = None
    faults_absent: list[FaultName] | None = None
    charge_fet: FetState | None = None
    discharge_fet: FetState | None = None
    events: list[str | dict[Any, Any]] | None = None
    soc: Range | None = None
    cell_v: Range | None = None
    pack_v: Range | None = None
    temperature_c: Range | None = None
    warnings: list[FaultName] | None = None
    diagnosis: Literal["none", "fix_root_cause", "soft_reset", "hard_reset", "replace_cells", "service"] | None = None

    @field_validator("soc", "cell_v", "pack_v", "temperature_c")
    @classmethod
    def _ordered(cls, value: Range | None) -> Range | None:
        if value is not None and value[0] > value[1]:
            raise ValueError("a range is [low, high] with low ≤ high")
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str | dict[Any, Any]] | None) -> list[str | dict[Any, Any]] | None:
        for item in value or []:
            kind, _fields = event_pattern(item)
            if kind not in EVENT_KINDS:
                raise ValueError(f"unknown event kind {kind!r}")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Conditions:
        if not self.model_fields_set:
            raise ValueError("needs at least one condition")
        return self


_PATTERN_SHAPE = "an event is a kind, {kind: ..., field: ...} or {kind: {field: ...}}"
EventValue = str | int | float | bool | None


def _yaml_key(key: Any) -> str:
    """YAML 1.1 reads a bare ``on``/``off`` key as a boolean; in an event pattern it is a name."""
    if key is True:
        return "on"
    if key is False:
        return "off"
    if not isinstance(key, str | int):
        raise ValueError(f"an event field is a name, not {key!r}")
    return str(key)


def _field_value(name: str, value: Any) -> Any:
    """What an event field can be compared with: a number, a word, yes/no or a list of those
    (events carry nothing else)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, EventValue):
            raise ValueError(f"event field {name!r} must be a number, a word, yes/no or a list of those")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"event field {name!r} must be a finite number")
    return value


def _pattern_fields(fields: Any) -> dict[str, Any]:
    if fields is None:
        return {}
    if not isinstance(fields, dict):
        raise ValueError(_PATTERN_SHAPE)
    named = {_yaml_key(k): v for k, v in fields.items()}
    return {k: _field_value(k, v) for k, v in named.items()}


def event_pattern(item: Any) -> tuple[str, dict[str, Any]]:
    """(kind, fields that must match) of one ``events`` entry; ValueError for any other shape."""
    if isinstance(item, str):
        return item, {}
    if not isinstance(item, dict) or not item:
        raise ValueError(_PATTERN_SHAPE)
    named = {_yaml_key(k): v for k, v in item.items()}
    if "kind" in named:
        kind = named.pop("kind")
        if not isinstance(kind, str):
            raise ValueError(f"an event kind is a word, not {kind!r}")
        return kind, _pattern_fields(named)
    if len(named) != 1:
        raise ValueError(_PATTERN_SHAPE)
    kind, fields = next(iter(named.items()))
    return kind, _pattern_fields(fields)


class RunUntil(Conditions):
    timeout: Duration

    @model_validator(mode="after")
    def _not_empty(self) -> RunUntil:
        if not (self.model_fields_set - {"timeout"}):
            raise ValueError("needs at least one condition besides timeout")
        return self


# ---------------------------------------------------------------------------- step values
class LoadSpec(_Strict):
    current_a: float | None = Field(default=None, ge=0, le=1e6)
    power_w: float | None = Field(default=None, ge=0, le=1e9)
    resistance_ohm: float | None = Field(default=None, gt=0, le=1e9)

    @model_validator(mode="after")
    def _exactly_one(self) -> LoadSpec:
        # Count values, not keys: ``current_a: null`` names a key but gives no load.
        given = [v for v in (self.current_a, self.power_w, self.resistance_ohm) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of current_a, power_w, resistance_ohm")
        return self


class ProfileSpec(_Strict):
    csv: str = Field(max_length=4096)


class ChargerSpec(_Strict):
    voltage_v: float = Field(gt=0, le=10_000)
    current_a: float = Field(gt=0, le=1e6)
    min_battery_v: float = Field(default=0.0, ge=0, le=10_000)


class ShortSpec(_Strict):
    resistance_ohm: float = Field(gt=0, le=1e9)


class AmbientSpec(_Strict):
    temperature_c: float = Field(ge=-60, le=120)


# A sensor of the pack: one of its cells' voltage or temperature taps (from 1), or the current.
SensorName = Annotated[str, Field(max_length=40, pattern=r"^(cell_v_[1-9][0-9]*|cell_t_[1-9][0-9]*|current)$")]


class InjectSpec(_Strict):
    fault: Literal[INJECTABLE_FAULTS]  # type: ignore[valid-type]
    cell: int | None = Field(default=None, ge=1)
    resistance_ohm: float | None = Field(default=None, gt=0, le=1e9)
    soh: float | None = Field(default=None, gt=0, le=1)
    sensor: SensorName | None = None
    # A stuck sensor may report anything a broken ADC can, NaN and infinity included: the brain
    # must then see an unreadable sensor.
    value: float | None = Field(default=None, allow_inf_nan=True)
    per_hour: float | None = Field(default=None, ge=-1e6, le=1e6)
    fet: Literal["charge", "discharge"] | None = None

    @model_validator(mode="after")
    def _needs(self) -> InjectSpec:
        needs = {
            "cell_internal_short": ("cell", "resistance_ohm"),
            "capacity_fade": ("cell", "soh"),
            "open_balance_wire": ("cell",),
            "sensor_stuck": ("sensor", "value"),
            "sensor_drift": ("sensor", "per_hour"),
            "fet_stuck_closed": ("fet",),
        }.get(self.fault, ())
        missing = [k for k in needs if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{self.fault} needs {', '.join(missing)}")
        return self


class RepairSpec(_Strict):
    fault: Literal[INJECTABLE_FAULTS]  # type: ignore[valid-type]
    cell: int | None = Field(default=None, ge=1)
    sensor: SensorName | None = None
    fet: Literal["charge", "discharge"] | None = None


class ReplaceCellSpec(_Strict):
    cell: int = Field(ge=1)
    soc: float = Field(ge=0, le=1)


class ServiceClear(_Strict):
    service_clear: FaultName
    authenticated: bool = True


DisconnectTarget = Literal["load", "charger", "short", "profile", "main_leads", "balance_connector"]
ConnectTarget = Literal["main_leads", "balance_connector"]

STEP_KINDS: dict[str, Any] = {
    "load": LoadSpec,
    "profile": ProfileSpec,
    "charger": ChargerSpec,
    "disconnect": DisconnectTarget,
    "connect": ConnectTarget,
    "short": ShortSpec,
    "ambient": AmbientSpec,
    "inject": InjectSpec,
    "repair": RepairSpec,
    "replace_cell": ReplaceCellSpec,
    "press": Literal["reset_button"],
    "command": Literal["soft_reset"] | ServiceClear,
    "run": Duration,
    "run_until": RunUntil,
    "expect": Conditions,
    "note": Annotated[str, Field(max_length=MAX_TEXT_CHARS)],
}


class Step(_Strict):
    """One timeline entry: its kind, its validated value and where it stands in the file."""

    kind: str
    value: Any
    index: int
    line: int | None = None


class Scenario(_Strict):
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    pack: PackSpec = Field(default_factory=PackSpec)
    bms: BmsSpec = Field(default_factory=BmsSpec)
    board: BoardSpec = Field(default_factory=BoardSpec)
    dt: Duration = 0.1
    timeline: list[dict[str, Any]] = Field(max_length=MAX_STEPS)
    source: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _old_spelling(cls, data: Any) -> Any:
        return _translate_old_board_spelling(data)

    @field_validator("dt")
    @classmethod
    def _dt_range(cls, value: float) -> float:
        if not 1e-3 <= value <= 60:
            raise ValueError("dt must lie between 1ms and 60s")
        return value


# ---------------------------------------------------------------------------- loading
def _key_text(part: object) -> str:
    """One part of a key path as the error names it: a key with blanks, line breaks or other
    invisible characters in it is quoted (``'\\n\\n'``), so the error stays one readable line."""
    text = str(part)
    return text if text and text.isprintable() and not any(c.isspace() for c in text) else repr(text)


def _sentence(file: str, lines: dict[Location, int], loc: Location, message: str) -> str:
    line = line_of(lines, loc)
    key = ".".join(_key_text(p) for p in loc) or "(top level)"
    where = f"{file}, line {line}" if line else file
    return f"{where}: {key}: {message}"


def _first_error(err: ValidationError) -> tuple[Location, str]:
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "this key is required"
    elif first["type"] == "literal_error" and "expected" in first.get("ctx", {}):
        msg = f"{first.get('input')!r} is not allowed; expected {first['ctx']['expected']}"
    return loc, msg


def parse_steps(raw: list[dict[str, Any]], file: str, lines: dict[Location, int]) -> list[Step]:
    from pydantic import TypeAdapter

    steps: list[Step] = []
    for i, entry in enumerate(raw):
        loc: Location = ("timeline", i)
        if isinstance(entry, str) and entry in STEP_KINDS and entry == "note":
            entry = {"note": ""}
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ScenarioError(
                _sentence(file, lines, loc, "each step is a mapping with exactly one key (e.g. `- run: 10min`)")
            )
        kind, value = next(iter(entry.items()))
        kind = str(kind)
        if kind not in STEP_KINDS:
            raise ScenarioError(
                _sentence(file, lines, loc + (kind,), f"unknown step; use one of {', '.join(STEP_KINDS)}")
            )
        try:
            parsed = TypeAdapter(STEP_KINDS[kind]).validate_python(value)
        except ValidationError as err:
            sub, msg = _first_error(err)
            raise ScenarioError(_sentence(file, lines, loc + (kind,) + sub, msg)) from None
        steps.append(Step(kind=kind, value=parsed, index=i, line=line_of(lines, loc)))
    return steps


def read_document(path: Path) -> tuple[Any, dict[Location, int]]:
    """A YAML file's data and key lines, read within the input limits (size, nesting, aliases, no
    NUL byte), or ScenarioError with one sentence: for scenarios and any other user document."""
    file = str(path)
    try:
        return load_yaml_with_lines(path)
    except OSError as err:
        raise ScenarioError(f"{file}: cannot read the file ({err.strerror or err})") from None
    except InputLimitError as err:
        where = f"{file}, line {err.line}" if err.line else file
        raise ScenarioError(f"{where}: {err.reason}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(f"{file}{_yaml_problem(err)}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{file}: not a text file (not UTF-8)") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """', line N: not valid YAML (what)' on one line, whatever kind of YAML error it is."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "reason", None) or str(err)
    where = f", line {mark.line + 1}" if mark is not None else ""
    return f"{where}: not valid YAML ({' '.join(str(problem).split())})"


def load_scenario(path: Path | str) -> tuple[Scenario, list[Step]]:
    """Read and validate a scenario file completely, or raise ScenarioError."""
    path = Path(path)
    file = str(path)
    data, lines = read_document(path)
    if not isinstance(data, dict):
        raise ScenarioError(f"{file}: a scenario is a mapping with name, pack, bms, dt and timeline")
    try:
        scenario = Scenario.model_validate({**data, "source": file})
    except ValidationError as err:
        loc, msg = _first_error(err)
        raise ScenarioError(_sentence(file, lines, loc, msg)) from None
    try:
        load_profile(scenario.bms.profile, scenario.bms.set)
    except ProfileError as err:
        raise ScenarioError(_sentence(file, lines, ("bms", "set"), str(err))) from None
    try:
        load_board(overrides=scenario.board.set)
    except BoardError as err:
        where: Location = ("board", "set") if "board" in data else ("bms", "set")  # the old spelling
        raise ScenarioError(_sentence(file, lines, where, str(err))) from None
    steps = parse_steps(scenario.timeline, file, lines)
    if not steps:
        raise ScenarioError(_sentence(file, lines, ("timeline",), "the timeline is empty"))
    _check_cells(scenario, steps, file, lines)
    _check_total_duration(steps, file, lines)
    return scenario, steps


def _check_total_duration(steps: list[Step], file: str, lines: dict[Location, int]) -> None:
    """Runs and run_until timeouts together stay within MAX_DURATION_S, so every run ends."""
    total = 0.0
    for step in steps:
        total += float(step.value) if step.kind == "run" else step.value.timeout if step.kind == "run_until" else 0.0
        if total > MAX_DURATION_S:
            loc: Location = ("timeline", step.index, step.kind)
            raise ScenarioError(_sentence(file, lines, loc, "the timeline runs longer than 366 d in all"))


def _check_cells(scenario: Scenario, steps: list[Step], file: str, lines: dict[Location, int]) -> None:
    """Cell numbers in steps must exist in the pack (1-based, series groups)."""
    series = scenario.pack.series
    for step in steps:
        cell = getattr(step.value, "cell", None)
        if cell is not None and cell > series:
            raise ScenarioError(
                _sentence(
                    file,
                    lines,
                    ("timeline", step.index, step.kind, "cell"),
                    f"cell {cell} does not exist in a {series}-cell pack",
                )
            )
        sensor = getattr(step.value, "sensor", None)
        if sensor and sensor != "current" and int(sensor.rsplit("_", 1)[1]) > series:
            raise ScenarioError(
                _sentence(
                    file,
                    lines,
                    ("timeline", step.index, step.kind, "sensor"),
                    f"{sensor} does not exist in a {series}-cell pack",
                )
            )


def resolve_relative(scenario: Scenario, name: str) -> Path:
    """Paths in a scenario are relative to the scenario file."""
    base = Path(scenario.source).parent if scenario.source else Path.cwd()
    path = Path(name)
    return path if path.is_absolute() else base / path
