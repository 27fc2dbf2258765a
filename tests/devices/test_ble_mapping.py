"""BLE boards through aiobmsble: its ``BMSSample`` mapped onto our ``DeviceReading``, the monitor's
BLE path with the transport faked, and the one-sentence refusal where aiobmsble cannot run.

aiobmsble needs Python 3.12+, so nothing here imports it: the samples are dicts shaped like its
``BMSSample`` TypedDict (aiobmsble/__init__.py: battery_level in %, current positive when charging,
voltage V, temperature °C, temp_values, cell_voltages V, cycles, problem, problem_code,
balancer bool | int, chrg_mosfet, dischrg_mosfet, cycle_charge Ah, design_capacity Ah).
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from fnmatch import fnmatch
from typing import Any

import pytest
from typer.testing import CliRunner

import openbms.devices.ble as ble
from openbms.cli import app
from openbms.devices.ble import BleUnavailable, read_ble, sample_to_reading
from openbms.devices.model import DeviceReading

ADDRESS = "AA:BB:CC:DD:EE:FF"

# A JBD board over BLE, discharging at 12.3 A (what aiobmsble's jbd_bms plugin returns).
JBD_SAMPLE: dict[str, Any] = {
    "voltage": 53.12,
    "current": -12.3,
    "battery_level": 76,
    "cycle_charge": 76.04,
    "design_capacity": 100,
    "cycles": 41,
    "balancer": 0b0000_0000_0000_0101,  # bit mask: cells 1 and 3 bleeding
    "chrg_mosfet": True,
    "dischrg_mosfet": True,
    "temp_values": [23.4, 24.1, 22.9],
    "temperature": 23.467,
    "cell_voltages": [3.321, 3.318, 3.325, 3.319] * 4,
    "delta_voltage": 0.007,
    "power": -653.376,
    "battery_charging": False,
    "runtime": 22257,
    "problem_code": 0,
    "problem": False,
}

# A JK board charging at 20.5 A with a problem flagged (code 0x0400), discharge switch off.
JK_SAMPLE: dict[str, Any] = {
    "voltage": 27.04,
    "current": 20.5,
    "battery_level": 54.5,
    "cycle_charge": 152.6,
    "design_capacity": 280,
    "cycles": 3,
    "balancer": False,
    "chrg_mosfet": True,
    "dischrg_mosfet": False,
    "temp_values": [31.2, 29.8, None],
    "cell_voltages": [3.38, 3.379, 3.381, 3.38, 3.379, 3.38, 3.382, 3.381],
    "problem": True,
    "problem_code": 0x0400,
    "heater": False,
    "cell_count": 8,
    "pack_count": 1,
}


def test_a_jbd_sample_maps_every_value_in_our_units() -> None:
    r = sample_to_reading(JBD_SAMPLE, name="xiaoxiang BMS")
    assert r.protocol == "ble"
    assert r.name == "xiaoxiang BMS"
    assert r.pack_v == pytest.approx(53.12)
    assert r.current_a == pytest.approx(-12.3)  # discharging: negative, as everywhere in openbms
    assert r.soc == pytest.approx(0.76)  # % -> fraction
    assert r.cell_v == pytest.approx(JBD_SAMPLE["cell_voltages"])
    assert len(r.cell_v or []) == 16
    assert r.temperature_c == pytest.approx([23.4, 24.1, 22.9])  # the sensors, not the mean
    assert r.charge_fet is True and r.discharge_fet is True
    assert r.cycles == 41 and isinstance(r.cycles, int)
    assert r.remaining_ah == pytest.approx(76.04)
    assert r.nominal_ah == pytest.approx(100)
    assert r.balancing == [1, 3]
    assert r.faults == []
    assert r.unmapped_alarms == []


def test_a_jk_sample_with_a_problem_charging_and_a_missing_sensor() -> None:
    r = sample_to_reading(JK_SAMPLE)
    assert r.current_a == pytest.approx(20.5)  # charging stays positive
    assert r.soc == pytest.approx(0.545)
    assert r.temperature_c == pytest.approx([31.2, 29.8])  # a sensor without a value is left out
    assert r.charge_fet is True and r.discharge_fet is False
    assert r.balancing is None  # a bool says nothing about which cells
    # aiobmsble's problem codes mean different things per board: one unmapped alarm, never a
    # guessed fault of ours.
    assert r.faults == []
    assert r.unmapped_alarms == ["ble_problem_code_0x400"]
    assert r.name is None


def test_only_the_mean_temperature_becomes_a_one_sensor_list() -> None:
    r = sample_to_reading({"voltage": 13.3, "temperature": 18.5})
    assert r.temperature_c == [18.5]


def test_a_problem_without_a_code() -> None:
    assert sample_to_reading({"problem": True}).unmapped_alarms == ["ble_problem"]
    assert sample_to_reading({"problem": False, "problem_code": 7}).unmapped_alarms == []


@pytest.mark.parametrize(
    "key, field",
    [
        ("voltage", "pack_v"),
        ("current", "current_a"),
        ("battery_level", "soc"),
        ("cell_voltages", "cell_v"),
        ("cycles", "cycles"),
        ("chrg_mosfet", "charge_fet"),
        ("dischrg_mosfet", "discharge_fet"),
        ("balancer", "balancing"),
        ("cycle_charge", "remaining_ah"),
        ("design_capacity", "nominal_ah"),
    ],
)
def test_a_missing_key_is_none_and_leaves_the_rest(key: str, field: str) -> None:
    sample = {k: v for k, v in JBD_SAMPLE.items() if k != key}
    r = sample_to_reading(sample)
    assert getattr(r, field) is None
    full = sample_to_reading(JBD_SAMPLE)
    for other in ("pack_v", "current_a", "soc", "cell_v", "cycles", "charge_fet", "remaining_ah"):
        if other != field:
            assert getattr(r, other) == getattr(full, other)


def test_temperatures_missing_altogether_are_none() -> None:
    sample = {k: v for k, v in JBD_SAMPLE.items() if k not in ("temp_values", "temperature")}
    assert sample_to_reading(sample).temperature_c is None


def test_an_empty_sample_is_all_none() -> None:
    r = sample_to_reading({})
    assert r == DeviceReading(protocol="ble")


@pytest.mark.parametrize(
    "sample",
    [
        {"voltage": "53.1", "current": None, "battery_level": True, "cycles": "many"},
        {"voltage": [53.1], "chrg_mosfet": "yes", "dischrg_mosfet": None, "balancer": True},
    ],
)
def test_values_of_the_wrong_type_are_none_not_guesses(sample: dict[str, Any]) -> None:
    r = sample_to_reading(sample)
    assert r.pack_v is None and r.current_a is None and r.soc is None and r.cycles is None
    assert r.charge_fet is None and r.discharge_fet is None and r.balancing is None


# ----------------------------------------------------------------------------- the monitor's path

cli = CliRunner()


def test_monitor_json_shows_a_ble_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def fake_read_ble(address: str, timeout_s: float = 10.0) -> DeviceReading:
        asked.append(address)
        return sample_to_reading(JBD_SAMPLE, name="xiaoxiang BMS")

    monkeypatch.setattr(ble, "read_ble", fake_read_ble)
    result = cli.invoke(app, ["monitor", "--device", f"ble:{ADDRESS}", "--json"])
    assert result.exit_code == 0, result.output
    assert asked == [ADDRESS]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["ok"] is True
    assert doc["protocol"] == "ble"
    assert doc["pack_v"] == pytest.approx(53.12)
    assert doc["current_a"] == pytest.approx(-12.3)
    assert doc["soc"] == pytest.approx(0.76)
    assert doc["cell_v"] == pytest.approx(JBD_SAMPLE["cell_voltages"])
    assert doc["temperature_c"] == pytest.approx([23.4, 24.1, 22.9])
    assert doc["charge_fet"] is True and doc["discharge_fet"] is True
    assert doc["faults"] == []
    assert doc["balancing"] == [1, 3]
    assert doc["cycles"] == 41


def test_monitor_table_shows_a_ble_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ble, "read_ble", lambda address, timeout_s=10.0: sample_to_reading(JK_SAMPLE))
    result = cli.invoke(app, ["monitor", "--device", f"ble:{ADDRESS}"])
    assert result.exit_code == 0, result.output
    assert "27.04 V" in result.output
    assert "+20.50 A" in result.output
    assert "ble_problem_code_0x400" in result.output


# A stand-in for aiobmsble and bleak with the same call shapes, so ``read_ble`` runs its real code.
class FakeBleDevice:
    def __init__(self, address: str, name: str) -> None:
        self.address = address
        self.name = name
        self.details = {"path": "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF", "props": {}}  # backend-specific


class FakeAdvertisement:
    def __init__(self, local_name: str) -> None:
        self.local_name = local_name
        self.service_uuids = ["0000ff00-0000-1000-8000-00805f9b34fb"]
        self.manufacturer_data: dict[int, bytes] = {}
        self.service_data: dict[str, bytes] = {}
        self.rssi = -60


class FakeBms:
    def __init__(self, ble_device: FakeBleDevice, **_: Any) -> None:
        self.device = ble_device

    async def __aenter__(self) -> FakeBms:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def async_update(self) -> dict[str, Any]:
        return dict(JBD_SAMPLE)


def install_fakes(monkeypatch: pytest.MonkeyPatch, identify: Any) -> None:
    device = FakeBleDevice(ADDRESS, "xiaoxiang BMS")
    advertisement = FakeAdvertisement("xiaoxiang BMS")

    class BleakScanner:
        @staticmethod
        async def find_device_by_address(address: str, timeout: float = 10.0, **_: Any) -> FakeBleDevice | None:
            return device if address.upper() == ADDRESS else None

        @staticmethod
        async def find_device_by_filter(filterfunc: Any, timeout: float = 10.0, **_: Any) -> FakeBleDevice | None:
            return device if filterfunc(device, advertisement) else None

        @staticmethod
        async def discover(timeout: float = 5.0, return_adv: bool = False, **_: Any) -> Any:
            return {ADDRESS: (device, advertisement)} if return_adv else [device]

    bleak = types.ModuleType("bleak")
    bleak.BleakScanner = BleakScanner  # type: ignore[attr-defined]
    aiobmsble = types.ModuleType("aiobmsble")
    utils = types.ModuleType("aiobmsble.utils")
    utils.bms_identify = identify  # type: ignore[attr-defined]
    aiobmsble.utils = utils  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiobmsble", aiobmsble)
    monkeypatch.setitem(sys.modules, "aiobmsble.utils", utils)
    monkeypatch.setitem(sys.modules, "bleak", bleak)
    monkeypatch.setattr(ble, "_import_aiobmsble", lambda: (aiobmsble, bleak))


def test_read_ble_maps_what_the_bms_object_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    async def any_board(adv_data: Any, key: str) -> type[FakeBms]:
        return FakeBms

    install_fakes(monkeypatch, any_board)
    reading = read_ble(ADDRESS, timeout_s=1.0)
    assert reading == sample_to_reading(JBD_SAMPLE, name="xiaoxiang BMS")
    result = cli.invoke(app, ["monitor", "--device", f"ble:{ADDRESS}", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["ok"] is True and doc["cell_v"] == pytest.approx(JBD_SAMPLE["cell_voltages"])


def test_read_ble_identifies_the_board_from_its_advertisement_and_address(monkeypatch: pytest.MonkeyPatch) -> None:
    async def faithful_identify(adv_data: Any, mac_addr: str) -> type[FakeBms] | None:
        # As aiobmsble's matchers do: local name / service UUIDs of the advertisement, OUI of the MAC.
        matches = fnmatch(adv_data.local_name or "", "xiaoxiang*") and mac_addr.upper() == ADDRESS
        return FakeBms if matches else None

    install_fakes(monkeypatch, faithful_identify)
    assert read_ble(ADDRESS, timeout_s=1.0) == sample_to_reading(JBD_SAMPLE, name="xiaoxiang BMS")


# ----------------------------------------------------------------------------- without aiobmsble


def _aiobmsble_installed() -> bool:
    try:
        import aiobmsble  # noqa: F401
    except ImportError:
        return False
    return True


needs_no_ble = pytest.mark.skipif(
    sys.version_info >= (3, 12) and _aiobmsble_installed(), reason="aiobmsble is installed here"
)


@needs_no_ble
def test_read_ble_without_aiobmsble_says_what_to_do() -> None:
    with pytest.raises(BleUnavailable) as caught:
        read_ble(ADDRESS, timeout_s=0.1)
    message = str(caught.value)
    assert "openbms[ble]" in message
    if sys.version_info < (3, 12):
        assert "Python 3.12" in message
        assert f"{sys.version_info.major}.{sys.version_info.minor}" in message


def _one_sentence(stderr: str) -> str:
    return " ".join(stderr.split())


@needs_no_ble
def test_monitor_ble_without_aiobmsble_exits_2_with_one_sentence() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "openbms.cli", "monitor", "--device", f"ble:{ADDRESS}", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    text = _one_sentence(proc.stderr)
    assert text.startswith("error: BLE devices need")
    assert text.count("error:") == 1
    if sys.version_info < (3, 12):
        assert "Python 3.12" in text


@needs_no_ble
def test_monitor_ble_without_aiobmsble_names_the_extra_to_install() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "openbms.cli", "monitor", "--device", f"ble:{ADDRESS}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "pip install 'openbms[ble]'" in _one_sentence(proc.stderr)


@needs_no_ble
def test_diagnose_ble_without_aiobmsble_exits_2_with_one_sentence() -> None:
    result = CliRunner().invoke(app, ["diagnose", "--device", f"ble:{ADDRESS}", "--json"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    text = _one_sentence(result.stderr)
    assert text.startswith("error: BLE devices need")
    assert text.count("error:") == 1
    assert "pip install 'openbms[ble]'" in text
