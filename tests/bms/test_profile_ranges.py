"""Every number in a profile is finite and inside its physical range (issue 8, item 6).

A NaN threshold compares false with everything, so ``trip_v: .nan`` used to switch the
undervoltage protection off without a word; these tests hold the validator to refusing it.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from openbms.bms.profile import ProfileError
from openbms.profiles import builtin_profiles, load_profile


@pytest.mark.parametrize("name", ["lfp", "nmc", "lto"])
def test_the_builtin_profiles_stay_valid(name: str) -> None:
    assert name in builtin_profiles()
    load_profile(name)


@pytest.mark.parametrize(
    "key, value",
    [
        ("cell_undervoltage.trip_v", math.nan),
        ("cell_undervoltage.trip_v", math.inf),
        ("cell_overvoltage.trip_v", -math.inf),
        ("cell_undervoltage.trip_delay_s", math.nan),
        ("charge_overtemperature.trip_c", math.nan),
        ("discharge_overcurrent.trip_c_rate", math.inf),
        ("sensors.cell_v_max_v", math.inf),
        ("soc.full_cell_v", math.nan),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(key: str, value: float) -> None:
    with pytest.raises(ProfileError, match="finite") as info:
        load_profile("lfp", {key: value})
    assert repr(key) in str(info.value)


def test_a_non_finite_entry_in_a_derating_table_is_refused() -> None:
    with pytest.raises(ProfileError, match="limits.charge_cell_v_factors"):
        load_profile("lfp", {"limits.charge_cell_v_factors": [1.0, math.nan, 0.1, 0.0]})


@pytest.mark.parametrize(
    "key, value",
    [
        ("cell_undervoltage.trip_v", 7.0),  # no lithium cell reaches 7 V
        ("cell_undervoltage.trip_v", -1.0),
        ("charge_overtemperature.trip_c", 400.0),
        ("charge_undertemperature.trip_c", -100.0),
        ("short_circuit.trip_c_rate", 1e6),
        ("cell_undervoltage.trip_delay_s", 1e9),  # a protection delayed 30 years is none
        ("discharge_overcurrent.escalate_count", 1e11),
        ("discharge_overcurrent.escalate_count", 0),
        ("cycle_s", 0.0),
    ],
)
def test_numbers_outside_their_physical_range_are_refused_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("lfp", {key: value})
    assert repr(key) in str(info.value)


@pytest.mark.parametrize(
    "key, value",
    [
        ("cell_undervoltage.trip_v", 2.6),
        ("discharge_overcurrent.escalate_count", 10),
        ("charge_undertemperature.trip_c", -40.0),
        ("short_circuit.trip_c_rate", 50.0),
    ],
)
def test_real_values_are_still_accepted(key: str, value: float) -> None:
    load_profile("lfp", {key: value})


def test_the_sensor_bands_must_be_ordered() -> None:
    with pytest.raises(ProfileError, match="sensors"):
        load_profile("lfp", {"sensors.cell_v_min_v": 5.0})


def test_replacing_the_protections_table_is_one_clear_error() -> None:
    with pytest.raises(ProfileError):
        load_profile("lfp", {"protections": 5, "cell_undervoltage.trip_v": 2.6})
