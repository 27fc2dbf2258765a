"""JBD / Xiaoxiang smart BMS, UART at 9600 8N1 (the same frames travel over its BLE dongle).

Why this module exists: JBD boards (also sold as Xiaoxiang, Overkill Solar, many "smart BMS" packs)
are the most common BMS a DIY-solar owner can plug a USB-UART into. We decode what they report onto
our own vocabulary (``DeviceReading``, docs/behaviour.md §3 fault names), and encode the same frames so the twin
can impersonate one (an emulator) and the decoders can be tested against their own output.

Frame layout (register map of the bms-tools project, gitlab.com/bms-tools/bms-tools
``JBD_REGISTER_MAP.md``, as copied in github.com/ieb/N2KNMEA0183Wifi
``ui/lifepo4/JBD-BMS-SERIAL-INTERFACE.md``; checked against patman15/aiobmsble
``aiobmsble/bms/jbd_bms.py``)::

    request  DD | A5 read, 5A write | register | length | data | checksum u16 BE | 77
    reply    DD | register | status (0x00 ok, 0x80 error) | length | data | checksum u16 BE | 77

The checksum is ``0x10000 - sum(...)`` over the bytes from the one after the A5/5A (requests) or
after the register (replies) through the data: i.e. register+length+data for requests and
status+length+data for replies. Both framings therefore put the checksummed span at the same
offsets, so one framer serves both directions.

Every decoder here raises ``FrameError`` for bad bytes and nothing else.
"""

from __future__ import annotations

import datetime
import struct
from dataclasses import dataclass, field
from typing import Final

from openbms.devices.errors import FrameError
from openbms.devices.fields import Field, bits, decode_fields, encode_fields
from openbms.devices.framing import INCOMPLETE, Framing
from openbms.devices.model import AlarmBit, DeviceReading, VoltageScope, alarm_names, voltage_alarm

BytesLike = bytes | bytearray | memoryview

START: Final = 0xDD
END: Final = 0x77
READ: Final = 0xA5
WRITE: Final = 0x5A

REG_BASIC_INFO: Final = 0x03
REG_CELLS: Final = 0x04
REG_NAME: Final = 0x05
REG_FET_CONTROL: Final = 0xE1

# Factory mode and the EEPROM settings registers (bms-tools ``JBD_REGISTER_MAP.md``; the values
# dbus-serialbattery's ``lltjbd.py`` reads at start-up). A reader enters factory mode by writing
# 0x5678 to register 0x00, reads settings, then writes 0x0000 (leave) or 0x2828 (leave and save)
# to register 0x01.
REG_ENTER_FACTORY: Final = 0x00
REG_EXIT_FACTORY: Final = 0x01
ENTER_FACTORY: Final = b"\x56\x78"
EXIT_FACTORY: Final = b"\x00\x00"
EXIT_FACTORY_SAVE: Final = b"\x28\x28"
REG_CYCLE_CAP: Final = 0x11  # u16, 10 mAh
REG_CHGOC: Final = 0x28  # charge over-current trip, i16, 10 mA
REG_DSGOC: Final = 0x29  # discharge over-current trip, i16, 10 mA, stored negative (discharge)
REG_FUNC_CONFIG: Final = 0x2D  # bit 0 switch, 1 scrl, 2 balance_en, 3 chg_balance_en, 4 led_en, 5 led_num
FUNC_BALANCE_EN: Final = 1 << 2
FUNC_CHG_BALANCE_EN: Final = 1 << 3

STATUS_OK: Final = 0x00
STATUS_ERROR: Final = 0x80

# The largest payload in the register map is the cell-voltage block of a 32-cell board (the map has
# 32 cell calibration registers, 0xB0..0xCF, and balance bitmaps for cells 1..32): 64 bytes. The
# basic-info block is 23 + 2 x NTC count with at most 8 NTCs (0xD0..0xD7) = 39 bytes, plus the few
# bytes newer firmware appends. A length byte above this cap cannot be a JBD frame: it is garbage
# (typically a stray 0xDD), and a framer that believed it would wait for up to 262 bytes that never
# come while real frames go by.
MAX_DATA: Final = 64
_OVERHEAD: Final = 7  # DD, two header bytes, length, two checksum bytes, 77
MAX_FRAME: Final = MAX_DATA + _OVERHEAD


