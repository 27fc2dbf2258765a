"""BMS profiles: every threshold, delay and setting the brain uses, as validated data.

A profile is a YAML file in ``profiles/`` (or a user's own); a scenario overrides any value with
dotted keys (``cell_undervoltage.trip_v: 2.6``, ``sleep.delay_s: 600``). Thresholds carry their unit
in their key (``trip_v``, ``trip_c`` for °C, ``trip_c_rate`` for multiples of the rated capacity per
hour, ``trip_s``, ``trip_flag`` for yes/no diagnostics), so a file reads unambiguously.
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Direction = Literal["above", "below"]
Blocks = Literal["charge", "discharge", "both", "none"]
Recovery = Literal["auto", "charger", "load-removal", "soft", "latched", "persistent"]
ReleaseWhen = Literal["hysteresis", "load_removed", "charger_removed", "never"]

THRESHOLD_UNITS = ("v", "c", "c_rate", "s", "flag")


class ProfileError(ValueError):
    """A profile or an override is invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Protection(_Strict):
    """One protection of SPEC §3: condition, debounce delays, hysteresis, paths and recovery."""

    quantity: str
    direction: Direction
    enabled: bool = True
    trip_v: float | None = None
    trip_c: float | None = None
    trip_c_rate: float | None = None
    trip_s: float | None = None
    trip_flag: float | None = None
    trip_delay_s: float = Field(ge=0)
    release_v: float | None = None
    release_c: float | None = None
    release_c_rate: float | None = None
    release_s: float | None = None
    release_delay_s: float = Field(default=0.0, ge=0)
    release_when: ReleaseWhen
    warn_v: float | None = None
    warn_c: float | None = None
    warn_c_rate: float | None = None
    blocks: Blocks
    recovery: Recovery
    escalate_count: int | None = Field(default=None, ge=1)
    escalate_window_s: float | None = Field(default=None, gt=0)
    in_afe: bool = False
    recovery_charge_c_rate: float | None = None
    # A condition judged over time (a stuck sensor) cannot be seen in a boot's first reading: an
    # active fault of this kind is presumed present this long after a boot (SPEC §4).
    presumed_after_boot_s: float = Field(default=0.0, ge=0)
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
    cell_v_min_v: float
    cell_v_max_v: float
    temperature_min_c: float
    temperature_max_c: float
    current_max_c_rate: float = Field(gt=0)
    stack_mismatch_fraction: float = Field(gt=0)
    stack_mismatch_min_v: float = Field(ge=0)
    stuck_window_s: float = Field(gt=0)
    stuck_min_readings: int = Field(ge=2)
    stuck_others_changed_within_s: float = Field(gt=0)
    stuck_deviation_v: float = Field(gt=0)
    stuck_deviation_c: float = Field(gt=0)
    erratic_jump_v: float = Field(gt=0)
    fet_leak_a: float = Field(gt=0)
    fet_leak_delay_s: float = Field(ge=0)


class Sleep(_Strict):
    delay_s: float = Field(ge=0)
    rearm_s: float = Field(ge=0)


class Reset(_Strict):
    service_clears_latched: bool


class CellHealth(_Strict):
    learn_interval_s: float = Field(gt=0)
    self_discharge_c_rate: float = Field(gt=0)
    self_discharge_intervals: int = Field(ge=1)
    min_capacity_fraction: float = Field(gt=0, lt=1)
    voltage_uncertainty_v: float = Field(ge=0)
    compare_max_doubt_soc: float = Field(gt=0, le=1)


class CellChange(_Strict):
    threshold_v: float = Field(gt=0)


class Balancing(_Strict):
    enabled: bool
    threshold_v: float = Field(gt=0)
    min_cell_v: float
    max_temperature_c: float
    bleed_resistance_ohm: float = Field(gt=0)
    top_until_out_soc: float = Field(gt=0, le=1)


class SocSettings(_Strict):
    full_cell_v: float
    full_tail_c_rate: float = Field(gt=0)
    full_hold_s: float = Field(ge=0)
    ocv_rest_s: float = Field(ge=0)
    ocv_min_slope_v: float = Field(gt=0)
    ocv_min_correction: float = Field(ge=0)
    save_interval_s: float = Field(gt=0)


