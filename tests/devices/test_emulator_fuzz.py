"""Fuzzing the emulator's request parser, ``Emulator.handle_bytes``, for each protocol.

Whatever bytes arrive — random noise, valid requests truncated, with a wrong checksum or an
oversize length, valid requests with garbage around them, all cut into arbitrary chunks as a serial
port delivers them — the emulated board never raises, never hangs, changes nothing in the twin
(FETs, faults, values, the event log and the non-volatile memory stay as they were, except a
``control_write`` event, refused, for each real write request), and still answers every valid
request it can see, with exactly the reply it gives that request alone.

One limit belongs to the Daly protocol, not the emulator: its 8-bit checksum means the first bytes
of a cut-off request followed by a complete one can themselves form a valid frame (for example
``A5 40 90 08`` + ``A5 40 96 08 00…`` sums to 0x00 at byte 13), which swallows the start of the real
request; a real Daly board does the same, and a monitor retries. Such a request (Daly only, right
after a cut-off one) is exempt from the "found among the garbage" check, and must stay rare.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openbms.devices import daly, jbd, jk
from openbms.devices.emulator import MAX_PENDING, Emulator
from openbms.devices.errors import FrameError
from openbms.devices.protocols import JK_CHARGE_SWITCH, JK_DISCHARGE_SWITCH, LiveState
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

PROTOCOLS = ("jbd", "daly", "jk")
EXAMPLES = 1000  # per protocol, for the mixed streams; the pure-noise test adds more

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=2),  # one example is a few milliseconds: this catches a hang
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=False,
)

SCENARIO = """\
name: fuzz
pack: {chemistry: lfp, series: 16, capacity_ah: 100, soc: 0.5, temperature_c: 25,
       spread: {soc: 0.02, seed: 3}}
bms: {profile: lfp}
dt: 100ms
timeline:
  - load: {current_a: 20}
  - run: 1s
"""

FIND_FRAME = {"jbd": jbd.find_frame, "daly": daly.find_frame, "jk": jk.find_frame}

# Requests a monitor sends, each answered by the board.
READS = {
    "jbd": [jbd.encode_request(r) for r in (jbd.REG_BASIC_INFO, jbd.REG_CELLS, jbd.REG_NAME, 0x06)],
    "daly": [
        daly.encode_request(command, address=address)
        for command in (0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98)
        for address in (daly.HOST_ADDRESS, daly.BLE_ADDRESS)
    ],
    "jk": [jk.encode_request()],
}
WRITES = {
    "jbd": [jbd.encode_fet_control(c, d) for c in (False, True) for d in (False, True)],
    "daly": [
        daly.encode_fet_switch(command, on, address)
        for command in (daly.CMD_DISCHARGE_FET, daly.CMD_CHARGE_FET)
        for on in (False, True)
        for address in (daly.HOST_ADDRESS, daly.BLE_ADDRESS)
    ],
    "jk": [
        jk.encode_request(jk.COMMAND_WRITE, register=register, value=bytes((on,)))
        for register in (JK_CHARGE_SWITCH, JK_DISCHARGE_SWITCH)
        for on in (0, 1)
    ],
}


def _checksum_span(protocol: str, frame: bytes) -> range:
    """Indices of the checksum bytes of a frame."""
    n = len(frame)
    return {"jbd": range(n - 3, n - 1), "daly": range(n - 1, n), "jk": range(n - 4, n)}[protocol]


def _with_length(protocol: str, frame: bytes, length: int) -> bytes:
    """The frame with its length field replaced (checksum left as it was)."""
    raw = bytearray(frame)
    if protocol == "jk":
        raw[2:4] = length.to_bytes(2, "big")
    else:
        raw[3] = length & 0xFF
    return bytes(raw)


# Length-field values that are wrong for the frame: over the protocol's cap, or plausible but not
# this frame's (then the framer waits for bytes that never make it valid).
OVERSIZE = {
    "jbd": st.integers(jbd.MAX_DATA + 1, 0xFF) | st.integers(1, jbd.MAX_DATA),
    "daly": st.integers(0, 0xFF).filter(lambda n: n != daly.DATA_LEN),
    "jk": st.integers(jk.MAX_FRAME_LEN - 1, 0xFFFF) | st.integers(0, jk.MAX_FRAME_LEN - 2),
}


@dataclass(frozen=True)
class Board:
    runner: ScenarioRunner
    replies: dict[bytes, bytes]  # every valid request -> the reply it gets alone (writes refused)


@functools.cache
def board(protocol: str) -> Board:
    """One twin per protocol, shared by all examples (nothing here steps it)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(SCENARIO)
        model, steps = load_scenario(path)
    runner = ScenarioRunner(model, steps)
    runner.run()
    probe = Emulator(runner, protocol)
    state = probe.live_state()

    def refuse(what: str, fields: dict[str, object]) -> bool:
        return False

    replies = {
        request: b"".join(probe.server.answer(request, state, refuse)) for request in READS[protocol] + WRITES[protocol]
    }
    assert all(replies.values()), "every request in the fuzz set is one the board answers"
    return Board(runner, replies)


