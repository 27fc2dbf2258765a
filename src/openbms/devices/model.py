"""What any BMS reports, mapped onto our own vocabulary (SPEC §3 fault names, SI units).

Every protocol decoder ends in a ``DeviceReading`` (a ``PackReading``); the monitor shows it and the diagnosis reads it.
Current is positive when charging; cells and sensors are numbered from 1 where a list is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from openbms.bms.reading import PackReading

# A device's reading is the same value the twin reports (``openbms.bms.reading``); its fields
# the protocol cannot carry stay None.
DeviceReading = PackReading


@dataclass(frozen=True)
class AlarmBit:
    """One device alarm bit: the source's words and where it lands in our vocabulary.

    Exactly one of ``fault`` (a SPEC §3 name) and ``unmapped`` (a descriptive name for
    ``DeviceReading.unmapped_alarms``) is set, so no bit is ever silently dropped.
    """

    text: str
    fault: str | None = None
    unmapped: str | None = None

    def __post_init__(self) -> None:
        if (self.fault is None) == (self.unmapped is None):
            raise ValueError(f"alarm bit {self.text!r} needs exactly one of fault / unmapped")

    @property
    def name(self) -> str:
        return self.fault if self.fault is not None else str(self.unmapped)
