"""JK BMS "GPS port" protocol: recorded vectors, exact round trips, the alarm map, and fuzzing.

The vectors are a copy of the shared recording (``vectors/jk.json``); the tests never read outside
the repository. Fuzzing proves the decoder's one promise: a FrameError or a result, nothing else.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_states import live_state

from openbms.bms.events import FAULT_NAMES
from openbms.devices import jk
from openbms.devices.errors import FrameError
from openbms.devices.model import DeviceReading
from openbms.devices.protocols import JkServer, LiveState

VECTORS = json.loads((Path(__file__).parent / "vectors" / "jk.json").read_text())["vectors"]
RESPONSES = [v for v in VECTORS if "request" not in v["name"]]
REQUESTS = [v for v in VECTORS if "request" in v["name"]]
RESPONSE = bytes.fromhex(RESPONSES[0]["hex"])

FAULT_VOCABULARY = frozenset(FAULT_NAMES)  # docs/behaviour.md §3, the project's one list

# What each `expect` key of a vector means, and the wire resolution of that quantity (SI units).
Getter = Callable[[bytes, jk.JkFrame, DeviceReading], Any]
EXPECT: dict[str, tuple[Getter, float]] = {
    "command": (lambda raw, f, r: f.command, 0),
    "checksum": (lambda raw, f, r: f"0x{int.from_bytes(raw[-4:], 'big'):04x}", 0),
    "cells": (lambda raw, f, r: len(r.cell_v or []), 0),
    "cell_v": (lambda raw, f, r: r.cell_v, 0.001),
    "pack_v": (lambda raw, f, r: r.pack_v, 0.01),
    "current_a": (lambda raw, f, r: r.current_a, 0.01),
    "soc": (lambda raw, f, r: r.soc, 0.01),
    "cycles": (lambda raw, f, r: r.cycles, 0),
    "temperature_c": (lambda raw, f, r: r.temperature_c, 1.0),
}


def _close(actual: Any, expected: Any, resolution: float) -> bool:
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(_close(a, e, resolution) for a, e in zip(actual, expected, strict=True))
        )
    if resolution and isinstance(expected, int | float):
        return actual is not None and abs(actual - expected) <= resolution / 2 + 1e-9
    return bool(actual == expected)


def _with(frame: jk.JkFrame, **records: bytes) -> jk.JkFrame:
    """The frame with some records replaced (keys like ``r8b``), decoded again from its bytes."""
    new = dict(frame.records)
    new.update({int(k[1:], 16): v for k, v in records.items()})
    return jk.decode_frame(jk.encode_frame(replace(frame, records=new)))


# --- recorded vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", RESPONSES, ids=lambda v: v["name"])
def test_response_vector_decodes_to_its_documented_values(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    frame = jk.decode_frame(raw)
    reading = jk.to_reading(frame)
    for key, expected in vector["expect"].items():
        assert key in EXPECT, f"test does not know expect key {key!r}"
        getter, resolution = EXPECT[key]
        actual = getter(raw, frame, reading)
        assert _close(actual, expected, resolution), f"{key}: {actual!r} != {expected!r}"


@pytest.mark.parametrize("vector", REQUESTS, ids=lambda v: v["name"])
def test_request_vector_decodes_to_its_documented_values(vector: dict[str, Any]) -> None:
    request = jk.decode_request(bytes.fromhex(vector["hex"]))
    assert vector["expect"] == {"command": request.command}
    assert request.register == jk.REGISTER_ALL


def test_the_documented_example_in_full() -> None:
    """The values the doc and jk_bms.cpp annotate: sign per the vector's note (+2.08 A = charging)."""
    frame = jk.decode_frame(RESPONSE)
    reading = jk.to_reading(frame)
    assert frame.command == jk.COMMAND_READ_ALL and frame.source == jk.SOURCE_BMS
    assert frame.transport == jk.TRANSPORT_REPLY and frame.record_number == 0
    assert frame.protocol_version == 1
    assert reading.current_a == pytest.approx(2.08, abs=0.005)
    assert frame.value(0x80) == 29 and reading.temperature_c == [30, 28]
    assert reading.charge_fet is True and reading.discharge_fet is True
    assert reading.faults == [] and reading.unmapped_alarms == []
    assert reading.nominal_ah == 14 and reading.name == "Input Us"
    values = frame.values()
    assert values["cell_overvoltage_protection_v"] == pytest.approx(4.05)
    assert values["charge_undertemperature_protection_c"] == -20
    assert values["software_version"] == "H6.X__S6.1.3S__"
    assert values["manufacturer_id"] == "BT3072020120000200521001"
    assert values["runtime_s"] == 0xE200 * 60


