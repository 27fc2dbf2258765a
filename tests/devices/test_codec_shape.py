"""The shape the three codecs share: one alarm-table shape, one pack-vs-cell policy, one scanner.

Each protocol's own tests hold its table and framer to recorded frames; these hold the shared pieces
to what every protocol relies on, so a fourth protocol built from them behaves the same way.
"""

from __future__ import annotations

import pytest
from stream_checks import drain

from openbms.bms.events import FAULT_NAMES
from openbms.devices import daly, jbd, jk
from openbms.devices.framing import INCOMPLETE, Framing
from openbms.devices.model import AlarmBit, VoltageScope, alarm_names, alarm_word, voltage_alarm

TABLES: dict[str, tuple[AlarmBit, ...]] = {
    "jbd": jbd.PROTECTION_ALARMS,
    "daly": daly.FAILURE_ALARMS,
    "jk": jk.ALARM_BITS,
}


@pytest.mark.parametrize("protocol", TABLES)
def test_every_alarm_table_is_alarm_bit_rows_one_per_bit(protocol: str) -> None:
    table = TABLES[protocol]
    assert all(isinstance(alarm, AlarmBit) for alarm in table)
    assert [alarm.bit for alarm in table] == list(range(len(table)))
    assert all(alarm.fault is None or alarm.fault in FAULT_NAMES for alarm in table)


@pytest.mark.parametrize("protocol", TABLES)
def test_a_fault_sent_by_the_server_reads_back_as_that_fault(protocol: str) -> None:
    table = TABLES[protocol]
    for fault in {alarm.fault for alarm in table if alarm.fault}:
        assert alarm_names(table, alarm_word(table, [fault])) == ([fault], [])


def test_a_warning_sets_only_the_bits_that_warn_of_it() -> None:
    word = alarm_word(daly.FAILURE_ALARMS, [], ["cell_overvoltage"])
    assert alarm_names(daly.FAILURE_ALARMS, word) == ([], ["warning:cell_overvoltage"])
    assert alarm_word(jbd.PROTECTION_ALARMS, [], ["cell_overvoltage"]) == 0  # JBD has no warning bits


def test_the_pack_vs_cell_policy() -> None:
    assert voltage_alarm(0, "pack", "over", VoltageScope.PACK).unmapped == "pack_overvoltage"
    assert voltage_alarm(0, "pack", "under", VoltageScope.PACK).unmapped == "pack_undervoltage"
    for scope in (VoltageScope.CELL, VoltageScope.DIRECTION):
        assert voltage_alarm(0, "x", "over", scope).fault == "cell_overvoltage"
        assert voltage_alarm(0, "x", "under", scope).fault == "cell_undervoltage"


# A made-up fourth protocol: AA 55, a length byte, data, an XOR checksum. Its framing is one function.
def _candidate(buffer: bytes, at: int) -> int | None:
    if len(buffer) - at < 3:
        return INCOMPLETE
    end = at + 3 + buffer[at + 2] + 1
    if end > len(buffer):
        return INCOMPLETE
    check = 0
    for byte in buffer[at : end - 1]:
        check ^= byte
    return end if buffer[end - 1] == check else None


def _frame(data: bytes) -> bytes:
    head = b"\xaa\x55" + bytes((len(data),)) + data
    check = 0
    for byte in head:
        check ^= byte
    return head + bytes((check,))


FOURTH = Framing(b"\xaa\x55", _candidate)


def test_a_fourth_protocol_needs_only_a_candidate_function() -> None:
    frames = [_frame(b"one"), _frame(b""), _frame(b"\xaa\x55\x01")]
    stream = b"\x00\xaa" + frames[0] + b"\xaa\x55\x09junk" + frames[1] + b"\xff" + frames[2]
    assert drain(FOURTH.find_frame, stream) == frames


def test_a_header_cut_in_two_is_kept_for_the_next_read() -> None:
    assert FOURTH.find_frame(b"garbage\xaa") == (None, 7)
    assert FOURTH.find_frame(b"garbage\xaa\x55") == (None, 7)
    assert FOURTH.find_frame(b"garbage") == (None, 7)