class NvmLedger:
    """The non-volatile memory gets exactly the events the twin logs: checked once per test (a
    query per example would grow with the log), over every example hypothesis ran."""

    def __init__(self, runner: ScenarioRunner) -> None:
        self.runner = runner
        self.start = len(runner.nvm.events())
        self.writes = 0

    def check(self) -> None:
        new = self.runner.nvm.events()[self.start :]
        assert len(new) == self.writes
        assert all(e["kind"] == "control_write" and e["accepted"] is False for e in new)


@dataclass(frozen=True)
class Seen:
    state: LiveState
    charge_fet: bool
    discharge_fet: bool
    faults: list[str]
    warnings: list[str]
    t_s: float
    events: int
    operator: tuple[bool, bool]


def look(emulator: Emulator) -> Seen:
    twin = emulator.twin
    return Seen(
        state=emulator.live_state(),
        charge_fet=bool(twin.pack.charge_fet[0]),
        discharge_fet=bool(twin.pack.discharge_fet[0]),
        faults=twin.bms.active_faults(0),
        warnings=twin.bms.active_warnings(0),
        t_s=twin.t_s,
        events=len(twin.events),
        operator=(bool(twin.bms.operator_charge_off[0]), bool(twin.bms.operator_discharge_off[0])),
    )


def assert_unchanged(emulator: Emulator, before: Seen, writes: int, ledger: NvmLedger) -> None:
    ledger.writes += writes
    after = look(emulator)
    assert after.state == before.state
    assert (after.charge_fet, after.discharge_fet) == (before.charge_fet, before.discharge_fet)
    assert after.faults == before.faults
    assert after.warnings == before.warnings
    assert after.t_s == before.t_s
    assert after.operator == before.operator
    new = emulator.twin.events[before.events :]
    assert [e.kind for e in new] == ["control_write"] * writes
    assert all(e.fields["accepted"] is False for e in new)
    assert emulator.twin.event_count == len(emulator.twin.events)


# ----------------------------------------------------------------------------- streams


@dataclass(frozen=True)
class Segment:
    data: bytes
    valid: bool = False  # a complete, untouched request
    write: bool = False
    truncated: bool = False


@st.composite
def segments(draw: st.DrawFn, protocol: str) -> Segment:
    valid = draw(st.sampled_from(READS[protocol] + WRITES[protocol]))
    is_write = valid in WRITES[protocol]
    kind = draw(st.sampled_from(("valid", "noise", "truncated", "checksum", "length", "doubled_start")))
    if kind == "valid":
        return Segment(valid, valid=True, write=is_write)
    if kind == "noise":
        return Segment(draw(st.binary(min_size=1, max_size=64)))
    if kind == "truncated":
        return Segment(valid[: draw(st.integers(1, len(valid) - 1))], truncated=True)
    if kind == "checksum":
        at = draw(st.sampled_from(_checksum_span(protocol, valid)))
        raw = bytearray(valid)
        raw[at] ^= draw(st.integers(1, 0xFF))
        return Segment(bytes(raw))
    if kind == "length":
        length = draw(OVERSIZE[protocol])
        current = int.from_bytes(valid[2:4], "big") if protocol == "jk" else valid[3]
        if length == current:
            length = (length + 1) & (0xFFFF if protocol == "jk" else 0xFF)
        return Segment(_with_length(protocol, valid, length))
    # a start byte repeated, then the frame cut short: a header that never completes
    return Segment(valid[:1] + valid[: draw(st.integers(2, len(valid) - 1))], truncated=True)


@st.composite
def streams(draw: st.DrawFn, protocol: str) -> tuple[list[Segment], list[bytes]]:
    parts = draw(st.lists(segments(protocol), min_size=1, max_size=10))
    stream = b"".join(p.data for p in parts)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return parts, chunks


@dataclass(frozen=True)
class Framed:
    """What the protocol's own framer makes of a whole stream, and what a board answers to it."""

    spans: list[tuple[int, int]]  # (start, end) of every frame found, in order
    replies: bytes  # the board's answers to those frames, each as if it came alone
    writes: int  # how many of them are write requests (each one a refused control_write)