def checksum(span: BytesLike) -> int:
    """``0x10000 - sum(span)`` as a u16 (an empty span sums to 0 and gives 0x0000, not 0x10000)."""
    return (0x10000 - sum(bytes(span))) & 0xFFFF


def _frame(first: int, second: int, data: bytes) -> bytes:
    if len(data) > MAX_DATA:
        raise FrameError(f"JBD payload of {len(data)} bytes exceeds the {MAX_DATA}-byte cap")
    body = bytes((second, len(data))) + data
    return bytes((START, first)) + body + checksum(body).to_bytes(2, "big") + bytes((END,))


def _unframe(frame: BytesLike) -> tuple[int, int, bytes]:
    """Check one complete frame; return its two header bytes and its data."""
    raw = bytes(frame)
    if len(raw) < _OVERHEAD:
        raise FrameError(f"JBD frame of {len(raw)} bytes is shorter than the {_OVERHEAD}-byte minimum")
    if raw[0] != START:
        raise FrameError(f"JBD frame starts with 0x{raw[0]:02X}, not 0xDD")
    length = raw[3]
    if length > MAX_DATA:
        raise FrameError(f"JBD length byte {length} exceeds the {MAX_DATA}-byte cap")
    if len(raw) != length + _OVERHEAD:
        raise FrameError(f"JBD frame is {len(raw)} bytes, its length byte says {length + _OVERHEAD}")
    if raw[-1] != END:
        raise FrameError(f"JBD frame ends with 0x{raw[-1]:02X}, not 0x77")
    expected = checksum(raw[2 : 4 + length])
    got = int.from_bytes(raw[4 + length : 6 + length], "big")
    if got != expected:
        raise FrameError(f"JBD checksum 0x{got:04X}, expected 0x{expected:04X}")
    return raw[1], raw[2], raw[4 : 4 + length]


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise FrameError(f"{what} {value} does not fit one byte")
    return value


# --- requests (host -> BMS) --------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A host's request as the BMS (or our emulator) sees it."""

    register: int
    write: bool
    data: bytes = b""


def encode_request(register: int) -> bytes:
    """A read request: ``DD A5 reg 00 chk 77``."""
    return _frame(READ, _byte(register, "register"), b"")


def encode_write(register: int, data: bytes) -> bytes:
    """A write request: ``DD 5A reg len data chk 77``."""
    return _frame(WRITE, _byte(register, "register"), bytes(data))


def encode_fet_control(charge_on: bool, discharge_on: bool) -> bytes:
    """Write register 0xE1: a set bit switches a FET *off* (bit 0 charge, bit 1 discharge)."""
    return encode_write(REG_FET_CONTROL, _encode_fet_control(charge_on, discharge_on))


def _encode_fet_control(charge_on: bool, discharge_on: bool) -> bytes:
    return (int(not charge_on) | int(not discharge_on) << 1).to_bytes(2, "big")


def decode_fet_control(data: BytesLike) -> tuple[bool, bool]:
    """The (charge_on, discharge_on) a 0xE1 write asks for; higher bits are ignored, as a board does."""
    raw = bytes(data)
    if len(raw) != 2:
        raise FrameError(f"JBD FET control needs 2 data bytes, got {len(raw)}")
    value = int.from_bytes(raw, "big")
    return not value & 1, not value & 2


def decode_request(frame: BytesLike) -> Request:
    """Parse a host request (what an emulated BMS receives)."""
    first, register, data = _unframe(frame)
    if first not in (READ, WRITE):
        raise FrameError(f"JBD request needs 0xA5 or 0x5A after 0xDD, got 0x{first:02X} (a reply?)")
    return Request(register=register, write=first == WRITE, data=data)


# --- replies (BMS -> host) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A BMS reply: ``status`` 0x00 is ok, 0x80 an error (then ``data`` is usually empty)."""

    register: int
    status: int
    data: bytes


def encode_reply(register: int, data: bytes, status: int = STATUS_OK) -> bytes:
    """``DD reg status len data chk 77``."""
    if register in (READ, WRITE):
        raise FrameError(f"register 0x{register:02X} would read back as a request")
    return _frame(_byte(register, "register"), _byte(status, "status"), bytes(data))


