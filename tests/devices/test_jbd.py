"""JBD wire protocol: recorded vectors, exact re-encoding, the protection-bit mapping, and fuzzing.

The vectors are the repository's copy of the shared set (``vectors/jbd.json``, sources inside).
The fuzz tests hold the decoders to their contract: any bytes either decode or raise ``FrameError``
(nothing else, no hang), and ``find_frame`` always makes progress and recovers every valid frame
hidden in garbage.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from live_states import live_state
from stream_checks import drain, feed_in_chunks, fuzz, is_subsequence

from openbms.bms.events import FAULT_NAMES
from openbms.devices import jbd
from openbms.devices.errors import FrameError
from openbms.devices.protocols import ControlHook, JbdServer, LiveState

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors" / "jbd.json").read_text())

FAULT_VOCABULARY = frozenset(FAULT_NAMES)  # docs/behaviour.md §3, the project's one list

# Protocol resolution of each decoded quantity; vectors are compared within half of it.
RESOLUTION = {
    "pack_v": 0.01,
    "current_a": 0.01,
    "remaining_ah": 0.01,
    "nominal_ah": 0.01,
    "soc": 0.01,
    "temperatures_c": 0.1,
    "cell_v": 0.001,
}


def _actual(frame: bytes) -> dict[str, Any]:
    """Everything a vector's ``expect`` may name, decoded from its frame."""
    if frame[1] in (jbd.READ, jbd.WRITE):
        request = jbd.decode_request(frame)
        out: dict[str, Any] = {"register": request.register, "write": request.write}
        if request.register == jbd.REG_FET_CONTROL and request.write:
            out["charge_fet"], out["discharge_fet"] = jbd.decode_fet_control(request.data)
        return out
    reply = jbd.decode_reply(frame)
    out = {"register": reply.register, "status": reply.status}
    if reply.register == jbd.REG_BASIC_INFO:
        info = jbd.decode_basic_info(reply.data)
        reading = jbd.to_reading(info, None)
        date = info.production_date
        out |= {
            "pack_v": info.pack_v,
            "current_a": info.current_a,
            "remaining_ah": info.remaining_ah,
            "nominal_ah": info.nominal_ah,
            "cycles": info.cycles,
            "production_date": date.isoformat() if date else None,
            "balancing_mask": info.balance_mask,
            "protection_bits": info.protection,
            "faults": reading.faults,
            "software_version": hex(info.software_version),
            "soc": info.soc,
            "charge_fet": info.charge_fet,
            "discharge_fet": info.discharge_fet,
            "cells": info.cell_count,
            "temperatures_c": info.temperatures_c,
        }
    elif reply.register == jbd.REG_CELLS:
        out["cell_v"] = jbd.decode_cells(reply.data)
    elif reply.register == jbd.REG_NAME:
        out["name"] = jbd.decode_name(reply.data)
    return out


def _reencode(frame: bytes) -> bytes:
    """Decode ``frame`` down to our values and encode it again from them alone."""
    if frame[1] in (jbd.READ, jbd.WRITE):
        request = jbd.decode_request(frame)
        if not request.write:
            return jbd.encode_request(request.register)
        if request.register == jbd.REG_FET_CONTROL:
            return jbd.encode_fet_control(*jbd.decode_fet_control(request.data))
        return jbd.encode_write(request.register, request.data)
    reply = jbd.decode_reply(frame)
    encoders: dict[int, Callable[[bytes], bytes]] = {
        jbd.REG_BASIC_INFO: lambda d: jbd.encode_basic_info(jbd.decode_basic_info(d)),
        jbd.REG_CELLS: lambda d: jbd.encode_cells(jbd.decode_cells(d)),
        jbd.REG_NAME: lambda d: jbd.encode_name(jbd.decode_name(d)),
    }
    return jbd.encode_reply(reply.register, encoders[reply.register](reply.data), reply.status)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_decodes_to_its_expected_values(vector: dict[str, Any]) -> None:
    actual = _actual(bytes.fromhex(vector["hex"]))
    for key, want in vector["expect"].items():
        assert key in actual, f"vector names {key!r}, which the decoder does not produce"
        got = actual[key]
        if key in RESOLUTION:
            tol = RESOLUTION[key] / 2
            if isinstance(want, list):
                assert len(got) == len(want), key
                assert all(math.isclose(g, w, abs_tol=tol) for g, w in zip(got, want, strict=True)), key
            else:
                assert math.isclose(got, want, abs_tol=tol), (key, got, want)
        else:
            assert got == want, (key, got, want)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_reencodes_to_the_exact_bytes(vector: dict[str, Any]) -> None:
    assert _reencode(bytes.fromhex(vector["hex"])).hex() == vector["hex"]


