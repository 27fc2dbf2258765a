"""The emulated Daly board answers what dbus-serialbattery asks for, byte for byte.

dbus-serialbattery (Louisvdw/dbus-serialbattery ``etc/dbus-serialbattery/bms/daly.py``) polls
0x91 / 0x92 every cycle and reads 0x50 / 0x53 / 0x57 at start-up; a board that stays silent on any
of them is "no reply". The expected frames here are written out by hand from the layouts cited in
``openbms.devices.daly`` (``a5 01 <cmd> 08 <8 data bytes> <sum of the 12 bytes before & 0xff>``,
reply address 0x01, as the vendor example in ``vectors/daly.json`` shows), never produced by our
encoder, so a mistake shared by encoder and decoder cannot pass.

The FET writes: dbus-serialbattery sends 0xDA then 0xD9 back to back (``write_charge_discharge_mos``).
Both must take effect, in order, however close together they arrive, and both must be logged.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openbms.devices import daly
from openbms.devices.emulator import Emulator, PtyPort, run_emulator
from openbms.devices.protocols import DalyServer, LiveState
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

# 4 cells: the highest (3.345 V) twice, at cells 2 and 4 (the first is reported), the lowest at 3.
# 3 sensors: 24.6, 31.2, 18.9 degC -> whole degrees 25, 31 (sensor 2), 19 (sensor 3).
STATE = LiveState(
    protocol="twin",
    cell_v=[3.301, 3.345, 3.290, 3.345],
    temperature_c=[24.6, 31.2, 18.9],
    fet_temperature_c=30.0,
    current_a=20.0,
    pack_v=13.281,
    soc=0.6,
    charge_fet=True,
    discharge_fet=True,
    faults=[],
    warnings=[],
    balancing=[],
    cycles=7,
    remaining_ah=30.0,
    nominal_ah=50.0,
    name="openbms twin",
    charger_present=True,
    load_present=False,
)


def request(command: int) -> bytes:
    """A read request from the UART host: a5 40 <cmd> 08, eight zeros, checksum (hand sum)."""
    head = bytes((0xA5, 0x40, command, 0x08)) + bytes(8)
    return head + bytes((sum(head) & 0xFF,))


def never(what: str, fields: dict[str, object]) -> bool:
    raise AssertionError(f"a read must not reach the control hook ({what}, {fields})")


def answer(command: int, state: LiveState = STATE) -> list[str]:
    return [frame.hex(" ") for frame in DalyServer().answer(request(command), state, never)]


# ----------------------------------------------------------------------------- reads, by hand


def test_0x91_max_and_min_cell_mv_with_their_1_based_numbers() -> None:
    # 3345 mV = 0d 11 at cell 2 (first of the two equal), 3290 mV = 0c da at cell 3.
    # a5+01+91+08+0d+11+02+0c+da+03 = 0x248 -> 48
    assert answer(0x91) == ["a5 01 91 08 0d 11 02 0c da 03 00 00 48"]


def test_0x92_max_and_min_temperature_plus_40_with_their_sensors() -> None:
    # 31 + 40 = 0x47 at sensor 2, 19 + 40 = 0x3b at sensor 3. Sum 0x1c7 -> c7
    assert answer(0x92) == ["a5 01 92 08 47 02 3b 03 00 00 00 00 c7"]


def test_0x94_charger_and_load_bytes_follow_the_twin() -> None:
    # cells 4, sensors 3, charger 1, load 0, DIO 0, cycles 00 07. Sum 0x151 -> 51
    assert answer(0x94) == ["a5 01 94 08 04 03 01 00 00 00 07 00 51"]
    loaded = LiveState(**{**vars(STATE), "current_a": -50.0, "charger_present": False, "load_present": True})
    assert answer(0x94, loaded) == ["a5 01 94 08 04 03 00 01 00 00 07 00 51"]


def test_0x50_rated_capacity_mah_and_nominal_cell_mv() -> None:
    # 50 Ah = 50000 mAh = 00 00 c3 50; 3200 mV = 00 00 0c 80 (fixed: see DALY_NOMINAL_CELL_V). Sum 0x29d
    assert answer(0x50) == ["a5 01 50 08 00 00 c3 50 00 00 0c 80 9d"]


def test_0x53_production_date_in_bytes_2_to_4() -> None:
    # 2025-11-25: 25 = 0x19, 11 = 0x0b, 25 = 0x19 (fixed). Sum 0x13e -> 3e
    assert answer(0x53) == ["a5 01 53 08 00 00 19 0b 19 00 00 00 3e"]


def test_0x57_battery_code_in_five_numbered_frames_of_seven_characters() -> None:
    # "openbms twin" space-padded to 35 characters: "openbms", " twin  ", then three of spaces.
    assert answer(0x57) == [
        "a5 01 57 08 01 6f 70 65 6e 62 6d 73 fa",  # 1 "openbms", sum 0x3fa
        "a5 01 57 08 02 20 74 77 69 6e 20 20 29",  # 2 " twin  ", sum 0x329
        "a5 01 57 08 03 20 20 20 20 20 20 20 e8",
        "a5 01 57 08 04 20 20 20 20 20 20 20 e9",
        "a5 01 57 08 05 20 20 20 20 20 20 20 ea",
    ]


def test_new_replies_decode_to_the_state() -> None:
    """The codec's decoders read the same frames back (decoders checked against hand frames above)."""
    server = DalyServer()

    def data(command: int) -> list[bytes]:
        return [daly.decode_reply(f).data for f in server.answer(request(command), STATE, never)]

    assert daly.decode_cell_extremes(data(0x91)[0]) == daly.CellExtremes(3.345, 2, 3.29, 3)
    assert daly.decode_temperature_extremes(data(0x92)[0]) == daly.TemperatureExtremes(31, 2, 19, 3)
    assert daly.decode_rated(data(0x50)[0]) == daly.Rated(50.0, 3.2)
    assert daly.decode_details(data(0x53)[0]) == daly.Details(2025, 11, 25)
    assert daly.decode_battery_code(reversed(data(0x57))) == "openbms twin"


