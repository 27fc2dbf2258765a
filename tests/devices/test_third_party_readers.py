"""Conformance: independent, unchanged third-party readers read the emulated BMS over a real pty.

Our own reader and our own emulator share one author's reading of each protocol; these tests let
code written by others decode the emulator's bytes. Each reader is used exactly as its users use
it (it opens the pty path through pyserial, sends its own requests and parses the replies with its
own code) and what it decodes must be the twin's values within the protocol's resolution:

* ``bmstools`` 1.2.0 (Eric Poulsen, JBD): ``JBD(serial.Serial(path))``, ``readBasicInfo`` (0x03),
  ``readCellInfo`` (0x04), ``readDeviceInfo`` (0x05).
* ``dalybms`` 0.5.0 (dreadnought/python-daly-bms): ``DalyBMS(address=4).connect(path)``, then
  0x90..0x96 and 0x98.
* ``pydalybms`` 0.1.0: ``DalyBMS(path)``: 0x90, 0x91, 0x92, 0x94, 0x95, 0x98.

Install them with ``pip install -e '.[readers]'`` (also part of ``.[test]``); without them each
test is skipped (``pytest.importorskip``).

The twin is *paused* while a reader reads it: the scenario is run to its end, then the port is
served with exactly what ``run_emulator`` serves it with (``PtyPort.serve`` → ``Emulator.handle_bytes``)
but without stepping the twin, so the truth (``Emulator.live_state``) cannot move between a
reader's requests and the comparison can be as tight as the protocol's resolution. A last test
per reader runs the real command, ``openbms emulate --protocol jbd|daly SCENARIO``, in a subprocess
and reads the pty path it prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from openbms.devices.emulator import Emulator, PtyPort
from openbms.devices.model import DeviceReading
from openbms.devices.protocols import LiveState
from openbms.devices.reader import DeviceReader
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

SERIES = 8
EPS = 1e-6

# A 10 A load on an LFP pack with spread cells (distinct voltages), a noise-free AFE.
SCENARIO = f"""\
name: third-party-readers
pack: {{chemistry: lfp, series: {SERIES}, capacity_ah: 50, soc: 0.6, temperature_c: 31.6,
       spread: {{soc: 0.03, capacity: 0.01, resistance: 0.05, seed: 5}}}}
bms: {{profile: lfp}}
board:
  set:
    afe.cell_v_noise_v: 0
    afe.current_noise_a: 0
    afe.temperature_noise_c: 0
dt: 100ms
timeline:
  - load: {{current_a: 10}}
  - run: 2s