def test_read_requests_are_what_the_encoder_sends() -> None:
    by_register = {v["expect"]["register"]: v["hex"] for v in VECTORS["vectors"] if v["name"].startswith("read")}
    for register, hexed in by_register.items():
        assert jbd.encode_request(register).hex() == hexed


def test_fet_control_frames_match_the_vectors() -> None:
    for v in VECTORS["vectors"]:
        if v["name"].startswith("FET control"):
            e = v["expect"]
            assert jbd.encode_fet_control(e["charge_fet"], e["discharge_fet"]).hex() == v["hex"]


# --- protection bits ---------------------------------------------------------------------------


def _reading_with_protection(word: int) -> Any:
    base = jbd.decode_basic_info(jbd.decode_reply(bytes.fromhex(VECTORS["vectors"][7]["hex"])).data)
    info = jbd.BasicInfo(**{**vars(base), "protection": word})
    return jbd.to_reading(info, None)


@pytest.mark.parametrize("bit", range(16))
def test_every_protection_bit_lands_in_faults_or_unmapped(bit: int) -> None:
    reading = _reading_with_protection(1 << bit)
    assert len(reading.faults) + len(reading.unmapped_alarms) == 1
    assert all(f in FAULT_VOCABULARY for f in reading.faults)
    assert all(a and a not in FAULT_VOCABULARY for a in reading.unmapped_alarms)
    alarm = jbd.PROTECTION_BITS[bit]
    assert reading.faults + reading.unmapped_alarms == [alarm.name]
    assert bool(reading.faults) == (alarm.fault is not None)


def test_protection_table_follows_the_documented_bits() -> None:
    documented = {int(k): v for k, v in VECTORS["protection_bits"].items()}
    assert set(jbd.PROTECTION_BITS) == set(range(16))
    for bit, text in documented.items():
        assert jbd.PROTECTION_BITS[bit].text == text
    for bit in set(range(16)) - set(documented):
        assert jbd.PROTECTION_BITS[bit].unmapped, "undocumented bits are shown, never dropped"
    # the decisions the brief and docs/behaviour.md §3 call for
    assert jbd.PROTECTION_BITS[2].unmapped and jbd.PROTECTION_BITS[3].unmapped  # pack limits
    assert jbd.PROTECTION_BITS[11].fault == "afe_fault"
    assert jbd.PROTECTION_BITS[12].unmapped  # MOS software lock is a command, not a fault


def test_all_bits_at_once_keep_every_name() -> None:
    reading = _reading_with_protection(0xFFFF)
    names = reading.faults + reading.unmapped_alarms
    assert sorted(names) == sorted(a.name for a in jbd.PROTECTION_BITS.values())


def test_reading_carries_the_basic_info() -> None:
    frames = [bytes.fromhex(v["hex"]) for v in VECTORS["vectors"]]
    info = jbd.decode_basic_info(jbd.decode_reply(frames[7]).data)
    cells = jbd.decode_cells(jbd.decode_reply(frames[9]).data)
    reading = jbd.to_reading(info, cells, name="pack-1")
    assert reading.protocol == "jbd" and reading.name == "pack-1"
    assert reading.cell_v == cells and reading.balancing == []
    assert reading.current_a is not None and reading.current_a < 0  # discharging, our sign


def test_balance_bitmaps_cover_cells_1_to_32() -> None:
    base = jbd.decode_basic_info(jbd.decode_reply(bytes.fromhex(VECTORS["vectors"][7]["hex"])).data)
    info = jbd.BasicInfo(**{**vars(base), "balance_mask": 1 | 1 << 17 | 1 << 31})
    data = jbd.encode_basic_info(info)
    assert data[12:16] == bytes.fromhex("00018002")  # cells 1..16 word, then 17..32
    assert jbd.to_reading(jbd.decode_basic_info(data), None).balancing == [1, 18, 32]


def test_error_status_reply_and_name_register() -> None:
    frame = jbd.encode_reply(jbd.REG_NAME, jbd.encode_name("JBD-SP04S034"))
    assert jbd.decode_name(jbd.decode_reply(frame).data) == "JBD-SP04S034"
    error = jbd.decode_reply(jbd.encode_reply(jbd.REG_BASIC_INFO, b"", status=jbd.STATUS_ERROR))
    assert error.status == 0x80 and error.data == b""


# --- register 0x05: the device name -------------------------------------------------------------

REAL_NAME_VECTOR = next(v for v in VECTORS["vectors"] if v["name"].startswith("device name reply"))


