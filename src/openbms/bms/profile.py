"""BMS profiles: every threshold, delay and setting the brain uses, as validated data.

This module is the profile's schema and its validation only; the brain reads no file. The shipped
profiles are YAML files in ``profiles/``, read and merged (``extends:``, ``set:``) by
``openbms.profiles``, the layer above the brain. A scenario overrides any value with
dotted keys (``cell_undervoltage.trip_v: 2.6``, ``sleep.delay_s: 600``). Thresholds carry their unit
in their key (``trip_v``, ``trip_c`` for °C, ``trip_c_rate`` for multiples of the rated capacity per
hour, ``trip_s``, ``trip_flag`` for yes/no diagnostics), so a file reads unambiguously.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticUndefined

Direction = Literal["above", "below"]
Blocks = Literal["charge", "discharge", "both", "none"]
Recovery = Literal["auto", "charger", "load-removal", "soft", "latched", "persistent"]
ReleaseWhen = Literal["hysteresis", "load_removed", "charger_removed", "never"]

THRESHOLD_UNITS = ("v", "c", "c_rate", "s", "flag")

# Physical ranges every number must lie in (docs/behaviour.md §3.3: a finite number inside its physical range).
# They are limits of the validator, generous enough for any real pack, not thresholds: a value
# outside them is a typo or an attack (``.nan``, ``.inf``, ``1e300``) that would silently disable
# a protection, so it is refused before the BMS starts.
MAX_CELL_V = 5.0  # no lithium cell chemistry rests above 5 V
MAX_READING_V = 10.0  # a sensor's plausibility band: an open tap reads two cells
MIN_TEMPERATURE_C, MAX_TEMPERATURE_C = -60.0, 150.0
MAX_C_RATE = 100.0
MAX_SENSOR_C_RATE = 10_000.0  # a current sensor's plausibility band (a hard short of a small pack)
MAX_DELAY_S = 86_400.0  # one day: a protection delayed longer is no protection
MAX_INTERVAL_S = 7 * 86_400.0  # learning and escalation windows
MAX_ESCALATE_COUNT = 100
MAX_TABLE_POINTS = 64
MAX_CURRENT_A = 10_000.0  # AFE noise, offset and leak currents of the largest packs
MAX_NAME_CHARS = 200


def _in(low: float, high: float, *, above: bool = False, default: Any = PydanticUndefined) -> Any:
    """A number within [low, high] (or (low, high] when ``above``), finite by the model config."""
    if above:
        return Field(default, gt=low, le=high)
    return Field(default, ge=low, le=high)


def _volts(default: Any = None) -> Any:
    return _in(0.0, MAX_CELL_V, default=default)


def _celsius(default: Any = None) -> Any:
    return _in(MIN_TEMPERATURE_C, MAX_TEMPERATURE_C, default=default)


def _c_rate(default: Any = None) -> Any:
    return _in(0.0, MAX_C_RATE, default=default)


class ProfileError(ValueError):
    """A profile or an override is invalid; the message names the key."""


class _Strict(BaseModel):
    """No unknown keys, no NaN or infinity anywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Protection(_Strict):
    """One protection of docs/behaviour.md §3: condition, debounce delays, hysteresis, paths and recovery."""

    quantity: str = Field(max_length=MAX_NAME_CHARS)
    direction: Direction
    enabled: bool = True
    trip_v: float | None = _volts()
    trip_c: float | None = _celsius()
    trip_c_rate: float | None = _c_rate()
    trip_s: float | None = _in(0.0, MAX_DELAY_S, default=None)
    trip_flag: float | None = _in(0.0, 1.0, default=None)
    trip_delay_s: float = _in(0.0, MAX_DELAY_S)
    release_v: float | None = _volts()
    release_c: float | None = _celsius()
    release_c_rate: float | None = _c_rate()
    release_s: float | None = _in(0.0, MAX_DELAY_S, default=None)
    release_delay_s: float = _in(0.0, MAX_DELAY_S, default=0.0)
    release_when: ReleaseWhen
    warn_v: float | None = _volts()
    warn_c: float | None = _celsius()
    warn_c_rate: float | None = _c_rate()
    blocks: Blocks
    recovery: Recovery
    escalate_count: int | None = _in(1, MAX_ESCALATE_COUNT, default=None)
    escalate_window_s: float | None = _in(0.0, MAX_INTERVAL_S, above=True, default=None)
    in_afe: bool = False
    recovery_charge_c_rate: float | None = _in(0.0, MAX_C_RATE, above=True, default=None)
    # A condition judged over time (a stuck sensor) cannot be seen in a boot's first reading: an
    # active fault of this kind is presumed present this long after a boot (docs/behaviour.md §4).
    presumed_after_boot_s: float = _in(0.0, MAX_DELAY_S, default=0.0)
    stops_balancing: bool = False

    @model_validator(mode="after")
    def _one_trip_threshold(self) -> Protection:
        if len(self._given("trip")) != 1:
            raise ValueError("needs exactly one trip threshold (trip_v, trip_c, trip_c_rate, ...)")
        if self.release_when == "hysteresis" and len(self._given("release")) != 1:
            raise ValueError("release_when: hysteresis needs one release threshold")
        if self.release_when == "hysteresis":
            trip, release = self.trip, self.release
            assert release is not None
            wrong_side = release >= trip if self.direction == "above" else release <= trip
            if wrong_side:
                raise ValueError("the release threshold must lie on the safe side of the trip")
        return self

    def _given(self, prefix: str) -> list[float]:
        values = (getattr(self, f"{prefix}_{unit}", None) for unit in THRESHOLD_UNITS)
        return [v for v in values if v is not None]

    @property
    def trip(self) -> float:
        return self._given("trip")[0]

    @property
    def release(self) -> float | None:
        given = self._given("release")
        return given[0] if given else None

    @property
    def warn(self) -> float | None:
        given = self._given("warn")
        return given[0] if given else None

    @property
    def blocks_charge(self) -> bool:
        return self.blocks in ("charge", "both")

    @property
    def blocks_discharge(self) -> bool:
        return self.blocks in ("discharge", "both")