def decode_reply(frame: BytesLike) -> Reply:
    """Parse a BMS reply (what the host receives)."""
    register, status, data = _unframe(frame)
    if register in (READ, WRITE):
        raise FrameError(f"JBD frame with 0x{register:02X} after 0xDD is a request, not a reply")
    return Reply(register=register, status=status, data=data)


# --- register 0x03: basic info -----------------------------------------------------------------

# Offsets in the 0x03 payload (bms-tools register map; aiobmsble's table is the same shifted by the
# 4-byte frame header). Current is signed, negative when discharging, which is already our sign.
_BASIC: Final[tuple[Field, ...]] = (
    Field("pack_v", 0, ">H", 0.01),
    Field("current_a", 2, ">h", 0.01),
    Field("remaining_ah", 4, ">H", 0.01),
    Field("nominal_ah", 6, ">H", 0.01),
    Field("cycles", 8, ">H"),
    Field("date_raw", 10, ">H"),  # bits 15..9 year - 2000, 8..5 month, 4..0 day
    Field("balance_low", 12, ">H"),  # bit i: cell i + 1 bleeding (cells 1..16)
    Field("balance_high", 14, ">H"),  # cells 17..32
    Field("protection", 16, ">H"),
    Field("software_version", 18, "B"),
    Field("soc", 19, "B", 0.01),  # RSOC in %
    Field("fet", 20, "B"),  # bit 0 charge FET on, bit 1 discharge FET on
    Field("cell_count", 21, "B"),
    Field("ntc_count", 22, "B"),
)
_BASIC_SIZE: Final = 23
_KELVIN_OFFSET_DK: Final = 2731  # NTCs report 0.1 K; 273.1 K is the JBD's own 0 degC


def _ntc_field(k: int) -> Field:
    return Field(f"ntc{k}", _BASIC_SIZE + 2 * k, ">H", 0.1, -_KELVIN_OFFSET_DK / 10)


@dataclass(frozen=True)
class BasicInfo:
    """The 0x03 block in SI units; ``extra`` keeps bytes newer firmware appends after the NTCs."""

    pack_v: float
    current_a: float  # positive charging
    remaining_ah: float
    nominal_ah: float
    cycles: int
    date_raw: int
    balance_mask: int  # bit i: cell i + 1 bleeding, cells 1..32
    protection: int  # raw protection bits, see PROTECTION_BITS
    software_version: int
    soc: float  # 0..1 (the board's RSOC)
    charge_fet: bool
    discharge_fet: bool
    cell_count: int
    temperatures_c: list[float] = field(default_factory=list)
    extra: bytes = b""

    @property
    def production_date(self) -> datetime.date | None:
        """The packed manufacture date, or None where the bits do not form a calendar date."""
        try:
            return datetime.date(2000 + (self.date_raw >> 9), self.date_raw >> 5 & 0x0F, self.date_raw & 0x1F)
        except ValueError:
            return None


def encode_date(date: datetime.date) -> int:
    """``date`` packed as the 0x03 block carries it (``BasicInfo.date_raw``); the inverse of
    ``BasicInfo.production_date``."""
    if not 2000 <= date.year < 2128:
        raise FrameError(f"{date} does not fit the 7-bit year of the JBD date")
    return (date.year - 2000) << 9 | date.month << 5 | date.day


def decode_basic_info(data: BytesLike) -> BasicInfo:
    raw = bytes(data)
    # raw x scale leaves binary noise (15.600000000000001); 9 decimals is far below any resolution
    values = {k: round(v, 9) for k, v in decode_fields(_BASIC, raw).items()}
    ntc_count = int(values["ntc_count"])
    temperatures = [round(_ntc_field(k).decode(raw), 9) for k in range(ntc_count)]
    fet = int(values["fet"])
    return BasicInfo(
        pack_v=values["pack_v"],
        current_a=values["current_a"],
        remaining_ah=values["remaining_ah"],
        nominal_ah=values["nominal_ah"],
        cycles=int(values["cycles"]),
        date_raw=int(values["date_raw"]),
        balance_mask=int(values["balance_low"]) | int(values["balance_high"]) << 16,
        protection=int(values["protection"]),
        software_version=int(values["software_version"]),
        soc=values["soc"],
        charge_fet=bool(fet & 1),
        discharge_fet=bool(fet & 2),
        cell_count=int(values["cell_count"]),
        temperatures_c=temperatures,
        extra=raw[_BASIC_SIZE + 2 * ntc_count :],
    )