# ----------------------------------------------------------------------------- the twin's charger / load

SCENARIO = """\
name: daly
pack: {{chemistry: lfp, series: 4, capacity_ah: 50, soc: 0.6, temperature_c: 25}}
bms: {{profile: lfp}}
dt: 100ms
timeline:
{steps}
"""


def runner_for(tmp_path: Path, steps: str) -> ScenarioRunner:
    path = tmp_path / "daly.yaml"
    path.write_text(SCENARIO.format(steps=steps))
    model, timeline = load_scenario(path)
    return ScenarioRunner(model, timeline)


@pytest.mark.parametrize(
    ("steps", "charger", "load"),
    [
        ("  - charger: {voltage_v: 14.6, current_a: 20}\n  - run: 2s", 1, 0),
        ("  - load: {current_a: 50}\n  - run: 2s", 0, 1),
        ("  - run: 2s", 0, 0),
    ],
    ids=["charging-20A", "discharging-50A", "resting"],
)
def test_0x94_reports_the_twins_charger_and_load(tmp_path: Path, steps: str, charger: int, load: int) -> None:
    runner = runner_for(tmp_path, steps)
    runner.run()
    emulator = Emulator(runner, "daly")
    reply = emulator.handle_bytes(request(0x94))
    assert len(reply) == 13 and reply[:4] == bytes.fromhex("a5019408")
    assert (reply[6], reply[7]) == (charger, load)


# ----------------------------------------------------------------------------- FET writes

DA_01 = bytes.fromhex("a540da080100000000000000c8")  # charge FET on: a5+40+da+08+01 = 0x1c8
D9_00 = bytes.fromhex("a540d9080000000000000000c6")  # discharge FET off: 0x1c6
DA_00 = bytes.fromhex("a540da080000000000000000c7")  # charge FET off (vectors/daly.json)
REPLY_DA_01 = "a5 01 da 08 01 00 00 00 00 00 00 00 89"
REPLY_D9_00 = "a5 01 d9 08 00 00 00 00 00 00 00 00 87"
REPLY_DA_00 = "a5 01 da 08 00 00 00 00 00 00 00 00 88"


