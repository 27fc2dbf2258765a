"""What any BMS reports, mapped onto our own vocabulary (docs/behaviour.md §3 fault names, SI units).

Every protocol decoder ends in a ``DeviceReading`` (a ``PackReading``); the monitor shows it and the diagnosis reads it.
Current is positive when charging; cells and sensors are numbered from 1 where a list is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal

from openbms.bms.reading import PackReading

# A device's reading is the same value the twin reports (``openbms.bms.reading``); its fields
# the protocol cannot carry stay None.
DeviceReading = PackReading


WARNING_PREFIX: Final = "warning:"
"""An unmapped name with this prefix is a device *warning* below a docs/behaviour.md §3 limit (Daly's level 1)."""


@dataclass(frozen=True)
class AlarmBit:
    """One device alarm bit: where it sits, the source's words and where it lands in our vocabulary.

    Exactly one of ``fault`` (a docs/behaviour.md §3 name) and ``unmapped`` (a descriptive name for
    ``DeviceReading.unmapped_alarms``) is set, so no bit is ever silently dropped. ``bit`` is the
    index in the protocol's alarm word (for a multi-byte bitfield, 8 x byte + bit).
    """

    bit: int
    text: str
    fault: str | None = None
    unmapped: str | None = None

    def __post_init__(self) -> None:
        if (self.fault is None) == (self.unmapped is None):
            raise ValueError(f"alarm bit {self.text!r} needs exactly one of fault / unmapped")

    @property
    def name(self) -> str:
        return self.fault if self.fault is not None else str(self.unmapped)

    @property
    def warning(self) -> str | None:
        """The docs/behaviour.md §3 name this bit warns of (``warning:<name>``), or None for any other bit."""
        if self.unmapped is not None and self.unmapped.startswith(WARNING_PREFIX):
            return self.unmapped.removeprefix(WARNING_PREFIX)
        return None


AlarmTable = Sequence[AlarmBit]


def alarm_names(table: AlarmTable, word: int) -> tuple[list[str], list[str]]:
    """(our fault names, unmapped alarms) for the set bits of ``word``, each name once, in bit order.

    One function for every protocol, so a bit is reported the same way whichever board sent it;
    names repeat across bits (JK's pack and cell over-voltage bits, Daly's two FET over-temperatures)
    and a repeat would read as two faults.
    """
    faults: list[str] = []
    unmapped: list[str] = []
    for alarm in sorted(table, key=lambda a: a.bit):
        if not word >> alarm.bit & 1:
            continue
        target = faults if alarm.fault is not None else unmapped
        if alarm.name not in target:
            target.append(alarm.name)
    return faults, unmapped


def alarm_word(table: AlarmTable, faults: Iterable[str], warnings: Iterable[str] = ()) -> int:
    """The alarm word a board sends for our ``faults`` and ``warnings`` (the emulator's direction).

    A fault sets every bit that maps to it; a warning sets the bits that warn of it. Unmapped bits
    other than warnings stay clear: the twin has no state they could describe.
    """
    fault_set, warning_set = set(faults), set(warnings)
    word = 0
    for alarm in table:
        if alarm.fault in fault_set or alarm.warning in warning_set:
            word |= 1 << alarm.bit
    return word


# --- pack-level vs cell-level voltage alarms: the one policy ------------------------------------

VoltageSide = Literal["over", "under"]


class VoltageScope(Enum):
    """What a device's voltage alarm bit watches, in its source's words."""

    CELL = "cell"  # one cell past its limit ("cell over-voltage", "monomer over-voltage")
    PACK = "pack"  # the total voltage past a pack limit of its own ("pack over-voltage")
    DIRECTION = "direction"  # the protection that stops charging / discharging ("charging over-voltage")


def voltage_alarm(bit: int, text: str, side: VoltageSide, scope: VoltageScope) -> AlarmBit:
    """A voltage alarm bit mapped by the one pack-vs-cell policy.

    We protect on cells only (docs/behaviour.md §3 has ``cell_overvoltage`` / ``cell_undervoltage`` and no pack
    voltage fault), so:

    * a cell-level bit is the cell fault;
    * a pack-level limit of its own (JBD protection bits 2-3, Daly 0x98 byte 0 bits 4-7) has no fault of ours
      equivalent: it is shown as ``pack_<side>voltage``, never claimed as a cell fault;
    * a bit that names the direction it blocks (JK 0x8B bits 2-3, "charging over-voltage" /
      "discharge under-voltage") does what our cell protection does — stops that direction — so it
      is the cell fault, even where the board computes it from the total voltage.
    """
    if scope is VoltageScope.PACK:
        return AlarmBit(bit, text, unmapped=f"pack_{side}voltage")
    return AlarmBit(bit, text, fault=f"cell_{side}voltage")