def test_second_esphome_example_checks_out() -> None:
    """An independent frame: the 13-cell fake traffic in esphome-jk-bms components/jk_bms/jk_bms.cpp,
    published with its header (length 0x0118) and trailer (checksum 0x4728); our rules must accept it."""
    data = bytes.fromhex(
        "792701000002000003103404102805102906"
        "103507102b08102b0910350a10350b10350c"
        "103d0d102680001a8100188200188311ce84"
        "00008500860287000089000000008a000d8b"
        "00008c00088e15548f0eba90106891100492"
        "0005930b54940c8095000596012c97003c98"
        "012c9900199a001e9b0ce49c000a9d019e00"
        "5a9f0046a00064a10064a20014a30046a400"
        "46a5ffeca6fff6a7ffeca8fff6a90daa0000"
        "0005ab00ac00ad02d5ae01af01b0000ab114"
        "b231323334353600000000b300b4496e7075"
        "74205573b532313036b600000000b748372e"
        "585f5f53372e312e30485f5fb800b9000000"
        "00ba42543330373230323031323030303032"
        "3030353231303031c001"
    )
    raw = bytes.fromhex("4e57011800000000060001") + data + bytes.fromhex("000000006800004728")
    frame = jk.decode_frame(raw)
    assert jk.encode_frame(frame) == raw
    reading = jk.to_reading(frame)
    assert reading.cell_v is not None and len(reading.cell_v) == 13
    assert reading.cell_v[:3] == pytest.approx([0.0, 0.0, 4.148])
    assert reading.charge_fet is False and reading.discharge_fet is False
    assert reading.current_a == 0.0 and reading.pack_v == pytest.approx(45.58)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_encode_of_decode_gives_the_exact_bytes_back(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    if vector in REQUESTS:
        assert jk.encode_request(**asdict(jk.decode_request(raw))) == raw
    else:
        assert jk.encode_frame(jk.decode_frame(raw)) == raw


def test_default_request_is_the_documented_read_all() -> None:
    assert jk.encode_request() == bytes.fromhex(REQUESTS[0]["hex"])


# --- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "raw", "amps"),
    [
        (1, 0x80D0, 2.08),  # the vector
        (1, 0x87D0, 20.0),  # doc: charging 20 A
        (1, 0x07D0, -20.0),  # doc: discharging 20 A
        (0, 9500, 5.0),  # doc, version 0: (10000 - 9500) * 0.01 = 5 A charging
        (0, 11000, -10.0),  # doc, version 0: -10 A discharging
        (None, 10000, 0.0),  # no 0xC0 record: version 0, the documented default
    ],
)
def test_current_sign_positive_is_charging(version: int | None, raw: int, amps: float) -> None:
    frame = jk.decode_frame(RESPONSE)
    records = dict(frame.records)
    records[jk.CURRENT] = raw.to_bytes(2, "big")
    records.pop(jk.PROTOCOL_VERSION)
    if version is not None:
        records[jk.PROTOCOL_VERSION] = bytes([version])
    frame = jk.decode_frame(jk.encode_frame(replace(frame, records=records)))
    assert jk.to_reading(frame).current_a == pytest.approx(amps)
    assert jk.encode_value(jk.CURRENT, amps, version or 0) == raw.to_bytes(2, "big")


def test_unknown_protocol_version_leaves_the_current_unknown() -> None:
    frame = _with(jk.decode_frame(RESPONSE), rc0=b"\x07")
    assert jk.to_reading(frame).current_a is None