def fets(emulator: Emulator) -> tuple[bool, bool]:
    with emulator.lock:
        pack = emulator.twin.pack
        return bool(pack.charge_fet[0]), bool(pack.discharge_fet[0])


def fet_writes(emulator: Emulator) -> list[dict[str, Any]]:
    with emulator.lock:
        return [dict(e.fields) for e in emulator.twin.events if e.kind == "control_write"]


def test_two_writes_in_one_chunk_both_apply(tmp_path: Path) -> None:
    """The reported case without any timing: DA 01 and D9 00 handled before the twin steps."""
    runner = runner_for(tmp_path, "  - run: 1s")
    runner.run()
    emulator = Emulator(runner, "daly", allow_control=True)
    assert emulator.handle_bytes(DA_00).hex(" ") == REPLY_DA_00
    emulator.step()
    assert fets(emulator) == (False, True)
    replies = emulator.handle_bytes(DA_01 + D9_00)
    assert [replies[:13].hex(" "), replies[13:].hex(" ")] == [REPLY_DA_01, REPLY_D9_00]
    for _ in range(3):
        emulator.step()
        assert fets(emulator) == (True, False)
    writes = fet_writes(emulator)
    assert [(w["command"], w["accepted"], w["charge_on"], w["discharge_on"]) for w in writes] == [
        (0xDA, True, False, True),
        (0xDA, True, True, True),
        (0xD9, True, True, False),
    ]


@pytest.fixture
def pty_emulator(tmp_path: Path) -> Iterator[tuple[Emulator, int]]:
    """``openbms emulate --protocol daly --allow-control`` as the CLI runs it, on a pseudo-terminal."""
    emulator = Emulator(runner_for(tmp_path, "  - run: 600s"), "daly", allow_control=True)
    port = PtyPort()
    stop = threading.Event()
    thread = threading.Thread(target=run_emulator, args=(emulator, port), kwargs={"stop": stop}, daemon=True)
    thread.start()
    fd = os.open(port.path, os.O_RDWR | os.O_NOCTTY)
    try:
        yield emulator, fd
    finally:
        stop.set()
        thread.join(5)
        os.close(fd)
        port.close()
        assert not thread.is_alive()


def read_exactly(fd: int, size: int, timeout_s: float = 3.0) -> bytes:
    deadline = time.monotonic() + timeout_s
    got = b""
    while len(got) < size:
        left = deadline - time.monotonic()
        assert left > 0, f"only {got.hex(' ')} of {size} bytes arrived"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            got += os.read(fd, size - len(got))
    return got


def wait_for_fets(emulator: Emulator, want: tuple[bool, bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while fets(emulator) != want:
        assert time.monotonic() < deadline, f"FETs {fets(emulator)}, wanted {want}"
        time.sleep(0.01)


@pytest.mark.parametrize("gap_s", [0.0, 0.02], ids=["0ms", "20ms"])
def test_fet_writes_close_together_on_a_pty_both_apply_and_are_logged(
    pty_emulator: tuple[Emulator, int], gap_s: float
) -> None:
    emulator, fd = pty_emulator
    os.write(fd, DA_00)
    assert read_exactly(fd, 13).hex(" ") == REPLY_DA_00
    wait_for_fets(emulator, (False, True))

    os.write(fd, DA_01)
    if gap_s:
        time.sleep(gap_s)
    os.write(fd, D9_00)
    assert [read_exactly(fd, 13).hex(" ") for _ in range(2)] == [REPLY_DA_01, REPLY_D9_00]
    wait_for_fets(emulator, (True, False))
    time.sleep(0.3)  # a few control cycles later it still holds
    assert fets(emulator) == (True, False)

    # And the board says so: 0x93 data[1] charge FET 1, data[2] discharge FET 0.
    os.write(fd, request(0x93))
    status = read_exactly(fd, 13)
    assert status[:4] == bytes.fromhex("a5019308")
    assert (status[5], status[6]) == (1, 0)

    writes = fet_writes(emulator)
    assert [(w["command"], w["accepted"], w["charge_on"], w["discharge_on"]) for w in writes] == [
        (0xDA, True, False, True),
        (0xDA, True, True, True),
        (0xD9, True, True, False),
    ]
