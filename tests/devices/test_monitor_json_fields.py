"""`openbms monitor --json` carries everything the protocol's codec decodes, units in the key names.

The emulator and the monitor run as separate processes (as in test_cli_devices.py). The expected
values are the scenario's, checked by hand: a fresh 50 Ah pack has nominal 50 Ah and 0 cycles; the
twin's name is "openbms twin" (JK's device id holds 8 bytes: "openbms"); JBD's software version
byte 0x10 reads "1.0"; the JK firmware string is the recorded board's.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from openbms.devices import daly
from openbms.devices.protocols import DalyClient, DalyServer, LiveState
from openbms.devices.transport import SerialTransport, TransportError
from tests.devices.emulated import stop_process

OPENBMS = [sys.executable, "-m", "openbms.cli"]
SERIES = 4
CAPACITY_AH = 50
SOC = 0.7

SCENARIO = f"""\
name: monitor json fields
pack: {{chemistry: lfp, series: {SERIES}, capacity_ah: {CAPACITY_AH}, soc: {SOC}, temperature_c: 25}}
bms: {{profile: lfp}}
dt: 100ms
timeline:
  - run: 1s
"""

KEYS = (
    "remaining_ah",
    "nominal_ah",
    "cycles",
    "balancing_cells",
    "temperatures_c",
    "device_name",
    "firmware",
)


def monitor_once(tmp_path: Path, protocol: str) -> dict[str, Any]:
    path = tmp_path / "monitor.yaml"
    path.write_text(SCENARIO)
    proc = subprocess.Popen(
        [*OPENBMS, "emulate", "--protocol", protocol, str(path), "--linger", "20s", "--speed", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the emulator printed nothing"
        port = proc.stdout.readline().strip()
        monitor = subprocess.run(
            [*OPENBMS, "monitor", "--device", f"{protocol}:{port}", "--count", "1", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert monitor.returncode == 0, monitor.stderr
        lines = monitor.stdout.strip().splitlines()
        assert len(lines) == 1, monitor.stdout
        doc: dict[str, Any] = json.loads(lines[0])
        return doc
    finally:
        stop_process(proc)


@pytest.mark.parametrize("protocol", ["jbd", "daly", "jk"])
def test_monitor_json_carries_capacity_cycles_balancing_temperatures_name_firmware(
    tmp_path: Path, protocol: str
) -> None:
    doc = monitor_once(tmp_path, protocol)
    assert doc["ok"] is True and doc["protocol"] == protocol
    for key in KEYS:
        assert key in doc, key
    assert doc["nominal_ah"] == pytest.approx(CAPACITY_AH)
    assert doc["cycles"] == 0
    temps = doc["temperatures_c"]
    assert all(15 <= t <= 35 for t in temps.values()), temps  # a 25 °C pack at rest
    sensors = [k for k in temps if k.startswith("sensor_")]
    assert [temps[k] for k in sensors] == doc["temperature_c"]
    if protocol == "jk":
        assert doc["remaining_ah"] is None  # JK sends the SOC only
        assert doc["balancing_cells"] is None  # 0x8C says "balancer on", not which cells bleed
        assert sensors == ["sensor_1", "sensor_2"] and "fet" in temps
        assert temps["fet"] == doc["fet_temperature_c"]
        assert doc["device_name"] == "openbms"
        assert doc["firmware"] == "H6.X__S6.1.3S__"
    else:
        # SOC 0.7 after 1 s at rest: 35 Ah of 50 (JBD sends 10 mAh, Daly 0.1 % of SOC-scaled Ah).
        assert doc["remaining_ah"] == pytest.approx(SOC * CAPACITY_AH, abs=0.3)
        assert doc["remaining_ah"] == pytest.approx(doc["soc"] * CAPACITY_AH, abs=0.3)
        assert doc["balancing_cells"] == []  # equal cells at rest: nothing bleeds
        assert len(sensors) == len(doc["temperature_c"]) >= 1
        assert doc["device_name"] == "openbms twin"
        assert doc["firmware"] == ("1.0" if protocol == "jbd" else None)  # Daly: no version read


class _Board:
    """A transport to an emulated Daly board that stays silent on the commands in ``silent``."""

    def __init__(self, silent: set[int]) -> None:
        self.server = DalyServer()
        self.silent = silent
        self.asked: list[int] = []
        self.queue: list[bytes] = []
        self.state = LiveState(
            protocol="twin",
            cell_v=[3.3] * SERIES,
            temperature_c=[25.0],
            fet_temperature_c=25.0,
            current_a=0.0,
            pack_v=13.2,
            soc=SOC,
            charge_fet=True,
            discharge_fet=True,
            faults=[],
            warnings=[],
            balancing=[],
            cycles=3,
            remaining_ah=SOC * CAPACITY_AH,
            nominal_ah=CAPACITY_AH,
        )

    def request(self, frame: bytes, accept: Callable[[bytes], bool] | None = None) -> bytes:
        command = frame[2]
        self.asked.append(command)
        if command in self.silent:
            raise TransportError("no valid reply within 1 s after 3 attempts")
        self.queue = self.server.answer(frame, self.state, lambda what, fields: False)
        return self.read_frame(accept)

    def read_frame(self, accept: Callable[[bytes], bool] | None = None) -> bytes:
        return self.queue.pop(0)


@pytest.mark.parametrize("silent", [set(), {daly.CMD_RATED, daly.CMD_BATTERY_CODE}], ids=["answers", "silent"])
def test_daly_rated_and_code_are_asked_once_and_a_silent_board_is_still_read(silent: set[int]) -> None:
    board = _Board(silent)
    client = DalyClient()
    transport = cast(SerialTransport, board)
    first, second = client.read(transport), client.read(transport)
    assert board.asked.count(daly.CMD_RATED) == 1 and board.asked.count(daly.CMD_BATTERY_CODE) == 1
    for reading in (first, second):
        assert reading.cycles == 3 and reading.soc == SOC
        assert reading.nominal_ah == (None if silent else CAPACITY_AH)
        assert reading.name == (None if silent else "openbms twin")