@pytest.mark.parametrize(("raw", "celsius"), [(0, 0), (29, 29), (100, 100), (101, -1), (140, -40)])
def test_temperatures_above_100_are_negative(raw: int, celsius: int) -> None:
    assert jk.decode_value(0x82, raw.to_bytes(2, "big")) == celsius
    assert jk.encode_value(0x82, celsius) == raw.to_bytes(2, "big")


@pytest.mark.parametrize(("status", "charge", "discharge"), [(0, False, False), (1, True, False), (2, False, True)])
def test_status_bits_give_the_fets(status: int, charge: bool, discharge: bool) -> None:
    reading = jk.to_reading(_with(jk.decode_frame(RESPONSE), r8c=status.to_bytes(2, "big")))
    assert (reading.charge_fet, reading.discharge_fet) == (charge, discharge)


def _twin(charge: bool, discharge: bool, balancer: bool = True) -> LiveState:
    return live_state(charge_fet=charge, discharge_fet=discharge, balancer_enabled=balancer)


def _emulated_status(state: LiveState) -> int:
    replies = JkServer().answer(bytes.fromhex(REQUESTS[0]["hex"]), state, lambda what, fields: False)
    value = jk.decode_frame(replies[0]).value(jk.STATUS)
    assert isinstance(value, int)
    return value


def _three_character_reader(status: int) -> tuple[bool, bool, bool]:
    """How dbus-serialbattery's jkbms.py reads 0x8C: the binary numeral padded to three digits,
    charge = character 2, discharge = character 1, balancing = character 0."""
    digits = bin(status)[2:].rjust(3, "0")
    return digits[2] == "1", digits[1] == "1", digits[0] == "1"


def test_recorded_status_0007_is_both_fets_on_with_the_balancer_and_bit_3_clear() -> None:
    frame = jk.decode_frame(RESPONSE)
    assert frame.records[jk.STATUS] == b"\x00\x07"
    reading = jk.to_reading(frame)
    assert (reading.charge_fet, reading.discharge_fet) == (True, True)
    assert frame.value(0x9D) == 1  # the same board's balance switch setting: on, as bit 2 says


def test_emulator_sends_the_recorded_status_for_the_same_state() -> None:
    assert _emulated_status(_twin(True, True)) == 0x0007


@pytest.mark.parametrize("balancer", [True, False])
@pytest.mark.parametrize(("charge", "discharge"), [(True, True), (True, False), (False, True), (False, False)])
def test_emulator_status_holds_only_what_the_twin_is_doing(charge: bool, discharge: bool, balancer: bool) -> None:
    status = _emulated_status(_twin(charge, discharge, balancer))
    assert status == charge | discharge << 1 | balancer << 2  # bit 3 ("battery dropped") and above: 0
    assert _three_character_reader(status) == (charge, discharge, balancer)


def test_values_encode_back_to_the_recorded_bytes() -> None:
    """The table works both ways: every recorded value re-encodes to its recorded bytes."""
    frame = jk.decode_frame(RESPONSE)
    for rid, raw in frame.records.items():
        assert jk.encode_value(rid, frame.value(rid), frame.protocol_version) == raw, hex(rid)


# --- alarms -------------------------------------------------------------------------------------


def test_module_knows_the_same_spec_names() -> None:
    assert set(jk.FAULT_VOCABULARY) == FAULT_VOCABULARY


@pytest.mark.parametrize("bit", range(16))
def test_every_alarm_bit_maps_to_a_spec_fault_or_a_named_unmapped_alarm(bit: int) -> None:
    frame = _with(jk.decode_frame(RESPONSE), r8b=(1 << bit).to_bytes(2, "big"))
    reading = jk.to_reading(frame)
    names = reading.faults + reading.unmapped_alarms
    assert len(names) == 1, names
    (name,) = names
    assert name.isidentifier() and name == name.lower()
    assert (name in FAULT_VOCABULARY) == bool(reading.faults), f"bit {bit}: {name}"