def _by_hand(register: int, data: bytes) -> bytes:
    """A reply framed from the published rule alone, not from our encoder: checksum is
    0x10000 - (status + length + data bytes), big-endian, then 0x77."""
    span = bytes((0x00, len(data))) + data
    return bytes((0xDD, register)) + span + ((0x10000 - sum(span)) & 0xFFFF).to_bytes(2, "big") + b"\x77"


def test_real_name_reply_is_the_bare_name_and_its_checksum_is_the_published_rule() -> None:
    frame = bytes.fromhex(REAL_NAME_VECTOR["hex"])
    name = b"JBD-SP10S009-L8S-100A-B-K"
    # The capture is DD 05 00 19, then the 25 name bytes with no length prefix, then FA 10 77.
    assert frame[3] == 0x19 == len(name) and frame[4:-3] == name
    assert (0x10000 - sum(frame[2:-3])) & 0xFFFF == 0xFA10 == int.from_bytes(frame[-3:-1], "big")
    assert jbd.checksum(frame[2:-3]) == 0xFA10
    assert _by_hand(0x05, name) == frame
    assert jbd.decode_name(jbd.decode_reply(frame).data) == name.decode()


def test_protocol_document_example_decodes_bare() -> None:
    # JBD protocol document: DD 05 00 0A "0123456789" <checksum> 77.
    frame = _by_hand(0x05, b"0123456789")
    assert frame[:4] == bytes.fromhex("dd05000a")
    assert jbd.decode_name(jbd.decode_reply(frame).data) == "0123456789"


def test_length_prefixed_name_is_still_read_when_unambiguous() -> None:
    assert jbd.decode_name(b"\x0a0123456789") == "0123456789"
    assert jbd.decode_name(b"\x00") == ""


def test_a_printable_name_is_bare_even_if_its_first_byte_looks_like_a_length() -> None:
    name = "!" + "A" * 0x21  # '!' is 0x21, the length of the rest: still a bare name
    assert jbd.decode_name(name.encode()) == name


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"\x05abc", "?abc"),
        (b"\x03ab\x00", "?ab"),
        (b"JBD\x00\x00", "JBD"),
        (b"\xffname", "\ufffdname"),
        (b"\x01", "?"),
    ],
)
def test_an_odd_name_block_is_still_a_name_never_a_failed_poll(data: bytes, name: str) -> None:
    # The name is only a label: NUL padding or odd bytes must not make a healthy board "silent".
    assert jbd.decode_name(data) == name


def test_empty_name_block_is_an_empty_name() -> None:
    assert jbd.decode_name(b"") == ""


def test_encode_name_refuses_what_could_not_be_read_back() -> None:
    for bad in ("tab\there", "caf\u00e9", "x" * (jbd.MAX_DATA + 1)):
        with pytest.raises(FrameError):
            jbd.encode_name(bad)


def test_emulator_answers_register_5_with_the_bare_name() -> None:
    state = live_state(name="JBD-SP10S009-L8S-100A-B-K")
    request = jbd.encode_request(jbd.REG_NAME)
    refuse: ControlHook = lambda what, fields: False  # noqa: E731 - a name read never writes
    assert JbdServer().answer(request, state, refuse) == [bytes.fromhex(REAL_NAME_VECTOR["hex"])]
    twin = live_state(name="openbms twin")
    assert JbdServer().answer(request, twin, refuse) == [_by_hand(0x05, b"openbms twin")]


def _lfp_100ah_state(**changes: Any) -> LiveState:
    return live_state(
        **{"cell_v": [3.3] * 8, "current_a": -10.0, "pack_v": 26.4, "soc": 0.6, "remaining_ah": 60.0} | changes
    )


