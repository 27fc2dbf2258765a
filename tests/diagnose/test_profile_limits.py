"""A board is judged with its own chemistry's limits (issue 11: thresholds only as data).

The expected limits are read by hand from the profile files (`bms/profiles/lfp.yaml`, and the
`set:` overrides of `nmc.yaml` and `lto.yaml`), not from the code under test.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from openbms.cli import app
from openbms.devices.model import DeviceReading
from openbms.diagnose.engine import diagnose
from openbms.diagnose.from_device import snapshot_from_reading
from openbms.profiles import load_profile

# profile: (over-voltage trip, under-voltage trip, its release, deep discharge, charge V per cell)
HAND_READ = {
    "lfp": (3.65, 2.50, 2.90, 2.00, 3.45),
    "nmc": (4.25, 2.80, 3.20, 2.20, 4.15),
    "lto": (2.80, 1.60, 2.00, 1.20, 2.70),
}


def _reading(cell_v: float, series: int, faults: list[str]) -> DeviceReading:
    return DeviceReading(
        protocol="jbd",
        cell_v=[cell_v] * series,
        temperature_c=[22.0],
        current_a=0.0,
        pack_v=cell_v * series,
        soc=0.05,
        charge_fet=True,
        discharge_fet=not faults,
        faults=faults,
    )


@pytest.mark.parametrize("name", sorted(HAND_READ))
def test_a_board_judged_with_a_profile_gets_that_profiles_limits(name: str) -> None:
    ov, uv, uv_release, deep, charge_cell_v = HAND_READ[name]
    t = snapshot_from_reading(_reading(3.0, 13, []), profile=load_profile(name)).thresholds
    assert t.profile == name
    assert (t.cell_overvoltage_v, t.cell_undervoltage_v, t.cell_undervoltage_release_v, t.deep_discharge_v) == (
        pytest.approx(ov),
        pytest.approx(uv),
        pytest.approx(uv_release),
        pytest.approx(deep),
    )
    assert t.charge_voltage_v == pytest.approx(13 * charge_cell_v)


def test_an_nmc_board_under_voltage_quotes_the_nmc_release_not_the_lfp_one() -> None:
    # 13S NMC at 3.0 V a cell, cut off for under-voltage: discharge returns above 3.20 V (NMC).
    flat = _reading(3.0, 13, ["cell_undervoltage"])
    d = diagnose(snapshot_from_reading(flat, profile=load_profile("nmc")))
    text = " ".join(r.text for r in d.reasons) + " ".join(s.text for s in d.steps)
    assert d.recommendation == "fix_root_cause"
    assert "3.20 V" in text and "2.90 V" not in text, text
    assert not any("judged against" in a for a in d.assumptions)


def test_without_a_profile_the_lfp_limits_are_used_and_said_to_be_assumed() -> None:
    flat = _reading(2.6, 4, ["cell_undervoltage"])
    d = diagnose(snapshot_from_reading(flat))
    assert "2.90 V" in " ".join(r.text for r in d.reasons)
    assert any("judged against the lfp profile" in a for a in d.assumptions), d.assumptions


@pytest.mark.parametrize("name", sorted(HAND_READ))
def test_recovery_classes_come_from_the_profile(name: str) -> None:
    profile = load_profile(name)
    t = snapshot_from_reading(_reading(3.0, 4, []), profile=profile).thresholds
    assert t.recovery_classes == {fault: p.recovery for fault, p in profile.protections.items()}
    # the classes a technician relies on (hand-checked in the files)
    assert (t.recovery_classes["deep_discharge"], t.recovery_classes["short_circuit"]) == (
        "persistent",
        "load-removal",
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["--guide", "--profile", "nmc"], ("--profile goes with --device",)),
        (["--state", "saved.json", "--profile", "nmc"], ("--profile goes with --device",)),
        (["--device", "jbd:socket://127.0.0.1:9", "--profile", "lead-acid"], ("choose one of", "lfp")),
    ],
)
def test_a_profile_that_cannot_apply_is_refused_in_one_sentence(args: list[str], words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, ["diagnose", *args])
    assert result.exit_code == 2, result.output
    assert all(w in result.output for w in words), result.output
    assert "Traceback" not in result.output
