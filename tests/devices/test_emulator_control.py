"""FET-control writes to the emulated BMS: refused the way each device refuses unless the emulator
allows control, carried out on the twin when it does, and every attempt in the board's event log
(the twin's events and the non-volatile memory) as ``control_write`` with ``accepted`` true/false.

The emulator is driven synchronously through ``Emulator.handle_bytes`` (the bytes a port would
deliver) and stepped by hand, so nothing here depends on timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openbms.devices import daly, jbd, jk
from openbms.devices.emulator import Emulator
from openbms.devices.protocols import JK_CHARGE_SWITCH, JK_DISCHARGE_SWITCH
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

PROTOCOLS = ("jbd", "daly", "jk")
FETS = ("charge", "discharge")

SCENARIO = """\
name: control
pack: {chemistry: lfp, series: 4, capacity_ah: 50, soc: 0.6, temperature_c: 25}
bms: {profile: lfp}
dt: 100ms
timeline:
  - run: 1s
"""


@pytest.fixture
def make_emulator(tmp_path: Path) -> Any:
    path = tmp_path / "control.yaml"
    path.write_text(SCENARIO)

    def make(protocol: str, allow_control: bool) -> Emulator:
        model, steps = load_scenario(path)
        runner = ScenarioRunner(model, steps)
        runner.run()
        emulator = Emulator(runner, protocol, allow_control=allow_control)
        assert fets(emulator) == (True, True)
        return emulator

    return make


def fets(emulator: Emulator) -> tuple[bool, bool]:
    pack = emulator.twin.pack
    return bool(pack.charge_fet[0]), bool(pack.discharge_fet[0])


def step(emulator: Emulator, cycles: int = 3) -> None:
    for _ in range(cycles):
        emulator.step()


def write_request(protocol: str, fet: str, on: bool) -> bytes:
    """The request a monitor sends to switch one FET (the other left on)."""
    if protocol == "jbd":
        return jbd.encode_fet_control(
            charge_on=on if fet == "charge" else True, discharge_on=on if fet == "discharge" else True
        )
    if protocol == "daly":
        return daly.encode_fet_switch(daly.CMD_CHARGE_FET if fet == "charge" else daly.CMD_DISCHARGE_FET, on)
    register = JK_CHARGE_SWITCH if fet == "charge" else JK_DISCHARGE_SWITCH
    return jk.encode_request(jk.COMMAND_WRITE, register=register, value=bytes((int(on),)))


def reply_says(protocol: str, reply: bytes, fet: str) -> Any:
    """What the device's reply to the write says, in the device's own terms."""
    if protocol == "jbd":
        decoded = jbd.decode_reply(reply)
        assert decoded.register == jbd.REG_FET_CONTROL
        return decoded.status
    if protocol == "daly":
        decoded_daly = daly.decode_reply(reply)
        assert decoded_daly.command == (daly.CMD_CHARGE_FET if fet == "charge" else daly.CMD_DISCHARGE_FET)
        return decoded_daly.data[0]
    frame = jk.decode_frame(reply)
    register = JK_CHARGE_SWITCH if fet == "charge" else JK_DISCHARGE_SWITCH
    assert frame.command == jk.COMMAND_WRITE
    assert frame.source == jk.SOURCE_BMS
    assert list(frame.records) == [register]
    return frame.records[register][0]


def reported_fets(emulator: Emulator, protocol: str) -> tuple[bool | None, bool | None]:
    """The FET states the emulated device reports to a read request."""
    if protocol == "jbd":
        info = jbd.decode_basic_info(jbd.decode_reply(emulator.handle_bytes(jbd.encode_request(0x03))).data)
        return info.charge_fet, info.discharge_fet
    if protocol == "daly":
        status = daly.decode_fets(daly.decode_reply(emulator.handle_bytes(daly.encode_request(daly.CMD_FETS))).data)
        return status.charge_fet, status.discharge_fet
    reading = jk.to_reading(jk.decode_frame(emulator.handle_bytes(jk.encode_request())))
    return reading.charge_fet, reading.discharge_fet


def control_writes(emulator: Emulator) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """control_write events from the twin's log and from the non-volatile memory."""
    twin = [{"t_s": e.t_s, **e.fields} for e in emulator.twin.events if e.kind == "control_write"]
    nvm = [e for e in emulator.runner.nvm.events() if e["kind"] == "control_write"]
    return twin, nvm


def assert_logged(emulator: Emulator, protocol: str, accepted: list[bool]) -> None:
    twin, nvm = control_writes(emulator)
    assert [e["accepted"] for e in twin] == accepted
    assert [e["accepted"] for e in nvm] == accepted
    for event in twin + nvm:
        assert event["protocol"] == protocol
        assert event["what"] == "fet"


# ----------------------------------------------------------------------------- refused