def test_alarm_bits_that_have_a_spec_meaning() -> None:
    spec = {
        1: "fet_overtemperature",
        2: "cell_overvoltage",
        3: "cell_undervoltage",
        4: "charge_overtemperature",
        5: "charge_overcurrent",
        6: "discharge_overcurrent",
        7: "cell_imbalance",
        9: "charge_undertemperature",
        10: "cell_overvoltage",
        11: "cell_undervoltage",
    }
    for bit in range(16):
        faults, unmapped = jk.alarm_names(1 << bit)
        assert faults == ([spec[bit]] if bit in spec else [])
        assert len(unmapped) == (0 if bit in spec else 1)
    faults, unmapped = jk.alarm_names(0xFFFF)
    assert len(faults) == len(set(faults)) == len(set(spec.values()))
    assert len(unmapped) == 16 - len(spec)


# --- malformed input ----------------------------------------------------------------------------


def _frame_with_data(data: bytes) -> bytes:
    """A well-framed response around any data section (a request's register + value is just bytes)."""
    return jk.encode_request(register=data[0], value=data[1:], source=jk.SOURCE_BMS, transport=jk.TRANSPORT_REPLY)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x88\x00\x00", "0x88 is not a documented record: its length is unknown"),
        (b"\x85\x0f\x85\x0f", "a record twice"),
        (b"\x79\x04\x01\x0e\xed\x02", "cell byte count not a multiple of 3"),
        (b"\x79", "cell record without its count"),
        (b"\x83\x14", "record cut short"),
    ],
)
def test_bad_data_sections_are_frame_errors(data: bytes, why: str) -> None:
    with pytest.raises(FrameError):
        jk.decode_frame(_frame_with_data(data))


def test_a_request_is_not_a_response_and_vice_versa() -> None:
    with pytest.raises(FrameError):
        jk.decode_frame(bytes.fromhex(REQUESTS[0]["hex"]))
    assert jk.decode_request(RESPONSE).register == jk.CELLS  # framing is shared; the data is not a request
    with pytest.raises(FrameError):
        jk.decode_request(jk.encode_frame(replace(jk.decode_frame(RESPONSE), records={})))


def test_find_frame_waits_for_the_rest_and_keeps_a_possible_header_start() -> None:
    assert jk.find_frame(b"") == (None, 0)
    assert jk.find_frame(b"garbage\x4e") == (None, 7)
    assert jk.find_frame(b"xy" + RESPONSE[:100]) == (None, 2)
    assert jk.find_frame(b"xy" + RESPONSE) == (RESPONSE, 2 + len(RESPONSE))


def test_find_frame_skips_an_absurd_length() -> None:
    absurd = b"\x4e\x57\xff\xff" + bytes(10)
    assert jk.find_frame(absurd) == (None, len(absurd))


# --- fuzzing ------------------------------------------------------------------------------------

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=False,
)
_IDS = sorted(jk.RECORDS)


@st.composite
def frames(draw: st.DrawFn) -> jk.JkFrame:
    """Any well-formed response: a random subset of records in random order with random raw values."""
    ids = draw(st.lists(st.sampled_from(_IDS), unique=True, max_size=24))
    records = {}
    for rid in ids:
        size = 3 * draw(st.integers(0, 32)) if rid == jk.CELLS else jk.RECORDS[rid].size
        records[rid] = draw(st.binary(min_size=size, max_size=size))
    return jk.JkFrame(
        command=draw(st.integers(0, 255)),
        source=draw(st.integers(0, 255)),
        transport=draw(st.integers(0, 255)),
        records=records,
        record_number=draw(st.integers(0, 2**32 - 1)),
        terminal_id=draw(st.integers(0, 2**32 - 1)),
    )


def _decode_or_frame_error(raw: bytes) -> jk.JkFrame | None:
    try:
        frame = jk.decode_frame(raw)
    except FrameError:
        return None
    jk.to_reading(frame)  # a decoded frame always gives a reading
    return frame


