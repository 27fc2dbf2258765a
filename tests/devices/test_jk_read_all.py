"""The emulated JK board's read-all answer has the layout of a real board's, record for record.

dbus-serialbattery (and other readers) take values at fixed offsets of the read-all answer, so the
emulated answer must hold the same records, in the same order, with the same sizes, as the real
14-cell answer recorded in ``vectors/jk.json`` (esphome-jk-bms
``docs/protocol-design-uart-ttl-gps-port.md``). The offsets are found here by walking both frames
with the doc's byte counts written out below, never with ``openbms.devices.jk``'s table, so a
mistake in that table cannot pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openbms.devices import jk
from openbms.devices.emulator import Emulator
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

RECORDED = bytes.fromhex(
    next(
        v["hex"]
        for v in json.loads((Path(__file__).parent / "vectors" / "jk.json").read_text())["vectors"]
        if v["name"] == "read all data response, 14S"
    )
)

# Value bytes after each record id, from the doc's register table (0x79 carries its own count).
SIZES = {
    **dict.fromkeys((0x80, 0x81, 0x82, 0x83, 0x84, 0x87, 0x8A, 0x8B, 0x8C), 2),
    0x85: 1,
    0x86: 1,
    0x89: 4,
    **dict.fromkeys(range(0x8E, 0x9D), 2),
    0x9D: 1,
    **dict.fromkeys(range(0x9E, 0xA9), 2),
    0xA9: 1,
    0xAA: 4,
    0xAB: 1,
    0xAC: 1,
    0xAD: 2,
    0xAE: 1,
    0xAF: 1,
    0xB0: 2,
    0xB1: 1,
    0xB2: 10,
    0xB3: 1,
    0xB4: 8,
    0xB5: 4,
    0xB6: 4,
    0xB7: 15,
    0xB8: 1,
    0xB9: 4,
    0xBA: 24,
    0xC0: 1,
}
HEADER = 11  # 4E 57, length u16, terminal id u32, command, source, transport
TRAILER = 9  # record number u32, 0x68, checksum u32

SERIES = 14
CAPACITY_AH = 120

SCENARIO = f"""\
name: jk read all
pack: {{chemistry: lfp, series: {SERIES}, capacity_ah: {CAPACITY_AH}, soc: 0.6, temperature_c: 25,
       spread: {{soc: 0.02, seed: 3}}}}
bms:
  profile: lfp
  set:
    cell_undervoltage.trip_v: 2.8
    cell_undervoltage.warn_v: 3.0
    discharge_overcurrent.trip_c_rate: 1.0
    discharge_overcurrent.warn_c_rate: 0.9
dt: 100ms
timeline:
  - load: {{current_a: 12}}
  - run: 1s