def test_factory_mode_and_settings_reads_answer_as_dbus_serialbattery_expects() -> None:
    # dbus-serialbattery lltjbd.py at start-up: write 0x5678 to register 0x00 (enter factory mode),
    # read 0x11 cycle capacity, 0x28 / 0x29 over-current trips and 0x2D function config, leave with
    # 0x0000 to register 0x01. Requests and replies written out byte by byte; the checksum is
    # 0x10000 - sum(span) (see _by_hand). The built-in LFP profile trips at 1 C charge and
    # 1.5 C discharge: 100 A and 150 A on 100 Ah.
    refuse: ControlHook = lambda what, fields: False  # noqa: E731 - control is not allowed
    server, state = JbdServer(), _lfp_100ah_state()
    exchanges = [
        ("dd5a00025678ff3077", "dd000000000077"),  # enter factory mode: ok, empty payload
        ("dda51100ffef77", "dd1100022710ffc777"),  # 0x2710 = 10000 x 10 mAh = 100 Ah
        ("dda52800ffd877", "dd2800022710ffc777"),  # 0x2710 = 10000 x 10 mA = 100 A
        ("dda52900ffd777", "dd290002c568fed177"),  # 0xC568 = -15000 x 10 mA = -150 A
        ("dda52d00ffd377", "dd2d0002000cfff277"),  # balance_en (bit 2) | chg_balance_en (bit 3)
        ("dd5a01020000fffd77", "dd010000000077"),  # leave factory mode
        ("dd5a01022828ffad77", "dd010000000077"),  # leave and save (nothing was written)
    ]
    for request, reply in exchanges:
        assert server.answer(bytes.fromhex(request), state, refuse) == [bytes.fromhex(reply)], request
    no_balancer = _lfp_100ah_state(balancer_enabled=False)
    assert server.answer(bytes.fromhex("dda52d00ffd377"), no_balancer, refuse) == [bytes.fromhex("dd2d00020000fffe77")]


def test_a_factory_mode_write_with_a_wrong_code_is_a_control_write() -> None:
    asked: list[tuple[str, dict[str, object]]] = []

    def refuse(what: str, fields: dict[str, object]) -> bool:
        asked.append((what, fields))
        return False

    # DD 5A 00 02 12 34 chk 77: not the 0x5678 code, so an ordinary (refused) write.
    request = jbd.encode_write(0x00, b"\x12\x34")
    assert request == bytes.fromhex("dd5a00021234ffb877")
    assert JbdServer().answer(request, _lfp_100ah_state(), refuse) == [bytes.fromhex("dd008000ff8077")]
    assert asked == [("write", {"register": 0x00})]


def test_requests_and_replies_are_not_confused() -> None:
    with pytest.raises(FrameError):
        jbd.decode_reply(jbd.encode_request(3))
    with pytest.raises(FrameError):
        jbd.decode_request(bytes.fromhex(VECTORS["vectors"][9]["hex"]))


# --- fuzzing -----------------------------------------------------------------------------------

DATA_DECODERS: tuple[Callable[[bytes], object], ...] = (
    jbd.decode_request,
    jbd.decode_reply,
    jbd.decode_basic_info,
    jbd.decode_cells,
    jbd.decode_name,
    jbd.decode_fet_control,
)


def _decodes_or_frame_error(decode: Callable[[bytes], object], data: bytes) -> bool:
    try:
        decode(data)
    except FrameError:
        return False
    return True


def _check_find_frame(buffer: bytes) -> None:
    """One call's contract: a valid frame, or garbage dropped and at most a plausible start kept."""
    frame, consumed = jbd.find_frame(buffer)
    assert 0 <= consumed <= len(buffer)
    if frame is not None:
        assert buffer[consumed - len(frame) : consumed] == frame
        assert _decodes_or_frame_error(jbd.decode_request, frame) or _decodes_or_frame_error(jbd.decode_reply, frame)
        return
    rest = buffer[consumed:]
    if rest:  # kept only to wait for more bytes: it must be a plausible frame start, incomplete
        assert rest[0] == jbd.START
        assert len(rest) < 4 or (rest[3] <= jbd.MAX_DATA and len(rest) < rest[3] + 7)
        assert jbd.find_frame(rest) == (None, 0)
    if buffer:
        assert consumed > 0 or buffer[0] == jbd.START


registers = st.integers(0, 255)
payloads = st.binary(max_size=jbd.MAX_DATA)
requests = st.one_of(
    registers.map(jbd.encode_request),
    st.builds(jbd.encode_write, registers, payloads),
    st.builds(jbd.encode_fet_control, st.booleans(), st.booleans()),
)
replies = st.builds(
    jbd.encode_reply,
    registers.filter(lambda r: r not in (jbd.READ, jbd.WRITE)),
    payloads,
    st.sampled_from([jbd.STATUS_OK, jbd.STATUS_ERROR]),
)
valid_frames = st.one_of(requests, replies)


@st.composite
def broken_frames(draw: st.DrawFn) -> bytes:
    """A valid frame made invalid: truncated, wrong checksum, oversize or changed length, bad end."""
    frame = bytearray(draw(valid_frames))
    kind = draw(st.sampled_from(["truncate", "checksum", "oversize", "length", "end", "start"]))
    if kind == "truncate":
        return bytes(frame[: draw(st.integers(0, len(frame) - 1))])
    if kind == "checksum":
        frame[-2 - draw(st.integers(0, 1))] ^= draw(st.integers(1, 255))
    elif kind == "oversize":
        frame[3] = draw(st.integers(jbd.MAX_DATA + 1, 255))
        frame[4:-3] = draw(st.binary(min_size=frame[3], max_size=frame[3]))
    elif kind == "length":
        frame[3] = draw(st.integers(0, 255).filter(lambda n: n != frame[3]))
    elif kind == "end":
        frame[-1] = draw(st.integers(0, 255).filter(lambda b: b != jbd.END))
    else:
        frame[0] = draw(st.integers(0, 255).filter(lambda b: b != jbd.START))
    return bytes(frame)