def frame_stream(protocol: str, shared: Board, stream: bytes) -> Framed:
    server = Emulator(shared.runner, protocol).server
    state = Emulator(shared.runner, protocol).live_state()
    writes = 0

    def refuse(what: str, fields: dict[str, object]) -> bool:
        nonlocal writes
        writes += 1
        return False

    spans, replies, at = [], b"", 0
    while True:
        frame, consumed = FIND_FRAME[protocol](stream[at:])
        at += consumed
        if frame is None:
            return Framed(spans, replies, writes)
        spans.append((at - len(frame), at))
        with contextlib.suppress(FrameError):  # a well-framed request the board cannot parse: silence
            replies += b"".join(server.answer(frame, state, refuse))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mixed_streams_never_raise_never_change_the_twin_and_valid_requests_are_answered(protocol: str) -> None:
    shared = board(protocol)
    ledger = NvmLedger(shared.runner)
    valid_seen, exempt = 0, 0

    @FUZZ
    @given(streams(protocol))
    def check(case: tuple[list[Segment], list[bytes]]) -> None:
        nonlocal valid_seen, exempt
        parts, chunks = case
        emulator = Emulator(shared.runner, protocol)  # a fresh receive buffer on the shared twin
        before = look(emulator)
        out = b""
        for chunk in chunks:
            reply = emulator.handle_bytes(chunk)
            assert isinstance(reply, bytes)
            out += reply
        stream = b"".join(chunks)
        framed = frame_stream(protocol, shared, stream)
        # Fed in chunks, the board answers exactly what the stream holds, in order, nothing else.
        assert out == framed.replies
        assert_unchanged(emulator, before, framed.writes, ledger)
        # Every valid request among the garbage is found (and so answered, with its own reply).
        at = 0
        for k, part in enumerate(parts):
            span = (at, at + len(part.data))
            at = span[1]
            if not part.valid:
                continue
            valid_seen += 1
            if span in framed.spans:
                continue
            # Only Daly's 8-bit checksum lets a cut-off request swallow the next one.
            assert protocol == "daly", f"request {part.data.hex()} lost in {stream.hex()}"
            assert k > 0 and not parts[k - 1].valid, f"request {part.data.hex()} lost in {stream.hex()}"
            exempt += 1

    check()
    ledger.check()
    assert valid_seen >= EXAMPLES // 2
    assert exempt <= valid_seen // 50  # the Daly corner is rare, not a way out of the check


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_random_bytes_never_raise_and_change_nothing(protocol: str) -> None:
    shared = board(protocol)
    ledger = NvmLedger(shared.runner)

    @settings(FUZZ, max_examples=300)
    @given(st.lists(st.binary(max_size=300), min_size=1, max_size=5))
    def check(chunks: list[bytes]) -> None:
        emulator = Emulator(shared.runner, protocol)
        before = look(emulator)
        out = b""
        for chunk in chunks:
            reply = emulator.handle_bytes(chunk)
            assert isinstance(reply, bytes)
            out += reply
        framed = frame_stream(protocol, shared, b"".join(chunks))
        assert out == framed.replies  # noise holds no frame, so almost always b""
        assert_unchanged(emulator, before, framed.writes, ledger)

    check()
    ledger.check()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_flood_of_garbage_is_bounded_and_the_next_request_is_answered(protocol: str) -> None:
    shared = board(protocol)
    ledger = NvmLedger(shared.runner)
    emulator = Emulator(shared.runner, protocol)
    before = look(emulator)
    start = READS[protocol][0][:1]
    flood = (start + b"\x00\xff" * 7) * (3 * MAX_PENDING // 8)  # start bytes everywhere, no frame
    assert emulator.handle_bytes(flood) == b""
    assert emulator.handle_bytes(flood[:1000]) == b""
    request = READS[protocol][0]
    assert emulator.handle_bytes(request) == shared.replies[request]
    # And a request at the end of one huge read is still seen.
    assert emulator.handle_bytes(flood + request) == shared.replies[request]
    assert_unchanged(emulator, before, 0, ledger)
    ledger.check()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_split_byte_by_byte_is_answered_once(protocol: str) -> None:
    shared = board(protocol)
    ledger = NvmLedger(shared.runner)
    for request in READS[protocol] + WRITES[protocol]:
        emulator = Emulator(shared.runner, protocol)
        before = look(emulator)
        out = b"".join(emulator.handle_bytes(request[i : i + 1]) for i in range(len(request)))
        assert out == shared.replies[request]
        assert_unchanged(emulator, before, int(request in WRITES[protocol]), ledger)
    ledger.check()