def _drain(buffer: bytearray) -> list[bytes]:
    """Call find_frame until it has nothing; assert it makes progress (a hang would fail here)."""
    found = []
    for _ in range(len(buffer) + 2):
        frame, consumed = jk.find_frame(buffer)
        assert 0 <= consumed <= len(buffer)
        assert consumed > 0 or len(buffer) < jk.MAX_FRAME_LEN
        del buffer[:consumed]
        if frame is None:
            return found
        assert consumed > 0
        found.append(frame)
    raise AssertionError("find_frame made no progress")


@settings(FUZZ, max_examples=350)
@given(st.binary(max_size=600))
def test_random_bytes_give_a_frame_error_or_a_frame(raw: bytes) -> None:
    frame = _decode_or_frame_error(raw)
    if frame is not None:
        assert jk.encode_frame(frame) == raw
    with contextlib.suppress(FrameError):
        jk.decode_request(raw)
    _drain(bytearray(raw))


@settings(FUZZ, max_examples=200)
@given(frames(), st.data())
def test_valid_frames_round_trip_and_every_damage_is_caught(frame: jk.JkFrame, data: st.DataObject) -> None:
    raw = jk.encode_frame(frame)
    assert jk.decode_frame(raw) == frame
    jk.to_reading(frame)
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    with pytest.raises(FrameError):
        jk.decode_frame(raw[:cut])
    assert jk.find_frame(raw[:cut])[0] is None
    at = data.draw(st.integers(0, len(raw) - 1), label="at")
    flip = data.draw(st.integers(1, 255), label="flip")
    damaged = bytearray(raw)
    damaged[at] ^= flip
    with pytest.raises(FrameError):  # any single corrupted byte: length, end or the 16-bit sum
        jk.decode_frame(bytes(damaged))
    assert jk.find_frame(damaged)[0] is None


@settings(FUZZ, max_examples=150)
@given(frames(), st.integers(0, 0xFFFF), st.binary(max_size=40))
def test_a_wrong_length_field_is_a_frame_error(frame: jk.JkFrame, length: int, tail: bytes) -> None:
    raw = bytearray(jk.encode_frame(frame))
    if length + 2 == len(raw):
        length += 1
    raw[2:4] = length.to_bytes(2, "big")
    raw[-4:] = (sum(raw[:-4]) & 0xFFFF).to_bytes(4, "big")  # a correct sum cannot save it
    with pytest.raises(FrameError):
        jk.decode_frame(bytes(raw))
    found = _drain(bytearray(raw + tail))
    assert bytes(raw) not in found
    if length + 2 > jk.MAX_FRAME_LEN:  # absurd: skipped at once, never waited for
        assert jk.find_frame(raw)[1] > 0


garbage = st.binary(max_size=48) | st.sampled_from([b"\x4e", b"\x4e\x57", b"\x4e\x57\x00\x30", b"\x4e\x57\x01"])


@settings(FUZZ, max_examples=200)
@given(st.lists(st.tuples(garbage, frames()), min_size=1, max_size=4), garbage)
def test_find_frame_recovers_every_frame_between_garbage(pieces: list[tuple[bytes, jk.JkFrame]], tail: bytes) -> None:
    wanted = [jk.encode_frame(f) for _, f in pieces]
    stream = b"".join(g + w for (g, _), w in zip(pieces, wanted, strict=True)) + tail
    assert _drain(bytearray(stream)) == wanted


@settings(FUZZ, max_examples=150)
@given(st.lists(st.tuples(garbage, frames()), min_size=1, max_size=3), garbage, st.data())
def test_find_frame_recovers_frames_arriving_in_chunks(
    pieces: list[tuple[bytes, jk.JkFrame]], tail: bytes, data: st.DataObject
) -> None:
    wanted = [jk.encode_frame(f) for _, f in pieces]
    stream = b"".join(g + w for (g, _), w in zip(pieces, wanted, strict=True)) + tail
    buffer, found, at = bytearray(), [], 0
    while at < len(stream):
        step = data.draw(st.integers(1, 64), label="chunk")
        buffer += stream[at : at + step]
        at += step
        found += _drain(buffer)
    assert found == wanted