class Limits(_Strict):
    charge_c_rate: float = Field(ge=0)
    discharge_c_rate: float = Field(ge=0)
    charge_voltage_cell_v: float = Field(gt=0)
    charge_cell_v_points: list[float]
    charge_cell_v_factors: list[float]
    discharge_cell_v_points: list[float]
    discharge_cell_v_factors: list[float]
    charge_temperature_points_c: list[float]
    charge_temperature_factors: list[float]
    discharge_temperature_points_c: list[float]
    discharge_temperature_factors: list[float]

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


class Afe(_Strict):
    cell_v_noise_v: float = Field(ge=0)
    cell_v_offset_v: float
    cell_v_resolution_v: float = Field(ge=0)
    current_noise_a: float = Field(ge=0)
    current_offset_a: float
    current_resolution_a: float = Field(ge=0)
    temperature_noise_c: float = Field(ge=0)
    temperature_resolution_c: float = Field(ge=0)
    watchdog_s: float = Field(gt=0)


class Supply(_Strict):
    hold_up_s: float = Field(ge=0)
    quiescent_a: float = Field(ge=0)
    sleep_a: float = Field(ge=0)


class Fet(_Strict):
    on_resistance_ohm: float = Field(ge=0)
    thermal_mass_j_per_k: float = Field(gt=0)
    cooling_w_per_k: float = Field(gt=0)


class Hardware(_Strict):
    afe: Afe
    supply: Supply
    fet: Fet
    reconnect_order_damages_afe: bool


class Profile(_Strict):
    """The whole profile. ``protections`` keeps the file's order, which is the evaluation order."""

    name: str
    cycle_s: float = Field(gt=0)
    rest_current_c_rate: float = Field(ge=0)
    protections: dict[str, Protection]
    sensors: Sensors
    sleep: Sleep
    reset: Reset
    cell_health: CellHealth
    cell_change: CellChange
    balancing: Balancing
    soc: SocSettings
    limits: Limits
    hardware: Hardware


def _builtin_text(name: str) -> str:
    try:
        return resources.files("openbms.bms").joinpath("profiles", f"{name}.yaml").read_text("utf-8")
    except FileNotFoundError:
        raise ProfileError(f"unknown BMS profile {name!r}; built in: {', '.join(builtin_profiles())}") from None


def builtin_profiles() -> list[str]:
    folder = resources.files("openbms.bms").joinpath("profiles")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _raw_profile(name: str) -> dict[str, Any]:
    raw = yaml.safe_load(_builtin_text(name))
    base = raw.pop("extends", None)
    overrides = raw.pop("set", {}) or {}
    if base is not None:
        merged = _raw_profile(base)
        merged["name"] = raw.get("name", name)
        apply_overrides(merged, overrides)
        return merged
    return dict(raw)


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Apply dotted-key overrides in place. A protection's name may stand first (SPEC §8)."""
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        node: Any = raw
        if parts[0] in raw.get("protections", {}):
            node = raw["protections"]
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[: depth + 1])
                raise ProfileError(f"unknown setting {dotted!r} ({where!r} does not exist)")
            node = node[part]
        leaf = parts[-1]
        if not isinstance(node, dict):
            raise ProfileError(f"unknown setting {dotted!r}")
        is_protection = node is not raw and "quantity" in node
        if leaf not in node and not (is_protection and _is_protection_key(leaf)):
            raise ProfileError(f"unknown setting {dotted!r}")
        node[leaf] = value


def _is_protection_key(key: str) -> bool:
    return key in Protection.model_fields


def load_profile(name: str = "lfp", overrides: dict[str, Any] | None = None) -> Profile:
    """The built-in profile ``name`` with dotted-key ``overrides`` applied and validated."""
    raw = copy.deepcopy(_raw_profile(name))
    apply_overrides(raw, overrides or {})
    try:
        return Profile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p not in ("protections",))
        raise ProfileError(f"setting {where!r}: {first['msg']}") from None