class Sensors(_Strict):
    cell_v_min_v: float = _in(-MAX_READING_V, MAX_READING_V)
    cell_v_max_v: float = _in(-MAX_READING_V, MAX_READING_V)
    temperature_min_c: float = _celsius(PydanticUndefined)
    temperature_max_c: float = _celsius(PydanticUndefined)
    current_max_c_rate: float = _in(0.0, MAX_SENSOR_C_RATE, above=True)
    stack_mismatch_fraction: float = _in(0.0, 1.0, above=True)
    stack_mismatch_min_v: float = _in(0.0, MAX_READING_V)
    stuck_window_s: float = _in(0.0, MAX_DELAY_S, above=True)
    stuck_min_readings: int = _in(2, 1_000_000)
    stuck_others_changed_within_s: float = _in(0.0, MAX_DELAY_S, above=True)
    stuck_deviation_v: float = _in(0.0, MAX_CELL_V, above=True)
    stuck_deviation_c: float = _in(0.0, MAX_TEMPERATURE_C - MIN_TEMPERATURE_C, above=True)
    erratic_jump_v: float = _in(0.0, MAX_READING_V, above=True)
    fet_leak_a: float = _in(0.0, MAX_CURRENT_A, above=True)
    fet_leak_delay_s: float = _in(0.0, MAX_DELAY_S)

    @model_validator(mode="after")
    def _bands_ordered(self) -> Sensors:
        if self.cell_v_min_v >= self.cell_v_max_v:
            raise ValueError("cell_v_min_v must lie below cell_v_max_v")
        if self.temperature_min_c >= self.temperature_max_c:
            raise ValueError("temperature_min_c must lie below temperature_max_c")
        return self


class Sleep(_Strict):
    delay_s: float = _in(0.0, MAX_DELAY_S)
    rearm_s: float = _in(0.0, MAX_DELAY_S)
    # Charge current must flow this long to count as a charger (and restart the countdown): a
    # single noisy sample above the rest current is not one.
    charge_confirm_s: float = _in(0.0, MAX_DELAY_S)


class Reset(_Strict):
    service_clears_latched: bool


class CellHealth(_Strict):
    learn_interval_s: float = _in(0.0, MAX_INTERVAL_S, above=True)
    self_discharge_c_rate: float = _in(0.0, MAX_C_RATE, above=True)
    self_discharge_intervals: int = _in(1, 1000)
    min_capacity_fraction: float = Field(gt=0, lt=1)
    voltage_uncertainty_v: float = _in(0.0, MAX_CELL_V)
    compare_max_doubt_soc: float = _in(0.0, 1.0, above=True)