"""

# (charge FET, discharge FET) the operator commands before the readers look; None: as the BMS left them.
FET_CASES = [None, (False, True), (True, False)]
FET_IDS = ["fets-as-run", "charge-off", "discharge-off"]


@pytest.fixture
def scenario_path(tmp_path: Path) -> Path:
    path = tmp_path / "readers.yaml"
    path.write_text(SCENARIO)
    return path


@contextmanager
def paused_emulator(protocol: str, scenario: Path, fets: tuple[bool, bool] | None) -> Iterator[tuple[Emulator, str]]:
    """Run the scenario, optionally command the FETs, then serve a pty with the twin paused."""
    model, steps = load_scenario(scenario)
    runner = ScenarioRunner(model, steps)
    emulator = Emulator(runner, protocol)
    runner.run()
    if fets is not None:
        emulator.twin.control_write(0, protocol, "fet", True, charge_on=fets[0], discharge_on=fets[1])
        for _ in range(3):
            emulator.step()
    port = PtyPort()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            port.serve(emulator, 0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield emulator, port.path
    finally:
        stop.set()
        thread.join(5)
        port.close()
        assert not thread.is_alive(), "the serving thread did not stop"


def truth(emulator: Emulator) -> LiveState:
    with emulator.lock:
        return emulator.live_state()


def close(got: float, want: float, resolution: float, what: str) -> None:
    assert abs(got - want) <= resolution + EPS, f"{what}: the reader decoded {got}, the twin shows {want}"


def check_fets(state: LiveState, fets: tuple[bool, bool] | None) -> None:
    if fets is not None:  # the command took effect on the twin (no protection in the way)
        assert (state.charge_fet, state.discharge_fet) == fets


def check_load_current(state: LiveState) -> None:
    """The 10 A load draws through an open discharge FET (so the current's sign is really checked),
    and nothing flows with the discharge FET off."""
    if state.discharge_fet:
        assert state.current_a < -9
    else:
        assert state.current_a == 0


# ----------------------------------------------------------------------------- JBD: bmstools


@pytest.mark.parametrize("fets", FET_CASES, ids=FET_IDS)
def test_bmstools_reads_the_jbd_emulator(scenario_path: Path, fets: tuple[bool, bool] | None) -> None:
    jbd_module = pytest.importorskip("bmstools.jbd", reason="bmstools not installed (pip install -e '.[readers]')")
    serial = pytest.importorskip("serial")
    with paused_emulator("jbd", scenario_path, fets) as (emulator, path):
        bms = jbd_module.JBD(serial.Serial(path), timeout=1)
        basic = bms.readBasicInfo()
        cells = bms.readCellInfo()
        device = bms.readDeviceInfo()
        state = truth(emulator)
    check_fets(state, fets)
    # 0x03 basic info: 10 mV, 10 mA (positive charging, as ours), RSOC in whole %, 0.1 K NTCs.
    close(basic["pack_mv"] / 1000, state.pack_v, 0.01, "pack voltage")
    close(basic["pack_ma"] / 1000, state.current_a, 0.01, "current")
    check_load_current(state)
    close(basic["cap_pct"] / 100, state.soc, 0.01, "SOC")
    close(basic["cur_cap"] / 1000, state.remaining_ah, 0.01, "remaining capacity")
    close(basic["full_cap"] / 1000, state.nominal_ah, 0.01, "nominal capacity")
    assert basic["cycle_cnt"] == state.cycles
    assert basic["cell_cnt"] == SERIES
    assert basic["ntc_cnt"] == len(state.temperature_c)
    for k, want in enumerate(state.temperature_c):
        close(basic[f"ntc{k}"], want, 0.1, f"NTC {k + 1}")
    assert basic["chg_fet_en"] is state.charge_fet
    assert basic["dsg_fet_en"] is state.discharge_fet
    assert basic["fault_raw"] == 0 and not state.faults
    assert basic["bal_raw"] == state.balancing_mask
    # 0x04 cell info: mV per cell.
    got_cells = [cells[f"cell{k}_mv"] / 1000 for k in range(len(cells))]
    assert len(got_cells) == len(state.cell_v) == SERIES
    for k, (got, want) in enumerate(zip(got_cells, state.cell_v, strict=True), start=1):
        close(got, want, 0.001, f"cell {k}")
    # 0x05 device info: the name, as text.
    assert device["device_name"] == state.name


# ----------------------------------------------------------------------------- Daly: dalybms

# Both Daly readers compute current = (raw - 30000) / 10 and dalybms documents it as
# "negative=charging, positive=discharging": the opposite sign of our positive-charging
# convention, which is what our emulator encodes too (raw above 30000 = discharge, as the vendor
# document's example; see src/openbms/devices/daly.py, 0x90). So these readers show -current.


def check_daly_extremes(state: LiveState, max_v: float, max_cell: int, min_v: float, min_cell: int) -> None:
    close(max_v, max(state.cell_v), 0.001, "highest cell")
    close(min_v, min(state.cell_v), 0.001, "lowest cell")
    close(state.cell_v[max_cell - 1], max(state.cell_v), 0.001, f"cell {max_cell} as the highest")
    close(state.cell_v[min_cell - 1], min(state.cell_v), 0.001, f"cell {min_cell} as the lowest")


def check_daly_temperature_extremes(state: LiveState, hi: float, hi_n: int, lo: float, lo_n: int) -> None:
    close(hi, max(state.temperature_c), 1.0, "highest temperature")
    close(lo, min(state.temperature_c), 1.0, "lowest temperature")
    close(state.temperature_c[hi_n - 1], max(state.temperature_c), 1.0, f"sensor {hi_n} as the warmest")
    close(state.temperature_c[lo_n - 1], min(state.temperature_c), 1.0, f"sensor {lo_n} as the coolest")


@pytest.mark.parametrize("fets", FET_CASES, ids=FET_IDS)
def test_dalybms_reads_the_daly_emulator(scenario_path: Path, fets: tuple[bool, bool] | None) -> None:
    dalybms = pytest.importorskip("dalybms", reason="dalybms not installed (pip install -e '.[readers]')")
    with paused_emulator("daly", scenario_path, fets) as (emulator, path):
        bms = dalybms.DalyBMS(request_retries=1, address=4)  # 4: the UART / RS485 host address 0x40
        bms.connect(path)  # reads 0x94 (counts) itself
        try:
            status: dict[str, Any] = bms.status
            soc = bms.get_soc()
            cell_range = bms.get_cell_voltage_range()
            temperature_range = bms.get_temperature_range()
            mosfets = bms.get_mosfet_status()
            cell_v = bms.get_cell_voltages()
            temperatures = bms.get_temperatures()
            errors = bms.get_errors()
        finally:
            bms.disconnect()
        state = truth(emulator)
    check_fets(state, fets)
    assert status["cells"] == SERIES
    assert status["temperature_sensors"] == len(state.temperature_c)
    assert status["cycles"] == state.cycles
    assert status["charger_running"] is state.charger_present
    assert status["load_running"] is state.load_present
    close(soc["total_voltage"], state.pack_v, 0.1, "pack voltage")
    close(-soc["current"], state.current_a, 0.1, "current (dalybms: positive discharging)")
    check_load_current(state)
    close(soc["soc_percent"] / 100, state.soc, 0.001, "SOC")
    check_daly_extremes(
        state,
        cell_range["highest_voltage"],
        cell_range["highest_cell"],
        cell_range["lowest_voltage"],
        cell_range["lowest_cell"],
    )
    check_daly_temperature_extremes(
        state,
        temperature_range["highest_temperature"],
        temperature_range["highest_sensor"],
        temperature_range["lowest_temperature"],
        temperature_range["lowest_sensor"],
    )
    assert mosfets["mode"] == ("discharging" if state.current_a < -0.5 else "stationary")
    assert mosfets["charging_mosfet"] is state.charge_fet
    assert mosfets["discharging_mosfet"] is state.discharge_fet
    close(mosfets["capacity_ah"], state.remaining_ah, 0.001, "remaining capacity")
    assert list(cell_v) == list(range(1, SERIES + 1))
    for k, want in enumerate(state.cell_v, start=1):
        close(cell_v[k], want, 0.001, f"cell {k}")
    assert list(temperatures) == list(range(1, len(state.temperature_c) + 1))
    for k, want in enumerate(state.temperature_c, start=1):
        close(temperatures[k], want, 1.0, f"temperature {k}")
    assert errors == [] and not state.faults


# ----------------------------------------------------------------------------- Daly: pydalybms


@pytest.mark.parametrize("fets", FET_CASES, ids=FET_IDS)
def test_pydalybms_reads_the_daly_emulator(scenario_path: Path, fets: tuple[bool, bool] | None) -> None:
    pydalybms = pytest.importorskip("pydalybms", reason="pydalybms not installed (pip install -e '.[readers]')")
    with paused_emulator("daly", scenario_path, fets) as (emulator, path):
        bms = pydalybms.DalyBMS(path, timeout=0.5)  # host address 0x40 (PC) by default
        soc = bms.get_soc()
        cell_range = bms.get_voltage_min_max_cell()
        temperature_range = bms.get_temperature_min_max_cell()
        status = bms.get_status_information()
        failures = bms.get_battery_failure_status()
        cells = bms.get_cell_voltages(cell_count=status.cells)
        state = truth(emulator)
    check_fets(state, fets)  # pydalybms 0.1.0 has no 0x93 (FET) call: the FETs are checked through the others
    close(soc.cumulative_total_voltage, state.pack_v, 0.1, "pack voltage")
    close(-soc.current, state.current_a, 0.1, "current (pydalybms: positive discharging)")
    check_load_current(state)
    close(soc.soc / 100, state.soc, 0.001, "SOC")
    check_daly_extremes(
        state, cell_range.max.voltage, cell_range.max.number, cell_range.min.voltage, cell_range.min.number
    )
    check_daly_temperature_extremes(
        state,
        temperature_range.max.temperature,
        temperature_range.max.number,
        temperature_range.min.temperature,
        temperature_range.min.number,
    )
    assert status.cells == SERIES
    assert status.temperature_sensors == len(state.temperature_c)
    assert status.charger_connected is state.charger_present
    assert status.load_connected is state.load_present
    assert failures.fault_code == 0 and not state.faults
    assert not any(v for k, v in vars(failures).items() if k != "fault_code")
    assert len(cells.cells) == SERIES
    for k, (got, want) in enumerate(zip(cells.cells, state.cell_v, strict=True), start=1):
        close(got, want, 0.001, f"cell {k}")


# ----------------------------------------------------------------------------- a protection, by each reader's own names

# The same pack below 0 degC: the BMS holds the charge FET off for charge under-temperature
# (docs/behaviour.md §3 ``charge_undertemperature``) while the load keeps discharging.
COLD_SCENARIO = SCENARIO.replace("temperature_c: 31.6", "temperature_c: -4.6")


@pytest.fixture
def cold_scenario_path(tmp_path: Path) -> Path:
    assert COLD_SCENARIO != SCENARIO
    path = tmp_path / "cold.yaml"
    path.write_text(COLD_SCENARIO)
    return path


def check_cold(state: LiveState) -> None:
    assert state.faults == ["charge_undertemperature"]
    assert (state.charge_fet, state.discharge_fet) == (False, True)
    assert all(t < 0 for t in state.temperature_c)


def test_bmstools_reads_a_charge_undertemperature_protection(cold_scenario_path: Path) -> None:
    jbd_module = pytest.importorskip("bmstools.jbd", reason="bmstools not installed (pip install -e '.[readers]')")
    serial = pytest.importorskip("serial")
    with paused_emulator("jbd", cold_scenario_path, None) as (emulator, path):
        basic = jbd_module.JBD(serial.Serial(path), timeout=1).readBasicInfo()
        state = truth(emulator)
    check_cold(state)
    assert [name for name, on in basic.items() if name.endswith("_err") and on] == ["chgut_err"]
    assert (basic["chg_fet_en"], basic["dsg_fet_en"]) == (False, True)
    for k, want in enumerate(state.temperature_c):
        close(basic[f"ntc{k}"], want, 0.1, f"NTC {k + 1}")


def test_dalybms_reads_a_charge_undertemperature_protection(cold_scenario_path: Path) -> None:
    dalybms = pytest.importorskip("dalybms", reason="dalybms not installed (pip install -e '.[readers]')")
    with paused_emulator("daly", cold_scenario_path, None) as (emulator, path):
        bms = dalybms.DalyBMS(request_retries=1, address=4)
        bms.connect(path)
        try:
            errors = bms.get_errors()
            mosfets = bms.get_mosfet_status()
            temperatures = bms.get_temperatures()
        finally:
            bms.disconnect()
        state = truth(emulator)
    check_cold(state)
    # 0x98 byte 1 bits 2 and 3, in dalybms's own words (the emulator sets both alarm levels for a protection)
    codes = pytest.importorskip("dalybms.error_codes").ERROR_CODES
    assert sorted(errors) == sorted([codes[1][2], codes[1][3]])
    assert (mosfets["charging_mosfet"], mosfets["discharging_mosfet"]) == (False, True)
    for k, want in enumerate(state.temperature_c, start=1):
        close(temperatures[k], want, 1.0, f"temperature {k}")


def test_pydalybms_reads_a_charge_undertemperature_protection(cold_scenario_path: Path) -> None:
    pydalybms = pytest.importorskip("pydalybms", reason="pydalybms not installed (pip install -e '.[readers]')")
    with paused_emulator("daly", cold_scenario_path, None) as (emulator, path):
        bms = pydalybms.DalyBMS(path, timeout=0.5)
        failures = bms.get_battery_failure_status()
        temperature_range = bms.get_temperature_min_max_cell()
        state = truth(emulator)
    check_cold(state)
    assert [k for k, v in vars(failures).items() if k != "fault_code" and v] == [
        "chg_temp_low_level_1",
        "chg_temp_low_level_2",
    ]
    close(temperature_range.min.temperature, min(state.temperature_c), 1.0, "lowest temperature")
    close(temperature_range.max.temperature, max(state.temperature_c), 1.0, "highest temperature")


# ----------------------------------------------------------------------------- the real `openbms emulate`

# The command itself, as a user runs it: a pack at rest, its pty path read from stdout. The twin
# lives in another process, so the reference is our own reader (DeviceReader, itself checked against
# the twin in test_end_to_end.py) polled right after the third-party reader; at rest with a
# noise-free AFE the values hardly move between the two.
REST_SCENARIO = SCENARIO.replace("  - load: {current_a: 10}\n", "")


@contextmanager
def openbms_emulate(protocol: str, tmp_path: Path) -> Iterator[str]:
    import openbms

    assert "load" not in REST_SCENARIO
    scenario = tmp_path / "rest.yaml"
    scenario.write_text(REST_SCENARIO)
    env = {**os.environ, "PYTHONPATH": str(Path(openbms.__file__).resolve().parents[1])}
    code = "import sys; from openbms.cli import main; sys.argv[0] = 'openbms'; main()"
    argv = [sys.executable, "-c", code, "emulate", "--protocol", protocol, str(scenario), "--speed", "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/"), f"openbms emulate printed {path!r}"
        yield path
    finally:
        proc.terminate()
        proc.wait(10)


def our_reading(protocol: str, path: str) -> DeviceReading:
    reader = DeviceReader(f"{protocol}:{path}", timeout_s=1.0, retries=2)
    try:
        poll = reader.poll()
    finally:
        reader.close()
    assert poll.ok and poll.reading is not None, poll.error
    return poll.reading


def test_bmstools_reads_openbms_emulate(tmp_path: Path) -> None:
    jbd_module = pytest.importorskip("bmstools.jbd", reason="bmstools not installed (pip install -e '.[readers]')")
    serial = pytest.importorskip("serial")
    with openbms_emulate("jbd", tmp_path) as path:
        bms = jbd_module.JBD(serial.Serial(path), timeout=2)
        basic, cells = bms.readBasicInfo(), bms.readCellInfo()
        ours = our_reading("jbd", path)
    assert ours.cell_v is not None and ours.pack_v is not None and ours.temperature_c is not None
    assert [cells[f"cell{k}_mv"] / 1000 for k in range(len(cells))] == pytest.approx(ours.cell_v, abs=0.002)
    close(basic["pack_mv"] / 1000, ours.pack_v, 0.02, "pack voltage")
    close(basic["pack_ma"] / 1000, 0.0, 0.01, "current at rest")
    assert [basic[f"ntc{k}"] for k in range(basic["ntc_cnt"])] == pytest.approx(ours.temperature_c, abs=0.1)
    assert (basic["chg_fet_en"], basic["dsg_fet_en"]) == (ours.charge_fet, ours.discharge_fet) == (True, True)


def test_dalybms_reads_openbms_emulate(tmp_path: Path) -> None:
    dalybms = pytest.importorskip("dalybms", reason="dalybms not installed (pip install -e '.[readers]')")
    with openbms_emulate("daly", tmp_path) as path:
        bms = dalybms.DalyBMS(request_retries=3, address=4)
        bms.connect(path)
        try:
            soc, cell_v, mosfets = bms.get_soc(), bms.get_cell_voltages(), bms.get_mosfet_status()
        finally:
            bms.disconnect()
        ours = our_reading("daly", path)
    assert ours.cell_v is not None and ours.pack_v is not None and ours.soc is not None
    assert [cell_v[k] for k in sorted(cell_v)] == pytest.approx(ours.cell_v, abs=0.002)
    close(soc["total_voltage"], ours.pack_v, 0.1, "pack voltage")
    close(soc["current"], 0.0, 0.1, "current at rest")
    close(soc["soc_percent"] / 100, ours.soc, 0.002, "SOC")
    assert (mosfets["charging_mosfet"], mosfets["discharging_mosfet"]) == (True, True)


def test_pydalybms_reads_openbms_emulate(tmp_path: Path) -> None:
    pydalybms = pytest.importorskip("pydalybms", reason="pydalybms not installed (pip install -e '.[readers]')")
    with openbms_emulate("daly", tmp_path) as path:
        bms = pydalybms.DalyBMS(path, timeout=1.0)
        soc, cells = bms.get_soc(), bms.get_cell_voltages(cell_count=SERIES)
        ours = our_reading("daly", path)
    assert ours.cell_v is not None and ours.pack_v is not None and ours.soc is not None
    assert cells.cells == pytest.approx(ours.cell_v, abs=0.002)
    close(soc.cumulative_total_voltage, ours.pack_v, 0.1, "pack voltage")
    close(soc.soc / 100, ours.soc, 0.002, "SOC")