"""


def walk(frame: bytes) -> list[tuple[int, int, int]]:
    """(record id, offset of the id in the frame, value bytes) of every record, by hand."""
    out = []
    i, end = HEADER, len(frame) - TRAILER
    while i < end:
        rid = frame[i]
        size = 1 + frame[i + 1] if rid == 0x79 else SIZES[rid]  # 0x79: count byte, 3 per cell
        out.append((rid, i, size))
        i += 1 + size
    assert i == end, "records overrun the data section"
    return out


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Emulator, bytes]:
    path = tmp_path_factory.mktemp("jk") / "jk.yaml"
    path.write_text(SCENARIO)
    runner = ScenarioRunner(*load_scenario(path))
    runner.run()
    emulator = Emulator(runner, "jk")
    reply = emulator.handle_bytes(bytes.fromhex("4e5700130000000006030000000000006800000129"))
    return emulator, reply


def test_the_recorded_answer_walks_to_its_end() -> None:
    records = walk(RECORDED)
    assert int.from_bytes(RECORDED[2:4], "big") == 0x011B
    assert [r for r, _, _ in records][:2] == [0x79, 0x80] and records[-1][0] == 0xC0
    assert 0x88 not in {r for r, _, _ in records}


def test_emulated_read_all_has_the_recorded_length_ids_and_offsets(emulated: tuple[Emulator, bytes]) -> None:
    _, reply = emulated
    assert reply[:2] == b"\x4e\x57"
    assert int.from_bytes(reply[2:4], "big") == 0x011B
    assert len(reply) == len(RECORDED)
    assert walk(reply) == walk(RECORDED)
    assert reply[-5] == 0x68
    assert int.from_bytes(reply[-4:], "big") == sum(reply[:-4]) & 0xFFFF


def test_emulated_read_all_carries_the_twin_and_its_profile(emulated: tuple[Emulator, bytes]) -> None:
    emulator, reply = emulated
    state = emulator.live_state()
    at = {rid: offset + 1 for rid, offset, _ in walk(reply)}  # offset of each value

    def u(rid: int, size: int) -> int:
        return int.from_bytes(reply[at[rid] : at[rid] + size], "big")

    def i16(rid: int) -> int:
        return int.from_bytes(reply[at[rid] : at[rid] + 2], "big", signed=True)

    # Live values (the twin was stepped by nothing since the reply: live_state is the same).
    assert reply[at[0x79]] == 3 * SERIES
    cells = reply[at[0x79] + 1 : at[0x79] + 1 + 3 * SERIES]  # per cell: its number, then mV u16
    assert [cells[k] for k in range(0, len(cells), 3)] == list(range(1, SERIES + 1))
    millivolts = [int.from_bytes(cells[k + 1 : k + 3], "big") for k in range(0, len(cells), 3)]
    assert millivolts == [round(v * 1000) for v in state.cell_v]
    assert u(0x83, 2) == round(state.pack_v * 100)
    assert u(0x84, 2) == round(-state.current_a * 100)  # discharging: bit 15 clear, 10 mA
    assert state.current_a < 0
    assert u(0x85, 1) == round(state.soc * 100)
    assert u(0x8A, 2) == SERIES and u(0xA9, 1) == SERIES
    assert u(0x8C, 2) == 0x0007  # both FETs on, balancer enabled
    # Settings from the profile (lfp with the scenario's bms.set), in the board's units.
    assert u(0x8E, 2) == SERIES * 365  # pack over-voltage, 10 mV: 14 × 3.65 V
    assert u(0x8F, 2) == SERIES * 280  # pack under-voltage: 14 × 2.80 V (the override)
    assert (u(0x90, 2), u(0x91, 2), u(0x92, 2)) == (3650, 3400, 1)  # cell OV mV, release, s
    assert (u(0x93, 2), u(0x94, 2), u(0x95, 2)) == (2800, 2900, 2)  # cell UV
    assert u(0x96, 2) == 300  # imbalance, mV
    assert (u(0x97, 2), u(0x98, 2)) == (CAPACITY_AH, 1)  # discharge OC: 1.0 C (override), A
    assert (u(0x99, 2), u(0x9A, 2)) == (CAPACITY_AH, 1)  # charge OC: 1.0 C
    assert (u(0x9B, 2), u(0x9C, 2), u(0x9D, 1)) == (3400, 10, 1)  # balance start, delta mV, on
    assert (u(0x9E, 2), u(0x9F, 2)) == (90, 70)  # FET over-temperature, release
    assert (u(0xA3, 2), u(0xA4, 2)) == (45, 60)  # charge / discharge over-temperature
    assert (i16(0xA5), i16(0xA6), i16(0xA7), i16(0xA8)) == (0, 5, -20, -15)
    assert u(0xAA, 4) == CAPACITY_AH and u(0xB9, 4) == CAPACITY_AH
    assert u(0xAF, 1) == 0  # LFP
    assert u(0xB0, 2) == 300  # sleep delay, s
    assert reply[at[0xB4] : at[0xB4] + 8] == b"openbms "
    assert u(0xC0, 1) == 1


def test_emulated_read_all_decodes_to_the_twin(emulated: tuple[Emulator, bytes]) -> None:
    emulator, reply = emulated
    state = emulator.live_state()
    reading = jk.to_reading(jk.decode_frame(reply))
    assert reading.cell_v == pytest.approx(state.cell_v, abs=0.0006)
    assert reading.pack_v == pytest.approx(state.pack_v, abs=0.006)
    assert reading.current_a == pytest.approx(state.current_a, abs=0.006)
    assert reading.soc == pytest.approx(state.soc, abs=0.006)
    assert reading.temperature_c == [round(max(state.temperature_c)), round(min(state.temperature_c))]
    assert reading.fet_temperature_c == round(state.fet_temperature_c)
    assert reading.nominal_ah == CAPACITY_AH
    assert reading.cycles == state.cycles
    assert reading.name == "openbms"
    assert (reading.charge_fet, reading.discharge_fet) == (True, True)


# Where dbus-serialbattery (Louisvdw/dbus-serialbattery etc/dbus-serialbattery/bms/jkbms.py,
# ``read_status_data``) looks for each record id: ``cellbyte_count + n`` into ``frame[10:]``.
SERIALBATTERY_OFFSETS = {
    0x80: 3,
    0x81: 6,
    0x82: 9,
    0x83: 12,
    0x84: 15,
    0x85: 18,
    0x87: 22,
    0x8A: 30,
    0x8B: 33,
    0x8C: 36,
    0x9D: 84,
    0xAA: 121,
    0xB4: 155,
    0xB7: 174,
}


@pytest.mark.parametrize("which", ["recorded", "emulated"])
def test_dbus_serialbattery_finds_every_record_where_it_looks(emulated: tuple[Emulator, bytes], which: str) -> None:
    frame = RECORDED if which == "recorded" else emulated[1]
    length = int.from_bytes(frame[2:4], "big")
    status = frame[10 : length - 19]  # what its read_serial_data_jkbms hands on
    cellbyte_count = status[status.find(b"\x79", 1, 2) + 1]
    assert cellbyte_count == 3 * SERIES
    for rid, n in SERIALBATTERY_OFFSETS.items():
        assert status[cellbyte_count + n] == rid, hex(rid)
    # It decodes the device id and the version as text: both must be ASCII.
    at_b4, at_b7 = cellbyte_count + 155, cellbyte_count + 174
    status[at_b4 + 1 : at_b4 + 9].decode("ascii")
    status[at_b7 + 1 : at_b7 + 16].decode("ascii")