class CellChange(_Strict):
    threshold_v: float = _in(0.0, MAX_CELL_V, above=True)


class Balancing(_Strict):
    enabled: bool
    threshold_v: float = _in(0.0, MAX_CELL_V, above=True)
    min_cell_v: float = _volts(PydanticUndefined)
    max_temperature_c: float = _celsius(PydanticUndefined)
    bleed_resistance_ohm: float = _in(0.0, 1e6, above=True)
    top_until_out_soc: float = _in(0.0, 1.0, above=True)


class SocSettings(_Strict):
    full_cell_v: float = _volts(PydanticUndefined)
    full_tail_c_rate: float = _in(0.0, MAX_C_RATE, above=True)
    full_hold_s: float = _in(0.0, MAX_DELAY_S)
    ocv_rest_s: float = _in(0.0, MAX_DELAY_S)
    ocv_min_slope_v: float = _in(0.0, 100.0, above=True)
    ocv_min_correction: float = _in(0.0, 1.0)
    save_interval_s: float = _in(0.0, MAX_DELAY_S, above=True)


VoltTable = Annotated[list[Annotated[float, Field(ge=0, le=MAX_CELL_V)]], Field(max_length=MAX_TABLE_POINTS)]
TemperatureTable = Annotated[
    list[Annotated[float, Field(ge=MIN_TEMPERATURE_C, le=MAX_TEMPERATURE_C)]], Field(max_length=MAX_TABLE_POINTS)
]
FactorTable = Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(max_length=MAX_TABLE_POINTS)]


class Limits(_Strict):
    charge_c_rate: float = _c_rate(PydanticUndefined)
    discharge_c_rate: float = _c_rate(PydanticUndefined)
    charge_voltage_cell_v: float = _in(0.0, MAX_CELL_V, above=True)
    charge_cell_v_points: VoltTable
    charge_cell_v_factors: FactorTable
    discharge_cell_v_points: VoltTable
    discharge_cell_v_factors: FactorTable
    charge_temperature_points_c: TemperatureTable
    charge_temperature_factors: FactorTable
    discharge_temperature_points_c: TemperatureTable
    discharge_temperature_factors: FactorTable

    @model_validator(mode="after")
    def _tables_match(self) -> Limits:
        for name in ("charge_cell_v", "discharge_cell_v", "charge_temperature", "discharge_temperature"):
            points = getattr(self, f"{name}_points" if "temperature" not in name else f"{name}_points_c")
            factors = getattr(self, f"{name}_factors")
            if len(points) != len(factors) or len(points) < 2:
                raise ValueError(f"{name}: points and factors need the same length (at least 2)")
            if any(b <= a for a, b in zip(points, points[1:], strict=False)):
                raise ValueError(f"{name}: points must increase")
        return self


class BoardDraw(_Strict):
    """What the firmware assumes its own board draws from the cells (it counts it in the SOC)."""

    awake_a: float = _in(0.0, 10.0)
    asleep_a: float = _in(0.0, 10.0)


class Profile(_Strict):
    """The whole profile. ``protections`` keeps the file's order, which is the evaluation order."""

    name: str = Field(max_length=MAX_NAME_CHARS)
    cycle_s: float = _in(0.0, 10.0, above=True)
    rest_current_c_rate: float = _in(0.0, 10.0)
    protections: dict[str, Protection]
    sensors: Sensors
    sleep: Sleep
    reset: Reset
    cell_health: CellHealth
    cell_change: CellChange
    balancing: Balancing
    soc: SocSettings
    limits: Limits
    board_draw: BoardDraw


def is_protection_key(key: str) -> bool:
    """Whether ``key`` is a setting of a protection (an override may add one its file leaves out)."""
    return key in Protection.model_fields


def validate_profile(raw: dict[str, Any]) -> Profile:
    """The profile these plain values describe, or a ``ProfileError`` naming the first wrong key."""
    try:
        return Profile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        loc = first["loc"]
        # A protection is overridden by its own name (``cell_undervoltage.trip_v``), so the error does too.
        where = ".".join(str(p) for p in (loc[1:] if len(loc) > 1 and loc[0] == "protections" else loc))
        raise ProfileError(f"setting {where!r}: {str(first['msg']).removeprefix('Value error, ')}") from None