def encode_basic_info(info: BasicInfo) -> bytes:
    """The 0x03 payload for ``info`` (what an emulated board answers)."""
    if not 0 <= info.balance_mask < 1 << 32:
        raise FrameError(f"balance mask 0x{info.balance_mask:X} does not fit 32 cells")
    values = {
        "pack_v": info.pack_v,
        "current_a": info.current_a,
        "remaining_ah": info.remaining_ah,
        "nominal_ah": info.nominal_ah,
        "cycles": info.cycles,
        "date_raw": info.date_raw,
        "balance_low": info.balance_mask & 0xFFFF,
        "balance_high": info.balance_mask >> 16,
        "protection": info.protection,
        "software_version": info.software_version,
        "soc": info.soc,
        "fet": int(info.charge_fet) | int(info.discharge_fet) << 1,
        "cell_count": info.cell_count,
        "ntc_count": len(info.temperatures_c),
    }
    ntcs = [_ntc_field(k) for k in range(len(info.temperatures_c))]
    values.update({f.name: t for f, t in zip(ntcs, info.temperatures_c, strict=True)})
    size = _BASIC_SIZE + 2 * len(ntcs)
    return encode_fields((*_BASIC, *ntcs), values, size) + bytes(info.extra)


# --- register 0x04: cell voltages, 0x05: device name -------------------------------------------


def decode_cells(data: BytesLike) -> list[float]:
    """Cell voltages in V from u16 mV values, cell 1 first."""
    raw = bytes(data)
    if len(raw) % 2:
        raise FrameError(f"JBD cell block of {len(raw)} bytes is not whole u16 values")
    return [mv / 1000 for mv in struct.unpack(f">{len(raw) // 2}H", raw)]


def encode_cells(volts: list[float]) -> bytes:
    try:
        return struct.pack(f">{len(volts)}H", *(round(v * 1000) for v in volts))
    except (struct.error, ValueError, OverflowError):
        raise FrameError(f"cell voltages {volts!r} do not fit u16 mV") from None


def _printable(raw: bytes) -> bool:
    return all(0x20 <= b <= 0x7E for b in raw)


