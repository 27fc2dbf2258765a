"""The twin as an inverter's battery on a CAN bus, end to end on python-can's virtual bus: the
emulator broadcasts, an independent decoding of the frames (the recorded layout, by hand) and our
reader both see the brain's own values and limits, a fault reaches its alarm bit and stops the
charge enable, and a lost inverter keep-alive is logged by the BMS.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

can = pytest.importorskip("can")

from typer.testing import CliRunner  # noqa: E402

from openbms.cli import app  # noqa: E402
from openbms.devices.canbus import CanBatteryPort, CanReader  # noqa: E402
from openbms.devices.emulator import Emulator, run_emulator  # noqa: E402
from openbms.devices.reader import DeviceReader  # noqa: E402
from openbms.scenario.runner import ScenarioRunner  # noqa: E402
from openbms.scenario.schema import load_scenario  # noqa: E402

CHANNELS = itertools.count()

CHARGING = """\
name: charging near full
pack: {series: 16, capacity_ah: 100, soc: 0.5}
timeline:
  - charger: {voltage_v: 56.0, current_a: 20}
  - run: 10h
"""


@pytest.fixture
def battery(tmp_path: Path) -> Iterator[Any]:
    started: list[tuple[threading.Event, threading.Thread, CanBatteryPort]] = []

    def start(text: str, speed: float = 5.0) -> tuple[str, Emulator]:
        path = tmp_path / f"s{len(started)}.yaml"
        path.write_text(text)
        scenario, steps = load_scenario(path)
        emulator = Emulator(ScenarioRunner(scenario, steps), "pylontech-can")
        channel = f"openbms-test-{next(CHANNELS)}"
        port = CanBatteryPort("virtual", channel, 16 * emulator.settings.cell_undervoltage_release_v)
        stop = threading.Event()
        thread = threading.Thread(
            target=run_emulator, args=(emulator, port), kwargs={"speed": speed, "stop": stop}, daemon=True
        )
        thread.start()
        started.append((stop, thread, port))
        return channel, emulator

    yield start
    for stop, thread, port in started:
        stop.set()
        thread.join(5)
        port.close()


def _round(bus: Any, timeout_s: float = 5.0) -> dict[int, bytes]:
    """One of each broadcast message, as bytes, read straight off the bus."""
    frames: dict[int, bytes] = {}
    end = time.monotonic() + timeout_s
    while len(frames) < 6 and time.monotonic() < end:
        message = bus.recv(timeout=0.5)
        if message is not None:
            frames[message.arbitration_id] = bytes(message.data)
    return frames


def test_the_battery_broadcasts_the_brain_s_values_on_the_bus(battery: Any) -> None:
    channel, emulator = battery(CHARGING)
    with can.Bus(interface="virtual", channel=channel) as bus:
        frames = _round(bus)
        assert set(frames) == {0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E}
        with emulator.lock:
            r = emulator.twin.reading(0)
    # Decoded by hand from the layout (little-endian, 0.1 V / 0.1 A / 1 % / 0.01 V / 0.1 °C).
    limits = frames[0x351]
    assert int.from_bytes(limits[0:2], "little") / 10 == pytest.approx(r.charge_voltage_limit_v, abs=0.1)
    assert int.from_bytes(limits[2:4], "little", signed=True) / 10 == pytest.approx(r.charge_current_limit_a, abs=0.6)
    assert int.from_bytes(limits[6:8], "little") / 10 == pytest.approx(16 * 2.90, abs=0.1)  # lfp release 2.90 V
    assert int.from_bytes(frames[0x355][0:2], "little") == pytest.approx(100 * r.soc, abs=1.5)
    assert int.from_bytes(frames[0x356][0:2], "little", signed=True) / 100 == pytest.approx(r.pack_v, abs=0.2)
    assert int.from_bytes(frames[0x356][2:4], "little", signed=True) / 10 == pytest.approx(20.0, abs=1.5)  # charging +
    assert frames[0x359][4:] == b"\x01PN"
    assert frames[0x35C][0] & 0xC0 == 0xC0  # charge and discharge enabled
    assert frames[0x35E] == b"OPENBMS "


def test_a_fault_sets_its_alarm_bit_and_stops_the_charge_enable(battery: Any) -> None:
    channel, emulator = battery("name: cold\npack: {series: 16, capacity_ah: 100, soc: 0.5, temperature_c: -10}\n"
                                "timeline:\n  - run: 1h\n")  # fmt: skip
    end = time.monotonic() + 10
    with can.Bus(interface="virtual", channel=channel) as bus:
        while time.monotonic() < end:
            frames = _round(bus)
            if frames.get(0x359, b"\0")[0] & 0x10:
                break
    assert frames[0x359][0] & 0x10, "charge under-temperature is the under-temperature protection bit"
    assert frames[0x35C][0] & 0x80 == 0, "no charge enable while charging is blocked"
    assert frames[0x35C][0] & 0x40, "discharge is still allowed"


def test_our_reader_and_monitor_read_the_broadcasts(battery: Any) -> None:
    channel, emulator = battery(CHARGING)
    reader = DeviceReader(f"pylontech-can:virtual:{channel}")
    try:
        poll = reader.poll()
    finally:
        reader.close()
    assert poll.ok and poll.reading is not None
    assert poll.reading.protocol == "pylontech-can" and poll.reading.name == "OPENBMS"
    assert poll.reading.current_a == pytest.approx(20.0, abs=1.5)
    assert poll.reading.charge_fet is True
    result = CliRunner().invoke(
        app, ["monitor", "--device", f"pylontech-can:virtual:{channel}", "--count", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"protocol": "pylontech-can"' in result.output


def test_a_lost_inverter_is_logged_by_the_bms(battery: Any) -> None:
    channel, emulator = battery(CHARGING, speed=1.0)
    reader = CanReader(f"virtual:{channel}", keepalive=True)
    try:
        reader.read()  # sends a keep-alive: the battery now knows an inverter
        time.sleep(0.5)
        assert not [e for e in emulator.twin.events if e.fields.get("warning") == "inverter_link_lost"]
        time.sleep(4.0)  # more than the 3 s the protocol allows without a keep-alive
    finally:
        reader.close()
    lost = [e for e in emulator.twin.events if e.fields.get("warning") == "inverter_link_lost"]
    assert len(lost) == 1 and lost[0].kind == "warning"


def test_bad_can_urls_are_one_sentence() -> None:
    runner = CliRunner()
    for url, says in [
        ("pylontech-can:can0", "is not a CAN port"),
        ("pylontech-can:nonsense:x", "is not a CAN port"),
        ("pylontech-can:socketcan:no-such-can-9", "cannot open CAN socketcan"),
    ]:
        result = runner.invoke(app, ["monitor", "--device", url, "--count", "1"])
        assert result.exit_code == 2 and says in result.output, (url, result.output)
    result = runner.invoke(app, ["emulate", "x.yaml", "--protocol", "pylontech-can"])
    assert result.exit_code == 2 and "--can-interface" in result.output


@pytest.mark.parametrize(
    ("temperature_c", "charge_a", "discharge_a", "tolerance_a"),
    [
        # bms/profiles/lfp.yaml `limits`, by hand: 0.5 C and 1.0 C of 100 Ah at 25 °C, cells on the
        # flat plateau (voltage factors 1.0); at -15 °C no charge (factor 0 below 0 °C) and a
        # discharge factor halfway between 0.0 at -20 °C and 0.3 at -10 °C: 0.15, 15 A
        # (0.1 °C of sensor resolution and noise: about ±1 A).
        (25.0, 50.0, 100.0, 0.11),
        (-15.0, 0.0, 15.0, 1.2),
    ],
)
def test_the_limits_on_the_bus_are_the_profile_s_derating(
    battery: Any, temperature_c: float, charge_a: float, discharge_a: float, tolerance_a: float
) -> None:
    text = f"name: rest\npack: {{series: 16, capacity_ah: 100, soc: 0.5, temperature_c: {temperature_c}}}\n"
    channel, _ = battery(text + "timeline:\n  - run: 1h\n")
    time.sleep(1.5)  # past the first cycles: the brain has judged the temperature
    with can.Bus(interface="virtual", channel=channel) as bus:
        limits = _round(bus)[0x351]
        flags = _round(bus)[0x35C][0]
    assert int.from_bytes(limits[2:4], "little", signed=True) / 10 == pytest.approx(charge_a, abs=tolerance_a)
    assert int.from_bytes(limits[4:6], "little", signed=True) / 10 == pytest.approx(discharge_a, abs=tolerance_a)
    assert bool(flags & 0x80) == (charge_a > 0), "charge is enabled exactly when its limit is above zero"


@pytest.mark.skipif(not Path("/sys/class/net/vcan0").exists(), reason="no vcan0 here (ip link add vcan0 type vcan)")
def test_the_battery_on_socketcan_vcan0(tmp_path: Path) -> None:
    """Where the machine has a socketcan bus, the same round trip through the kernel's CAN stack."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(CHARGING)
    sc, steps = load_scenario(scenario)
    emulator = Emulator(ScenarioRunner(sc, steps), "pylontech-can")
    port = CanBatteryPort("socketcan", "vcan0", 46.4)
    stop = threading.Event()
    thread = threading.Thread(target=run_emulator, args=(emulator, port), kwargs={"stop": stop}, daemon=True)
    thread.start()
    try:
        reader = DeviceReader("pylontech-can:socketcan:vcan0")
        try:
            poll = reader.poll()
        finally:
            reader.close()
        assert poll.ok and poll.reading is not None and poll.reading.name == "OPENBMS"
    finally:
        stop.set()
        thread.join(5)
        port.close()
