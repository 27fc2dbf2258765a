"""JK BMS RS485 / UART "GPS port" protocol: the 0x4E 0x57 frame with id–value records.

Layout (public sources; the byte offsets below are confirmed by the example exchange in both):

* syssi/esphome-jk-bms ``docs/protocol-design-uart-ttl-gps-port.md`` — the register table (record id,
  byte count, meaning), the warning bits of 0x8B, the status bits of 0x8C and a recorded request and
  14-cell response (copied in ``tests/devices/vectors/jk.json``).
* syssi/esphome-jk-bms ``components/jk_modbus/jk_modbus.cpp`` — framing: length = bytes after the two
  start bytes, checksum = 16-bit sum of every byte before the 4-byte checksum field, whose upper two
  bytes are sent as zero ("crc unused"); frame source and frame type codes.
* syssi/esphome-jk-bms ``components/jk_bms/jk_bms.cpp`` — scales (mV, 10 mV, 10 mA, minutes for 0xB6),
  the "100 − value" negative-temperature rule, the current encoding of protocol version 0x01 and the
  signed (two's complement) low-temperature settings 0xA5–0xA8.

Frame::

    4E 57 | length u16 | terminal id u32 | command u8 | source u8 | transport type u8 |
    data | record number u32 | 0x68 | checksum u32 (upper 16 bits 0, lower = sum of all bytes before)

In a response the data is a run of records ``id value`` whose value length is fixed per id (table
``RECORDS``) except 0x79, which carries its own byte count. Lengths are not on the wire, so an id we do
not know makes the rest of the frame unreadable: that is a ``FrameError``, never a guess. In a request
the data is a register byte (0x00 = all) and, for a write, the value.

Current (0x84), positive = charging as everywhere in openbms: protocol version 0x01 (record 0xC0)
sends sign-magnitude with bit 15 set = charging, 10 mA per count (0x80D0 = +2.08 A, 0x07D0 = −20 A);
version 0x00 — the documented default, also assumed when 0xC0 is absent — sends ``10000 − I/10 mA``
(raw 9500 = +5 A charging, 11000 = −10 A discharging). Another version: the current is unknown (None).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Literal

from openbms.bms.events import FAULT_NAMES
from openbms.devices.errors import FrameError
from openbms.devices.fields import Field, bits
from openbms.devices.model import DeviceReading

PROTOCOL = "jk"

START = b"\x4e\x57"
END = 0x68
_HEADER = 11  # start 2, length 2, terminal id 4, command, source, transport
_TRAILER = 9  # record number 4, end 1, checksum 4
MIN_FRAME_LEN = _HEADER + _TRAILER  # a frame with an empty data section

# Command word, frame source and frame ("transport") type codes (jk_modbus.cpp comments).
COMMAND_ACTIVATE = 0x01
COMMAND_WRITE = 0x02
COMMAND_READ = 0x03
COMMAND_PASSWORD = 0x05
COMMAND_READ_ALL = 0x06
SOURCE_BMS = 0x00
SOURCE_BLUETOOTH = 0x01
SOURCE_GPS = 0x02
SOURCE_COMPUTER = 0x03
TRANSPORT_READ = 0x00  # a request: "read data"
TRANSPORT_REPLY = 0x01
TRANSPORT_UPLOAD = 0x02  # "BMS active upload"
REGISTER_ALL = 0x00

CELLS = 0x79
CURRENT = 0x84
ALARMS = 0x8B
STATUS = 0x8C
PROTOCOL_VERSION = 0xC0

Kind = Literal["number", "temperature", "current", "text", "cells"]
Value = int | float | str | list[float] | None


@dataclass(frozen=True)
class Record:
    """What one record id means: name (with its SI unit), value length on the wire and how to read it.

    ``size`` is the fixed number of value bytes after the id; 0x79 (``kind="cells"``) is the one record
    whose value is preceded by its own byte count, so its ``size`` is 0 here.
    """

    name: str
    size: int
    kind: Kind = "number"
    fmt: str = ""
    scale: float = 1.0

    @property
    def field(self) -> Field:
        return Field(self.name, 0, self.fmt, self.scale)


def _u8(name: str, scale: float = 1.0) -> Record:
    return Record(name, 1, "number", "B", scale)


def _u16(name: str, scale: float = 1.0) -> Record:
    return Record(name, 2, "number", ">H", scale)


def _i16(name: str) -> Record:
    return Record(name, 2, "number", ">h")


def _u32(name: str, scale: float = 1.0) -> Record:
    return Record(name, 4, "number", ">I", scale)


def _temp(name: str) -> Record:
    return Record(name, 2, "temperature", ">H")


def _text(name: str, size: int) -> Record:
    return Record(name, size, "text")


# Record id -> meaning, from the register table of protocol-design-uart-ttl-gps-port.md (byte counts
# as listed there; scales as decoded in jk_bms.cpp). Names carry SI units; "soc" and the low-capacity
# alarm level are fractions 0..1 (SPEC §1).
RECORDS: dict[int, Record] = {
    CELLS: Record("cell_v", 0, "cells"),  # count byte (3 per cell), then cell number u8, mV u16
    0x80: _temp("fet_temperature_c"),  # power tube (MOS)
    0x81: _temp("box_temperature_c"),  # "temperature in the battery box" = sensor 1
    0x82: _temp("battery_temperature_c"),  # sensor 2
    0x83: _u16("pack_v", 0.01),
    CURRENT: Record("current_a", 2, "current", ">H"),
    0x85: _u8("soc", 0.01),
    0x86: _u8("temperature_sensor_count"),
    0x87: _u16("cycles"),
    0x89: _u32("total_cycle_capacity_ah"),
    0x8A: _u16("cell_count"),
    ALARMS: _u16("alarm_bits"),
    STATUS: _u16("status_bits"),
    0x8E: _u16("pack_overvoltage_protection_v", 0.01),
    0x8F: _u16("pack_undervoltage_protection_v", 0.01),
    0x90: _u16("cell_overvoltage_protection_v", 0.001),
    0x91: _u16("cell_overvoltage_release_v", 0.001),
    0x92: _u16("cell_overvoltage_delay_s"),
    0x93: _u16("cell_undervoltage_protection_v", 0.001),
    0x94: _u16("cell_undervoltage_release_v", 0.001),
    0x95: _u16("cell_undervoltage_delay_s"),
    0x96: _u16("cell_imbalance_protection_v", 0.001),
    0x97: _u16("discharge_overcurrent_protection_a"),
    0x98: _u16("discharge_overcurrent_delay_s"),
    0x99: _u16("charge_overcurrent_protection_a"),
    0x9A: _u16("charge_overcurrent_delay_s"),
    0x9B: _u16("balance_start_v", 0.001),
    0x9C: _u16("balance_trigger_delta_v", 0.001),
    0x9D: _u8("balancer_enabled"),
    0x9E: _u16("fet_overtemperature_protection_c"),
    0x9F: _u16("fet_overtemperature_release_c"),
    0xA0: _u16("box_overtemperature_protection_c"),
    0xA1: _u16("box_overtemperature_release_c"),
    0xA2: _u16("temperature_difference_protection_c"),
    0xA3: _u16("charge_overtemperature_protection_c"),
    0xA4: _u16("discharge_overtemperature_protection_c"),
    0xA5: _i16("charge_undertemperature_protection_c"),  # signed, no 100 offset
    0xA6: _i16("charge_undertemperature_release_c"),
    0xA7: _i16("discharge_undertemperature_protection_c"),
    0xA8: _i16("discharge_undertemperature_release_c"),
    0xA9: _u8("cell_count_setting"),
    0xAA: _u32("nominal_capacity_ah"),
    0xAB: _u8("charge_fet_switch"),
    0xAC: _u8("discharge_fet_switch"),
    0xAD: _u16("current_calibration_a", 0.001),  # sent in mA
    0xAE: _u8("board_address"),
    0xAF: _u8("battery_type"),  # 0 LFP, 1 ternary (NMC), 2 LTO
    0xB0: _u16("sleep_wait_s"),
    0xB1: _u8("low_capacity_alarm_soc", 0.01),
    0xB2: _text("password", 10),
    0xB3: _u8("dedicated_charger_switch"),
    0xB4: _text("device_id", 8),
    0xB5: _text("manufacture_date", 4),
    0xB6: _u32("runtime_s", 60.0),  # sent in minutes
    0xB7: _text("software_version", 15),
    0xB8: _u8("current_calibration_start"),
    0xB9: _u32("actual_capacity_ah"),
    0xBA: _text("manufacturer_id", 24),
    # Write-only registers: never in a read-all answer, listed so their lengths are known.
    0xBB: _u8("restart"),
    0xBC: _u8("factory_reset"),
    0xBD: _u8("remote_upgrade"),
    0xBE: _u16("gps_off_low_voltage_v", 0.001),
    0xBF: _u16("gps_on_recovery_voltage_v", 0.001),
    PROTOCOL_VERSION: _u8("protocol_version"),
}

# The records of a real board's read-all answer, in its order (the recorded 14-cell answer in
# tests/devices/vectors/jk.json): every readable id from 0x79 to 0xBA except 0x88, then 0xC0.
# Readers such as dbus-serialbattery look values up at fixed offsets of this layout.
READ_ALL_RECORDS: tuple[int, ...] = (
    CELLS,
    *range(0x80, 0x88),
    *range(0x89, 0x8D),
    *range(0x8E, 0xBB),
    PROTOCOL_VERSION,
)

# A frame holds each record at most once, so no real frame is longer than this: a longer length field
# is garbage (find_frame skips it instead of waiting for bytes that will never make sense).
MAX_FRAME_LEN = _HEADER + _TRAILER + 2 + 255 + sum(1 + r.size for i, r in RECORDS.items() if i != CELLS)

# 0x8B warning bits -> our names (bit order of the doc's table ^1 and of ERRORS[] in jk_bms.cpp).
# SPEC §3 names go to DeviceReading.faults, the rest to unmapped_alarms.
# JK has one "battery over temperature" and one "battery low temperature" bit for both directions; the
# charge-side limits (SPEC defaults 45 °C / 0 °C) are always passed before the discharge-side ones
# (60 °C / −20 °C), so the charge-side fault is the one the bit certainly implies. Whether discharge is
# blocked too shows in the discharge FET bit of 0x8C.
ALARM_BITS: tuple[str, ...] = (
    "low_capacity",  # 0 low capacity (a warning; no SPEC fault for low SOC)
    "fet_overtemperature",  # 1 MOS tube over-temperature
    "cell_overvoltage",  # 2 charging over-voltage (total voltage, 0x8E), blocks charge like ours
    "cell_undervoltage",  # 3 discharge under-voltage (total voltage, 0x8F)
    "charge_overtemperature",  # 4 battery over-temperature (see above)
    "charge_overcurrent",  # 5 charging over-current
    "discharge_overcurrent",  # 6 discharge over-current
    "cell_imbalance",  # 7 cell "pressure" (voltage) difference
    "box_overtemperature",  # 8 over-temperature in the battery box (sensor 1, not the cells')
    "charge_undertemperature",  # 9 battery low temperature (see above)
    "cell_overvoltage",  # 10 monomer (cell) over-voltage
    "cell_undervoltage",  # 11 monomer (cell) under-voltage
    "protection_309_a",  # 12 "309_A protection" (undocumented meaning)
    "protection_309_b",  # 13 the doc says "309_A" again; a second, distinct bit
    "reserved_bit_14",  # 14 reserved
    "reserved_bit_15",  # 15 reserved
)

SPEC_FAULTS = frozenset(FAULT_NAMES)

# 0x8C status bits (esphome-jk-bms protocol doc). Bits 4..15 are reserved.
STATUS_CHARGE_FET = 0
STATUS_DISCHARGE_FET = 1
STATUS_BALANCER = 2  # balance switch state (enabled), not "bleeding now"
# The doc calls bit 3 "battery dropped: 1 normal, 0 offline", but the doc's own recorded answer from
# a working board (tests/devices/vectors/jk.json) has 0x8C = 0x0007: bit 3 clear. We trust the
# recording: a healthy board leaves bit 3 at 0, and we neither rely on it nor send it.
STATUS_DROPPED = 3


@dataclass(frozen=True)
class JkFrame:
    """A decoded response: the envelope and the raw value bytes of every record, in wire order.

    Raw bytes keep ``encode_frame(decode_frame(x)) == x`` exact; ``values()`` gives SI values.
    """

    command: int
    source: int
    transport: int
    records: dict[int, bytes]
    record_number: int = 0
    terminal_id: int = 0

    @property
    def protocol_version(self) -> int:
        raw = self.records.get(PROTOCOL_VERSION)
        return raw[0] if raw else 0

    def value(self, record_id: int) -> Value:
        """The SI value of one record (the current needs the frame's own protocol version)."""
        raw = self.records.get(record_id)
        if raw is None:
            return None
        return decode_value(record_id, raw, self.protocol_version)

    def values(self) -> dict[str, Value]:
        """Every record by table name, for a monitor or log that shows all settings too."""
        return {RECORDS[rid].name: self.value(rid) for rid in self.records}


@dataclass(frozen=True)
class JkRequest:
    """A decoded request (for an emulator): what is asked for, and the value of a write."""

    command: int
    terminal_id: int = 0
    register: int = REGISTER_ALL
    value: bytes = b""
    source: int = SOURCE_COMPUTER
    transport: int = TRANSPORT_READ
    record_number: int = 0


# --- values -------------------------------------------------------------------------------------


def _record(record_id: int) -> Record:
    rec = RECORDS.get(record_id)
    if rec is None:
        raise FrameError(f"unknown JK record id 0x{record_id:02x}: its length is not known")
    return rec


def _current_from_raw(raw: int, version: int) -> float | None:
    if version == 0x01:
        magnitude = (raw & 0x7FFF) / 100
        return magnitude if raw & 0x8000 or magnitude == 0 else -magnitude
    if version == 0x00:
        return (10000 - raw) / 100
    return None


def _current_to_raw(current_a: float, version: int) -> int:
    counts = round(current_a * 100)
    if version == 0x01:
        raw = (0x8000 | counts) if counts >= 0 else -counts
        if abs(counts) > 0x7FFF:
            raise FrameError(f"current {current_a} A does not fit 15 bits of 10 mA")
        return raw
    if version == 0x00:
        raw = 10000 - counts
        if not 0 <= raw <= 0xFFFF:
            raise FrameError(f"current {current_a} A does not fit the 10000-offset encoding")
        return raw
    raise FrameError(f"unknown JK protocol version {version}: cannot encode the current")


def decode_value(record_id: int, raw: bytes, protocol_version: int = 0) -> Value:
    """One record's value in SI units: cells in cell-number order, text (latin-1) without NUL padding."""
    rec = _record(record_id)
    if rec.kind == "cells":
        if len(raw) % 3:
            raise FrameError(f"0x79 holds {len(raw)} bytes, not 3 per cell")
        cells = sorted((raw[i], int.from_bytes(raw[i + 1 : i + 3], "big")) for i in range(0, len(raw), 3))
        return [mv / 1000 for _, mv in cells]
    if len(raw) != rec.size:
        raise FrameError(f"record 0x{record_id:02x} ({rec.name}) has {len(raw)} bytes, not {rec.size}")
    if rec.kind == "text":
        return raw.decode("latin-1").rstrip("\x00")
    number = rec.field.decode(raw)
    if rec.kind == "temperature":  # 101 = −1 °C ... 140 = −40 °C
        return int(100 - number if number > 100 else number)
    if rec.kind == "current":
        return _current_from_raw(int(number), protocol_version)
    # Rounded to well below the resolution so 3050 mV reads 3.05, not 3.0500000000000003.
    return int(number) if rec.scale == 1 else round(number, 9)


def encode_value(record_id: int, value: Value | bytes, protocol_version: int = 0) -> bytes:
    """The raw bytes of one record value; ``bytes`` pass through (length checked)."""
    rec = _record(record_id)
    if isinstance(value, bytes):
        raw = value
    elif rec.kind == "cells":
        if not isinstance(value, list):
            raise FrameError("0x79 takes a list of cell voltages")
        millivolts = Field("cell_v", 0, ">H", 0.001)
        raw = b"".join(bytes([n]) + _encode_number(millivolts, v) for n, v in enumerate(value, 1))
    elif rec.kind == "text":
        if not isinstance(value, str):
            raise FrameError(f"{rec.name} takes text")
        try:
            text = value.encode("latin-1")
        except UnicodeEncodeError:
            raise FrameError(f"{rec.name}: {value!r} is not latin-1") from None
        if len(text) > rec.size:
            raise FrameError(f"{rec.name}: {value!r} is longer than {rec.size} bytes")
        raw = text.ljust(rec.size, b"\x00")
    elif rec.kind == "temperature":
        t = _finite(rec.name, value)
        if t > 100:
            raise FrameError(f"{rec.name}: {t} °C is above the 100 °C the encoding can carry")
        raw = _encode_number(rec.field, t if t >= 0 else 100 - t)
    elif rec.kind == "current":
        raw = struct.pack(">H", _current_to_raw(_finite(rec.name, value), protocol_version))
    else:
        raw = _encode_number(rec.field, _finite(rec.name, value))
    if rec.kind == "cells":
        if len(raw) % 3 or len(raw) > 255:
            raise FrameError(f"0x79 holds {len(raw)} bytes: not 3 per cell, or more than 85 cells")
    elif len(raw) != rec.size:
        raise FrameError(f"record 0x{record_id:02x} ({rec.name}) needs {rec.size} bytes, got {len(raw)}")
    return raw


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FrameError(f"{name} takes a finite number, not {value!r}")
    return float(value)


def _encode_number(field: Field, value: float) -> bytes:
    buffer = bytearray(field.size)
    field.encode_into(buffer, _finite(field.name, value))
    return bytes(buffer)


# --- frames -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Envelope:
    terminal_id: int
    command: int
    source: int
    transport: int
    data: bytes
    record_number: int


def _unwrap(frame: bytes) -> _Envelope:
    """Check everything but the data section: start, length, end byte and checksum."""
    if len(frame) < MIN_FRAME_LEN:
        raise FrameError(f"a JK frame has at least {MIN_FRAME_LEN} bytes, got {len(frame)}")
    if frame[:2] != START:
        raise FrameError(f"a JK frame starts with 4E 57, not {frame[:2].hex(' ')}")
    length = int.from_bytes(frame[2:4], "big")
    if length + 2 != len(frame):
        raise FrameError(f"length field says {length + 2} bytes, frame has {len(frame)}")
    if frame[-5] != END:
        raise FrameError(f"end byte is 0x{frame[-5]:02x}, not 0x68")
    checksum = int.from_bytes(frame[-4:], "big")
    expected = sum(frame[:-4]) & 0xFFFF
    if checksum != expected:
        raise FrameError(f"checksum 0x{checksum:08x}, computed 0x{expected:08x}")
    return _Envelope(
        terminal_id=int.from_bytes(frame[4:8], "big"),
        command=frame[8],
        source=frame[9],
        transport=frame[10],
        data=frame[_HEADER:-_TRAILER],
        record_number=int.from_bytes(frame[-9:-5], "big"),
    )


def _wrap(terminal_id: int, command: int, source: int, transport: int, data: bytes, record_number: int) -> bytes:
    for name, value, limit in (
        ("terminal id", terminal_id, 0xFFFFFFFF),
        ("command", command, 0xFF),
        ("source", source, 0xFF),
        ("transport", transport, 0xFF),
        ("record number", record_number, 0xFFFFFFFF),
    ):
        if not 0 <= value <= limit:
            raise FrameError(f"{name} {value} does not fit its field")
    length = 2 + (_HEADER - 4) + len(data) + _TRAILER
    if length > 0xFFFF:
        raise FrameError(f"data section of {len(data)} bytes does not fit a frame")
    head = START + struct.pack(">HIBBB", length, terminal_id, command, source, transport)
    body = head + data + struct.pack(">IB", record_number, END)
    return body + struct.pack(">I", sum(body) & 0xFFFF)


def _parse_records(data: bytes) -> dict[int, bytes]:
    records: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        rid = data[i]
        rec = _record(rid)
        if rid in records:
            raise FrameError(f"record 0x{rid:02x} appears twice")
        i += 1
        if rec.kind == "cells":
            if i >= len(data):
                raise FrameError("0x79 has no byte count")
            size = data[i]
            i += 1
            if size % 3:
                raise FrameError(f"0x79 holds {size} bytes, not 3 per cell")
        else:
            size = rec.size
        if i + size > len(data):
            raise FrameError(f"record 0x{rid:02x} needs {size} bytes, {len(data) - i} left")
        records[rid] = data[i : i + size]
        i += size
    return records


def decode_frame(frame: bytes | bytearray | memoryview) -> JkFrame:
    """Decode one complete response frame (exactly its bytes); FrameError for anything else."""
    env = _unwrap(bytes(frame))
    return JkFrame(
        command=env.command,
        source=env.source,
        transport=env.transport,
        records=_parse_records(env.data),
        record_number=env.record_number,
        terminal_id=env.terminal_id,
    )


def encode_frame(frame: JkFrame) -> bytes:
    """The wire bytes of a response; records go out in the order of ``frame.records``."""
    parts = []
    for rid, raw in frame.records.items():
        checked = encode_value(rid, raw)
        parts.append(bytes([rid, len(checked)]) + checked if rid == CELLS else bytes([rid]) + checked)
    return _wrap(frame.terminal_id, frame.command, frame.source, frame.transport, b"".join(parts), frame.record_number)


def encode_request(
    command: int = COMMAND_READ_ALL,
    terminal_id: int = 0,
    register: int = REGISTER_ALL,
    value: bytes = b"",
    source: int = SOURCE_COMPUTER,
    transport: int = TRANSPORT_READ,
    record_number: int = 0,
) -> bytes:
    """A request as a PC sends it; the defaults are the documented "read all data" request."""
    if not 0 <= register <= 0xFF:
        raise FrameError(f"register {register} does not fit a byte")
    return _wrap(terminal_id, command, source, transport, bytes([register]) + bytes(value), record_number)


def decode_request(frame: bytes | bytearray | memoryview) -> JkRequest:
    """Decode a request (what an emulated BMS receives): a register byte, then a write's value."""
    env = _unwrap(bytes(frame))
    if not env.data:
        raise FrameError("a JK request names a register; this one has no data")
    return JkRequest(
        command=env.command,
        terminal_id=env.terminal_id,
        register=env.data[0],
        value=env.data[1:],
        source=env.source,
        transport=env.transport,
        record_number=env.record_number,
    )


_NEED_MORE = -1
_NOT_A_FRAME = 0


def _frame_at(buffer: bytes, at: int) -> int:
    """Length of the valid frame starting at ``at``; _NEED_MORE if it may be one still arriving."""
    if len(buffer) - at < 4:
        return _NEED_MORE
    total = int.from_bytes(buffer[at + 2 : at + 4], "big") + 2
    if not MIN_FRAME_LEN <= total <= MAX_FRAME_LEN:
        return _NOT_A_FRAME
    if len(buffer) - at < total:
        return _NEED_MORE
    try:
        _unwrap(buffer[at : at + total])
    except FrameError:
        return _NOT_A_FRAME
    return total


def find_frame(buffer: bytes | bytearray | memoryview) -> tuple[bytes | None, int]:
    """The first complete, checksum-valid frame in ``buffer`` and how many bytes to drop.

    Returns ``(frame, consumed)`` with the frame ending at ``consumed`` (garbage before it is dropped
    with it), or ``(None, consumed)`` where the first ``consumed`` bytes are garbage and the rest may
    be a frame still arriving. A start that does not lead to a valid frame is skipped byte by byte,
    and a later complete frame wins over an earlier start still waiting for bytes, so noise that looks
    like a header cannot hide a real frame. Progress: with ``len(buffer) >= MAX_FRAME_LEN`` a ``None``
    answer always drops at least one byte.
    """
    buf = bytes(buffer)
    waiting: int | None = None
    at = buf.find(START)
    while at != -1:
        size = _frame_at(buf, at)
        if size > 0:
            return buf[at : at + size], at + size
        if size == _NEED_MORE and waiting is None:
            waiting = at
        at = buf.find(START, at + 1)
    if waiting is not None:
        return None, waiting
    keep = 1 if buf[-1:] == START[:1] else 0  # a trailing 0x4E may begin the next header
    return None, len(buf) - keep


# --- reading ------------------------------------------------------------------------------------


def alarm_names(alarm_bits: int) -> tuple[list[str], list[str]]:
    """The set bits of 0x8B as (SPEC §3 faults, unmapped alarms), each once, in bit order."""
    faults: list[str] = []
    unmapped: list[str] = []
    for bit in bits(alarm_bits, len(ALARM_BITS)):
        name = ALARM_BITS[bit]
        target = faults if name in SPEC_FAULTS else unmapped
        if name not in target:
            target.append(name)
    return faults, unmapped


def to_reading(frame: JkFrame) -> DeviceReading:
    """Our view of a read-all answer. Records that are absent stay None.

    ``temperature_c`` is [box sensor (0x81), battery sensor (0x82)] — JK's sensors 1 and 2; the FET
    temperature (0x80) is not a cell temperature, so it is not in that list (``frame.value(0x80)``).
    ``balancing`` stays None: bit 2 of 0x8C says the balancer is enabled, not which cells bleed.
    ``remaining_ah`` stays None: the answer carries the SOC (0x85), not a remaining charge.
    ``name`` is the device id (0xB4), ``firmware`` the software version (0xB7).
    """

    def number(rid: int) -> float | None:
        v = frame.value(rid)
        return float(v) if isinstance(v, int | float) else None

    status = number(STATUS)
    status_bits = int(status) if status is not None else None
    alarm = number(ALARMS)
    faults, unmapped = alarm_names(int(alarm)) if alarm is not None else ([], [])
    cells = frame.value(CELLS)
    temperatures = [t for t in (number(0x81), number(0x82)) if t is not None]
    cycles = number(0x87)
    nominal = number(0xAA)
    name = frame.value(0xB4)
    firmware = frame.value(0xB7)
    return DeviceReading(
        protocol=PROTOCOL,
        cell_v=cells if isinstance(cells, list) else None,
        temperature_c=temperatures or None,
        fet_temperature_c=number(0x80),
        current_a=number(CURRENT),
        pack_v=number(0x83),
        soc=number(0x85),
        charge_fet=None if status_bits is None else bool(status_bits >> STATUS_CHARGE_FET & 1),
        discharge_fet=None if status_bits is None else bool(status_bits >> STATUS_DISCHARGE_FET & 1),
        faults=faults,
        unmapped_alarms=unmapped,
        balancing=None,
        cycles=None if cycles is None else int(cycles),
        nominal_ah=nominal or None,
        name=(name.strip() or None) if isinstance(name, str) else None,
        firmware=(firmware.strip() or None) if isinstance(firmware, str) else None,
    )