def decode_name(data: BytesLike) -> str:
    """Register 0x05: the device name, in either of the two forms seen for it.

    Real boards send the bare name: the frame's length byte already says how long it is. A published
    capture of a JBD-SP10S009 answers ``dd 05 00 19`` + the 25 bytes of "JBD-SP10S009-L8S-100A-B-K"
    (tests/devices/vectors/jbd.json), and the JBD protocol document's own example is
    ``DD 05 00 0A "0123456789"``. Some register maps (bms-tools) describe a length byte before the
    text; we used to insist on that and so failed every poll of a real board. We still accept it,
    but only where it cannot be a bare name: a bare name that is all printable ASCII wins, and the
    prefixed reading is taken only if the first byte is exactly the length of a printable rest.
    """
    raw = bytes(data)
    if _printable(raw):
        return raw.decode("ascii")
    if raw and raw[0] == len(raw) - 1 and _printable(raw[1:]):
        return raw[1:].decode("ascii")
    # Anything else is still a name (NUL padding, a vendor's own characters): the name is only a
    # label, so an odd one must never turn a healthy board's poll into a communication error.
    text = raw.rstrip(b"\x00 ").decode("ascii", errors="replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def encode_name(name: str) -> bytes:
    """The bare name, as real boards send it (see ``decode_name``)."""
    try:
        text = name.encode("ascii")
    except UnicodeEncodeError:
        raise FrameError(f"device name {name!r} is not ASCII") from None
    if not _printable(text):
        raise FrameError(f"device name {name!r} has non-printable characters")
    if len(text) > MAX_DATA:
        raise FrameError(f"device name of {len(text)} characters exceeds the {MAX_DATA}-byte frame cap")
    return text


# --- protection bits -> docs/behaviour.md §3 ----------------------------------------------------------------


# Protection status word of register 0x03 (bms-tools register map, offset 0x10). Pack and cell
# voltage limits follow the one pack-vs-cell policy (``model.voltage_alarm``).
PROTECTION_ALARMS: Final[tuple[AlarmBit, ...]] = (
    voltage_alarm(0, "cell over-voltage", "over", VoltageScope.CELL),
    voltage_alarm(1, "cell under-voltage", "under", VoltageScope.CELL),
    voltage_alarm(2, "pack over-voltage", "over", VoltageScope.PACK),
    voltage_alarm(3, "pack under-voltage", "under", VoltageScope.PACK),
    AlarmBit(4, "charge over-temperature", fault="charge_overtemperature"),
    AlarmBit(5, "charge under-temperature", fault="charge_undertemperature"),
    AlarmBit(6, "discharge over-temperature", fault="discharge_overtemperature"),
    AlarmBit(7, "discharge under-temperature", fault="discharge_undertemperature"),
    AlarmBit(8, "charge over-current", fault="charge_overcurrent"),
    AlarmBit(9, "discharge over-current", fault="discharge_overcurrent"),
    AlarmBit(10, "short circuit", fault="short_circuit"),
    AlarmBit(11, "front-end IC error", fault="afe_fault"),
    # FETs held off by a 0xE1 write: a command, not a fault.
    AlarmBit(12, "MOS software lock", unmapped="fet_software_lock"),
    AlarmBit(13, "undocumented", unmapped="protection_bit_13"),
    AlarmBit(14, "undocumented", unmapped="protection_bit_14"),
    AlarmBit(15, "undocumented", unmapped="protection_bit_15"),
)
PROTECTION_BITS: Final[dict[int, AlarmBit]] = {alarm.bit: alarm for alarm in PROTECTION_ALARMS}


def protection_names(protection: int) -> tuple[list[str], list[str]]:
    """(our fault names, unmapped alarms) for a protection word."""
    return alarm_names(PROTECTION_ALARMS, protection)


def software_version(raw: int) -> str:
    """The software version byte as the vendor app shows it: high nibble, dot, low (0x10 -> "1.0")."""
    return f"{raw >> 4}.{raw & 0x0F}"


def to_reading(info: BasicInfo, cells: list[float] | None, name: str | None = None) -> DeviceReading:
    faults, unmapped = protection_names(info.protection)
    return DeviceReading(
        protocol="jbd",
        cell_v=list(cells) if cells is not None else None,
        temperature_c=list(info.temperatures_c),
        current_a=info.current_a,
        pack_v=info.pack_v,
        soc=info.soc,
        charge_fet=info.charge_fet,
        discharge_fet=info.discharge_fet,
        faults=faults,
        unmapped_alarms=unmapped,
        balancing=[i + 1 for i in bits(info.balance_mask, 32)],
        cycles=info.cycles,
        remaining_ah=info.remaining_ah,
        nominal_ah=info.nominal_ah,
        name=name,
        firmware=software_version(info.software_version),
    )


# --- framing a byte stream ---------------------------------------------------------------------


def _candidate(buffer: bytes, at: int) -> int | None:
    """End of a valid frame starting at ``at``; INCOMPLETE if it may still arrive; None if garbage.

    A length above the cap, a wrong end byte or checksum makes that 0xDD garbage.
    """
    if len(buffer) - at < 4:
        return INCOMPLETE
    length = buffer[at + 3]
    if length > MAX_DATA:
        return None
    end = at + length + _OVERHEAD
    if end > len(buffer):
        return INCOMPLETE
    if buffer[end - 1] != END:
        return None
    if int.from_bytes(buffer[end - 3 : end - 1], "big") != checksum(buffer[at + 2 : end - 3]):
        return None
    return end


FRAMING: Final = Framing(bytes((START,)), _candidate)


def find_frame(buffer: BytesLike) -> tuple[bytes | None, int]:
    """The next complete frame in a byte stream and how many leading bytes the caller may drop
    (``Framing.find_frame``: resynchronises on 0xDD)."""
    return FRAMING.find_frame(buffer)