garbage = st.one_of(
    st.binary(max_size=24),
    broken_frames(),
    st.binary(max_size=6).map(lambda b: bytes((jbd.START,)) + b),  # stray start bytes
    st.integers(jbd.MAX_DATA + 1, 255).map(lambda n: bytes((jbd.START, 0x03, 0x00, n))),
)


@fuzz(300)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_frame_error(data: bytes) -> None:
    for decode in DATA_DECODERS:
        _decodes_or_frame_error(decode, data)
    _check_find_frame(data)


@fuzz(300)
@given(broken_frames())
def test_broken_frames_raise_frame_error(frame: bytes) -> None:
    for decode in (jbd.decode_request, jbd.decode_reply):
        with pytest.raises(FrameError):
            decode(frame)
    _check_find_frame(frame)


@fuzz(200)
@given(valid_frames, st.integers(0, 40), st.integers(0, 255))
def test_any_single_byte_change_is_caught_or_harmless(frame: bytes, at: int, flip: int) -> None:
    """Changing one byte breaks the frame, except byte 1, which the checksum does not cover."""
    mutated = bytearray(frame)
    at %= len(frame)
    mutated[at] ^= flip or 1
    ok = [_decodes_or_frame_error(d, bytes(mutated)) for d in (jbd.decode_request, jbd.decode_reply)]
    if at != 1:
        assert ok == [False, False]


@fuzz(200)
@given(st.lists(st.tuples(garbage, valid_frames), min_size=1, max_size=6), garbage)
def test_find_frame_recovers_every_frame_between_garbage(pieces: list[tuple[bytes, bytes]], tail: bytes) -> None:
    stream = b"".join(g + f for g, f in pieces) + tail
    wanted = [f for _, f in pieces]
    assert is_subsequence(wanted, drain(jbd.find_frame, stream))


@fuzz(150)
@given(
    st.lists(st.tuples(garbage, valid_frames), min_size=1, max_size=4),
    st.lists(st.integers(1, 20), min_size=1, max_size=50),
)
def test_find_frame_on_a_stream_arriving_in_chunks(pieces: list[tuple[bytes, bytes]], sizes: list[int]) -> None:
    stream = b"".join(g + f for g, f in pieces)
    found = feed_in_chunks(jbd.find_frame, stream, sizes, _check_find_frame)
    assert is_subsequence([f for _, f in pieces], found)


@fuzz(200)
@given(st.lists(st.one_of(valid_frames, garbage), max_size=8))
def test_find_frame_contract_on_mixed_buffers(parts: list[bytes]) -> None:
    buffer = b"".join(parts)
    _check_find_frame(buffer)
    drain(jbd.find_frame, buffer)


@st.composite
def basic_info_payloads(draw: st.DrawFn) -> bytes:
    ntc = draw(st.integers(0, 8))
    head = bytearray(draw(st.binary(min_size=23, max_size=23)))
    head[20] &= 0x03  # FET byte: only the two documented bits survive decoding
    head[22] = ntc
    return bytes(head) + draw(st.binary(min_size=2 * ntc, max_size=2 * ntc)) + draw(st.binary(max_size=4))


@fuzz(200)
@given(basic_info_payloads())
def test_basic_info_payload_round_trips(data: bytes) -> None:
    info = jbd.decode_basic_info(data)
    assert jbd.encode_basic_info(info) == data
    assert jbd.decode_basic_info(jbd.encode_basic_info(info)) == info


@fuzz(100)
@given(
    st.lists(st.integers(0, 0xFFFF), max_size=jbd.MAX_DATA // 2).map(lambda mv: struct.pack(f">{len(mv)}H", *mv)),
    st.text("abcXYZ019-_ ", max_size=40),
)
def test_cells_and_name_round_trip(cells: bytes, name: str) -> None:
    assert jbd.encode_cells(jbd.decode_cells(cells)) == cells
    assert jbd.decode_name(jbd.encode_name(name)) == name
    reply = jbd.encode_reply(jbd.REG_CELLS, cells)
    assert jbd.find_frame(reply) == (reply, len(reply))
