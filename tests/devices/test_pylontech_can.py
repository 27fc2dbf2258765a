"""Pylontech-compatible inverter CAN: the recorded vectors decode to their published values and
re-encode to the same bytes; every fault reaches its alarm bit; garbage is refused in one
sentence, never a crash.

The vectors are the repository's copy of the shared set (``vectors/pylontech_can.json``, sources
inside); the decoders are checked against them, the encoder against hand-built frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbms.bms.events import FAULT_NAMES
from openbms.devices import pylontech_can as pc
from openbms.devices.errors import FrameError

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors" / "pylontech_can.json").read_text())
DECODERS = {
    0x351: pc.decode_limits,
    0x355: pc.decode_soc,
    0x35C: pc.decode_request,
    0x35E: lambda payload: {"name": pc.decode_name(payload)},
}


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: f"{v['id']}-{v['hex']}")
def test_a_recorded_frame_decodes_to_its_published_values(vector: dict[str, Any]) -> None:
    decoded = DECODERS[int(vector["id"], 16)](bytes.fromhex(vector["hex"]))
    for key, expected in vector["expect"].items():
        if isinstance(expected, float):
            assert decoded[key] == pytest.approx(expected, abs=1e-9), key
        else:
            assert decoded[key] == expected, key


def _broadcast(**changes: Any) -> pc.Broadcast:
    values: dict[str, Any] = {
        "charge_voltage_limit_v": 53.2,
        "charge_current_limit_a": 370.0,
        "discharge_current_limit_a": 370.0,
        "discharge_voltage_limit_v": 46.0,
        "soc": 0.26,
        "soh": 1.0,
        "pack_v": 52.41,
        "current_a": -12.3,
        "temperature_c": 24.5,
        "protections": frozenset(),
        "warnings": frozenset(),
        "charge_enable": True,
        "discharge_enable": True,
        "force_charge": False,
        "full_charge": False,
        "name": "PYLON",
    }
    values.update(changes)
    return pc.Broadcast(**values)


def test_the_encoder_writes_the_recorded_frames() -> None:
    frames = pc.encode(_broadcast())
    assert frames[0x351].hex() == "1402740e740ecc01"  # the first recorded 0x351
    assert frames[0x355].hex() == "1a006400"
    assert frames[0x35C].hex() == "c000"
    assert frames[0x35E].hex() == "50594c4f4e202020"
    # 0x356 by hand: 52.41 V = 5241 = 0x1479, -12.3 A = -123 = 0xff85, 24.5 °C = 245 = 0x00f5
    assert frames[0x356].hex() == "7914" + "85ff" + "f500"
    assert frames[0x359].hex() == "00000000" + "01" + "504e"  # no alarm, one module, "PN"


@pytest.mark.parametrize(
    ("fault", "byte", "bit"),
    [
        ("cell_overvoltage", 0, 1),
        ("cell_undervoltage", 0, 2),
        ("deep_discharge", 0, 2),
        ("discharge_overtemperature", 0, 3),
        ("charge_undertemperature", 0, 4),
        ("short_circuit", 0, 7),
        ("discharge_overcurrent", 0, 7),
        ("charge_overcurrent", 1, 0),
        ("sensor_fault", 1, 3),
    ],
)
def test_a_fault_sets_its_protection_bit_and_a_warning_the_same_bit_two_bytes_on(
    fault: str, byte: int, bit: int
) -> None:
    frames = pc.encode(_broadcast(protections=pc.alarms_of([fault])))
    assert frames[0x359][byte] == 1 << bit and sum(frames[0x359][:4]) == 1 << bit
    warned = pc.encode(_broadcast(warnings=pc.alarms_of([fault])))[0x359]
    assert warned[2 + byte] == 1 << bit and warned[byte] == 0
    protections, warnings = pc.decode_alarms(frames[0x359])
    assert pc.ALARM_READS_AS[next(iter(protections))] in FAULT_NAMES and not warnings


def test_every_alarm_stands_for_known_faults() -> None:
    for faults in pc.ALARM_FAULTS.values():
        assert set(faults) <= set(FAULT_NAMES)


def test_force_charge_and_the_enables_are_their_bits() -> None:
    assert pc.encode(_broadcast(charge_enable=True, discharge_enable=False, force_charge=True))[0x35C][0] == 0xA0
    assert pc.decode_request(bytes.fromhex("a000")) == {
        "charge_enable": True,
        "discharge_enable": False,
        "force_charge": True,
        "full_charge": False,
    }


def test_out_of_range_values_are_clipped_not_wrapped() -> None:
    frames = pc.encode(_broadcast(charge_current_limit_a=1e9, current_a=-1e9, soc=1.7))
    assert pc.decode_limits(frames[0x351])["charge_current_limit_a"] == pytest.approx(3276.7)
    assert pc.decode_measured(frames[0x356])["current_a"] == pytest.approx(-3276.8)
    assert pc.decode_soc(frames[0x355])["soc"] == pytest.approx(1.0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12))
def test_garbage_is_decoded_or_refused_in_one_sentence(payload: bytes) -> None:
    for decode in (pc.decode_limits, pc.decode_soc, pc.decode_measured, pc.decode_alarms, pc.decode_request):
        try:
            decode(payload)
        except FrameError as err:
            assert "\n" not in str(err)
    pc.decode_name(payload)