@pytest.mark.parametrize("fet", FETS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_without_allow_control_a_fet_write_is_refused_like_the_device_and_logged(
    protocol: str, fet: str, make_emulator: Any
) -> None:
    emulator = make_emulator(protocol, allow_control=False)
    reply = emulator.handle_bytes(write_request(protocol, fet, on=False))
    said = reply_says(protocol, reply, fet)
    if protocol == "jbd":
        assert said != jbd.STATUS_OK  # JBD answers a refused write with an error status
    elif protocol == "daly":
        assert said == 1  # Daly echoes the FET's (unchanged) state: still on
    else:
        assert said == 0  # JK answers the switch record with 0: not done
    step(emulator)
    assert fets(emulator) == (True, True)
    assert reported_fets(emulator, protocol) == (True, True)
    assert_logged(emulator, protocol, [False])
    twin, nvm = control_writes(emulator)
    assert twin[0]["charge_on"] is (fet != "charge")
    assert twin[0]["discharge_on"] is (fet != "discharge")
    assert nvm[0]["charge_on"] is twin[0]["charge_on"]
    assert nvm[0]["t_s"] == pytest.approx(twin[0]["t_s"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_refused_writes_keep_being_refused_and_each_is_logged(protocol: str, make_emulator: Any) -> None:
    emulator = make_emulator(protocol, allow_control=False)
    for fet in ("charge", "discharge", "charge"):
        emulator.handle_bytes(write_request(protocol, fet, on=False))
        step(emulator, 1)
    step(emulator)
    assert fets(emulator) == (True, True)
    assert_logged(emulator, protocol, [False, False, False])


# ----------------------------------------------------------------------------- allowed


@pytest.mark.parametrize("fet", FETS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_with_allow_control_a_write_opens_the_fet_on_the_twin_and_is_logged(
    protocol: str, fet: str, make_emulator: Any
) -> None:
    emulator = make_emulator(protocol, allow_control=True)
    reply = emulator.handle_bytes(write_request(protocol, fet, on=False))
    said = reply_says(protocol, reply, fet)
    if protocol == "jbd":
        assert said == jbd.STATUS_OK
    elif protocol == "daly":
        assert said == 0  # the FET now off
    else:
        assert said == 1  # done
    step(emulator)
    want = (fet != "charge", fet != "discharge")
    assert fets(emulator) == want
    step(emulator, 5)
    assert fets(emulator) == want
    assert reported_fets(emulator, protocol) == want  # and a monitor reading the device sees it
    assert_logged(emulator, protocol, [True])

    # Switching it on again lifts the operator's own block.
    emulator.handle_bytes(write_request(protocol, fet, on=True))
    step(emulator)
    assert fets(emulator) == (True, True)
    assert_logged(emulator, protocol, [True, True])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_allowed_on_write_never_overrides_a_protection(protocol: str, make_emulator: Any) -> None:
    emulator = make_emulator(protocol, allow_control=True)
    pack = emulator.twin.pack
    pack.ambient_c[0] = 65.0
    pack.cells.temperature_c[:] = 65.0
    for _ in range(100):
        emulator.step()
        if not any(fets(emulator)):
            break
    assert fets(emulator) == (False, False)
    for fet in FETS:
        emulator.handle_bytes(write_request(protocol, fet, on=True))
    step(emulator)
    assert fets(emulator) == (False, False)
    assert_logged(emulator, protocol, [True, True])


def test_jbd_write_to_another_register_is_logged_and_changes_nothing(make_emulator: Any) -> None:
    for allow in (False, True):
        emulator = make_emulator("jbd", allow_control=allow)
        reply = jbd.decode_reply(emulator.handle_bytes(jbd.encode_write(0x10, b"\x0e\x10")))
        assert reply.register == 0x10
        assert (reply.status == jbd.STATUS_OK) is allow
        step(emulator)
        assert fets(emulator) == (True, True)
        twin, nvm = control_writes(emulator)
        assert [(e["what"], e["accepted"], e["register"]) for e in twin] == [("write", allow, 0x10)]
        assert [(e["what"], e["accepted"]) for e in nvm] == [("write", allow)]


def test_jk_write_to_another_register_is_logged(make_emulator: Any) -> None:
    emulator = make_emulator("jk", allow_control=False)
    emulator.handle_bytes(jk.encode_request(jk.COMMAND_WRITE, register=0xBB, value=b"\x01"))
    step(emulator)
    assert fets(emulator) == (True, True)
    twin, nvm = control_writes(emulator)
    assert [e["accepted"] for e in twin] == [False]
    assert [e["accepted"] for e in nvm] == [False]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reads_are_not_control_writes(protocol: str, make_emulator: Any) -> None:
    emulator = make_emulator(protocol, allow_control=True)
    requests = {
        "jbd": [jbd.encode_request(r) for r in (0x03, 0x04, 0x05)],
        "daly": [daly.encode_request(c) for c in range(daly.CMD_PACK, daly.CMD_FAILURES + 1)],
        "jk": [jk.encode_request()],
    }[protocol]
    count = len(emulator.runner.nvm.events())
    for request in requests:
        emulator.handle_bytes(request)
    assert control_writes(emulator) == ([], [])
    assert len(emulator.runner.nvm.events()) == count


@pytest.mark.parametrize("protocol", ("daly", "jk"))
def test_two_one_fet_writes_before_a_step_both_apply(protocol: str, make_emulator: Any) -> None:
    """Daly and JK address one FET per write; the second, arriving before the twin steps, must not
    re-command the first's FET from the not-yet-updated physical state (both were left off)."""
    emulator = make_emulator(protocol, allow_control=True)
    emulator.handle_bytes(write_request(protocol, "charge", on=False))
    step(emulator)
    assert fets(emulator) == (False, True)
    emulator.handle_bytes(write_request(protocol, "charge", on=True) + write_request(protocol, "discharge", on=False))
    step(emulator)
    assert fets(emulator) == (True, False)
    assert_logged(emulator, protocol, [True, True, True])
    twin, _ = control_writes(emulator)
    assert [(e["charge_on"], e["discharge_on"]) for e in twin] == [(False, True), (True, True), (True, False)]
