"""BLE devices through the well-kept aiobmsble library (optional: ``pip install 'openbms[ble]'``).

aiobmsble needs Python 3.12 or newer; openbms itself runs on 3.11, so the extra stays optional and
says so when it cannot be used. Its samples are mapped onto the same ``DeviceReading`` as the
serial protocols, and that mapping is tested without the library.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from typing import Any

from openbms.devices.model import DeviceReading

# aiobmsble's problem_code bits have no common meaning across its BMS types; only the flag is
# reliable, so a problem becomes one unmapped alarm carrying the code.
BLE_PROTOCOL = "ble"


class BleUnavailable(RuntimeError):
    """aiobmsble (or bleak) is not installed or cannot run here; the message says what to do."""


def sample_to_reading(sample: Mapping[str, Any], name: str | None = None) -> DeviceReading:
    """An aiobmsble ``BMSSample`` (current positive charging, SOC in %) as our reading."""

    def number(key: str) -> float | None:
        value = sample.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def flag(key: str) -> bool | None:
        value = sample.get(key)
        return bool(value) if isinstance(value, bool | int) else None

    level = number("battery_level")
    cells = sample.get("cell_voltages")
    temps = sample.get("temp_values")
    if temps is None and number("temperature") is not None:
        temps = [number("temperature")]
    unmapped: list[str] = []
    if sample.get("problem"):
        code = sample.get("problem_code")
        unmapped.append(f"ble_problem_code_{int(code):#x}" if isinstance(code, int) and code else "ble_problem")
    balancer = sample.get("balancer")
    balancing = (
        [i + 1 for i in range(64) if balancer >> i & 1]
        if isinstance(balancer, int) and not isinstance(balancer, bool)
        else None
    )
    cycles = number("cycles")
    return DeviceReading(
        protocol=BLE_PROTOCOL,
        cell_v=[float(v) for v in cells] if isinstance(cells, list) else None,
        temperature_c=[float(t) for t in temps if t is not None] if isinstance(temps, list) else None,
        current_a=number("current"),
        pack_v=number("voltage"),
        soc=None if level is None else level / 100.0,
        charge_fet=flag("chrg_mosfet"),
        discharge_fet=flag("dischrg_mosfet"),
        faults=[],
        unmapped_alarms=unmapped,
        balancing=balancing,
        cycles=None if cycles is None else int(cycles),
        remaining_ah=number("cycle_charge"),
        nominal_ah=number("design_capacity"),
        name=name,
    )


def _import_aiobmsble() -> Any:
    if sys.version_info < (3, 12):
        raise BleUnavailable(
            "BLE devices need aiobmsble, which needs Python 3.12 or newer (this is "
            f"{sys.version_info.major}.{sys.version_info.minor}); use a serial adapter, or Python 3.12+ "
            "with `pip install 'openbms[ble]'`"
        )
    try:
        import aiobmsble
        import bleak
    except ImportError:
        raise BleUnavailable("BLE devices need the optional extra: pip install 'openbms[ble]'") from None
    return aiobmsble, bleak


async def _read_ble(address: str, timeout_s: float) -> DeviceReading:
    _aiobmsble, bleak = _import_aiobmsble()
    from aiobmsble.utils import bms_identify

    found = await bleak.BleakScanner.discover(timeout=timeout_s, return_adv=True)
    match = next(((d, adv) for key, (d, adv) in found.items() if str(key).lower() == address.lower()), None)
    if match is None:
        raise BleUnavailable(f"no BLE device {address} found within {timeout_s:g} s")
    device, advertisement = match
    # aiobmsble identifies a board from its advertisement data and its address.
    bms_class = await bms_identify(advertisement, device.address)
    if bms_class is None:
        raise BleUnavailable(f"{address} is not a BMS that aiobmsble supports")
    async with bms_class(ble_device=device) as bms:
        sample = await bms.async_update()
    return sample_to_reading(sample, device.name)


def read_ble(address: str, timeout_s: float = 10.0) -> DeviceReading:
    """One reading over BLE; every failure is a BleUnavailable sentence."""
    _import_aiobmsble()  # says what to install before anything is tried
    try:
        return asyncio.run(_read_ble(address, timeout_s))
    except BleUnavailable:
        raise
    except Exception as err:  # noqa: BLE001 - bleak and D-Bus raise many types for "no adapter"
        raise BleUnavailable(f"cannot read the BLE device {address} ({type(err).__name__}: {err})") from None
