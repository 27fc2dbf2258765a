"""The emulator and the monitor's own reader, end to end over a real wire.

For each protocol the twin runs as an emulated BMS in a thread (a pseudo-terminal, once a TCP port),
paced at a modest speed, and ``DeviceReader`` reads it through pyserial exactly as ``openbms monitor``
does. What the reader reports must be what the twin shows (``Emulator.live_state``) within the
protocol's resolution; a protection tripped in the twin must arrive as its docs/behaviour.md §3 name through the
protocol's own bits; and a silent or garbling device must give ``comm_error`` and no values at all.

The scenario's AFE is noise-free (``bms.set``), so between two looks at the twin the values only
drift with the physics: the tolerance is the protocol's resolution plus the change seen across the
poll (truth taken under the lock just before and just after it).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from openbms.devices.emulator import Emulator, PtyPort, TcpPort, run_emulator
from openbms.devices.monitor import poll_table, reading_json
from openbms.devices.protocols import LiveState
from openbms.devices.reader import DeviceReader, Poll
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario
from openbms.twin.faults import FaultSpec, inject, repair

PROTOCOLS = ("jbd", "daly", "jk")
SPEED = 10.0  # 1 s of pack time per 0.1 s: the timeline below is over in 0.2 s of wall time
SERIES = 8

SCENARIO = f"""\
name: end-to-end
pack: {{chemistry: lfp, series: {SERIES}, capacity_ah: 50, soc: 0.6, temperature_c: 25,
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


@dataclass(frozen=True)
class Resolution:
    pack_v: float
    current_a: float
    soc: float
    cell_v: float
    temperature_c: float


RESOLUTION = {
    "jbd": Resolution(pack_v=0.01, current_a=0.01, soc=0.01, cell_v=0.001, temperature_c=0.1),
    "daly": Resolution(pack_v=0.1, current_a=0.1, soc=0.001, cell_v=0.001, temperature_c=1.0),
    "jk": Resolution(pack_v=0.01, current_a=0.01, soc=0.01, cell_v=0.001, temperature_c=1.0),
}
EPS = 1e-6


@dataclass
class Rig:
    emulator: Emulator
    port: PtyPort | TcpPort
    reader: DeviceReader
    stop: threading.Event
    thread: threading.Thread
    port_closed: bool = False

    def shut_down(self) -> None:
        """The emulator ends and its port goes away (as when ``openbms emulate`` exits)."""
        self.stop.set()
        self.thread.join(5)
        self.close_port()

    def close_port(self) -> None:
        if not self.port_closed:  # PtyPort.close closes fd numbers: never twice
            self.port_closed = True
            self.port.close()

    def truth(self) -> LiveState:
        with self.emulator.lock:
            return self.emulator.live_state()

    def poll(self) -> tuple[LiveState, Poll, LiveState]:
        """The twin just before, the poll, and the twin just after."""
        before = self.truth()
        poll = self.reader.poll()
        after = self.truth()
        return before, poll, after

    def mutate(self, change: Callable[[Emulator], None]) -> None:
        with self.emulator.lock:
            change(self.emulator)

    def wait_for(self, condition: Callable[[LiveState], bool], timeout_s: float = 10.0) -> LiveState:
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.truth()
            if condition(state):
                return state
            assert time.monotonic() < deadline, f"the twin never got there: {state}"
            time.sleep(0.02)


@pytest.fixture
def scenario_path(tmp_path: Path) -> Path:
    path = tmp_path / "e2e.yaml"
    path.write_text(SCENARIO)
    return path


@contextmanager
def emulated(
    protocol: str, scenario: Path, tcp: bool = False, timeout_s: float = 0.5, retries: int = 1
) -> Iterator[Rig]:
    model, steps = load_scenario(scenario)
    emulator = Emulator(ScenarioRunner(model, steps), protocol)
    port: PtyPort | TcpPort = TcpPort(0) if tcp else PtyPort()
    stop = threading.Event()
    thread = threading.Thread(
        target=run_emulator, args=(emulator, port), kwargs={"speed": SPEED, "stop": stop}, daemon=True
    )
    reader: DeviceReader | None = None
    rig: Rig | None = None
    thread.start()
    try:
        reader = DeviceReader(f"{protocol}:{port.path}", timeout_s=timeout_s, retries=retries)
        rig = Rig(emulator, port, reader, stop, thread)
        yield rig
    finally:
        stop.set()
        thread.join(5)
        if reader is not None:
            reader.close()
        if rig is not None:
            rig.close_port()
        else:
            port.close()
        assert not thread.is_alive(), "the emulator thread did not stop"


def _close(got: float | None, before: float, after: float, resolution: float, what: str) -> None:
    assert got is not None, f"{what} missing"
    tolerance = resolution + abs(after - before) + EPS
    assert abs(got - after) <= tolerance, f"{what}: read {got}, the twin shows {after} (before the poll {before})"


def _expected_temperatures(protocol: str, state: LiveState) -> list[float]:
    if protocol == "jk":  # JK carries two sensors: the box (warmest) and the battery (coolest)
        return [max(state.temperature_c), min(state.temperature_c)]
    return list(state.temperature_c)


def assert_agrees(protocol: str, before: LiveState, poll: Poll, after: LiveState) -> None:
    assert poll.ok, poll.error
    assert poll.error is None
    reading = poll.reading
    assert reading is not None
    assert reading.protocol == protocol
    res = RESOLUTION[protocol]
    _close(reading.pack_v, before.pack_v, after.pack_v, res.pack_v, "pack voltage")
    _close(reading.current_a, before.current_a, after.current_a, res.current_a, "current")
    _close(reading.soc, before.soc, after.soc, res.soc, "SOC")
    assert reading.cell_v is not None
    assert len(reading.cell_v) == len(after.cell_v) == SERIES
    for k, (got, b, a) in enumerate(zip(reading.cell_v, before.cell_v, after.cell_v, strict=True), start=1):
        _close(got, b, a, res.cell_v, f"cell {k}")
    assert reading.temperature_c is not None
    want_before, want_after = _expected_temperatures(protocol, before), _expected_temperatures(protocol, after)
    assert len(reading.temperature_c) == len(want_after)
    for k, (got, b, a) in enumerate(zip(reading.temperature_c, want_before, want_after, strict=True), start=1):
        _close(got, b, a, res.temperature_c, f"temperature {k}")
    if protocol == "jk":
        _close(reading.fet_temperature_c, before.fet_temperature_c, after.fet_temperature_c, 1.0, "FET temperature")
    assert reading.cycles == after.cycles
    assert reading.charge_fet is after.charge_fet is before.charge_fet
    assert reading.discharge_fet is after.discharge_fet is before.discharge_fet
    assert reading.faults == [f for f in after.faults if f != "comm_error"] == []


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reader_reports_the_twins_values_within_the_protocols_resolution(protocol: str, scenario_path: Path) -> None:
    with emulated(protocol, scenario_path) as rig:
        rig.wait_for(lambda s: s.current_a < -9)  # the 10 A load is on
        for _ in range(3):
            before, poll, after = rig.poll()
            assert_agrees(protocol, before, poll, after)
        # The values are live, not a cached first answer: the cells really differ and the SOC fell.
        reading = poll.reading
        assert reading is not None and reading.cell_v is not None
        assert max(reading.cell_v) - min(reading.cell_v) >= 0.002
        assert after.soc < 0.6
        assert rig.emulator.requests_seen > 0
        assert rig.emulator.frames_rejected == 0


def test_reader_over_the_emulators_tcp_port(scenario_path: Path) -> None:
    with emulated("jbd", scenario_path, tcp=True) as rig:
        assert isinstance(rig.port, TcpPort)
        assert rig.reader.url == f"jbd:socket://127.0.0.1:{rig.port.address[1]}"
        rig.wait_for(lambda s: s.current_a < -9)
        for _ in range(2):
            before, poll, after = rig.poll()
            assert_agrees("jbd", before, poll, after)


# ----------------------------------------------------------------------------- protections


def _overheat(emulator: Emulator) -> None:
    pack = emulator.twin.pack
    pack.ambient_c[0] = 65.0
    pack.cells.temperature_c[:] = 65.0


def _short(emulator: Emulator) -> None:
    emulator.twin.short(0, 0.005)


# The twin trips both over-temperature protections at 65 °C; each protocol says what its bits can:
# JK has one "battery over-temperature" bit, which the codec reads as the charge-side fault.
OVERHEAT_FAULTS = {
    "jbd": {"charge_overtemperature", "discharge_overtemperature"},
    "daly": {"charge_overtemperature", "discharge_overtemperature"},
    "jk": {"charge_overtemperature"},
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_over_temperature_trip_arrives_as_its_spec_fault_with_the_fets_off(
    protocol: str, scenario_path: Path
) -> None:
    with emulated(protocol, scenario_path) as rig:
        before, poll, _ = rig.poll()
        assert poll.ok and poll.reading is not None and poll.reading.faults == []
        rig.mutate(_overheat)
        rig.wait_for(
            lambda s: (
                {"charge_overtemperature", "discharge_overtemperature"} <= set(s.faults)
                and not s.charge_fet
                and not s.discharge_fet
            )
        )
        before, poll, after = rig.poll()
        assert poll.ok, poll.error
        reading = poll.reading
        assert reading is not None
        assert set(reading.faults) == OVERHEAT_FAULTS[protocol], (reading.faults, after.faults)
        assert reading.charge_fet is False
        assert reading.discharge_fet is False
        assert reading.temperature_c is not None and min(reading.temperature_c) >= 60


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_short_circuit_trip_opens_both_fets_and_is_never_misnamed(protocol: str, scenario_path: Path) -> None:
    with emulated(protocol, scenario_path) as rig:
        rig.mutate(_short)
        rig.wait_for(lambda s: "short_circuit" in s.faults and not s.charge_fet and not s.discharge_fet)
        _, poll, after = rig.poll()
        assert "short_circuit" in after.faults
        assert poll.ok, poll.error
        reading = poll.reading
        assert reading is not None
        assert reading.charge_fet is False
        assert reading.discharge_fet is False
        if protocol == "jbd":
            # JBD has a short-circuit protection bit (bit 10 of the protection word).
            assert reading.faults == ["short_circuit"]
        else:
            # Daly's 0x98 and JK's 0x8B have no short-circuit bit (Daly's byte 6 bit 2 is the
            # protection *failing*): nothing may be reported but the truth, so at most our fault name.
            assert set(reading.faults) <= {"short_circuit"}


# ----------------------------------------------------------------------------- silence and garbage


def _hang(emulator: Emulator) -> None:
    inject(emulator.twin, 0, FaultSpec("firmware_hang"))


def _unpower(emulator: Emulator) -> None:
    emulator.twin.disconnect_balance_connector(0)


def assert_no_values(poll: Poll) -> None:
    assert not poll.ok
    assert poll.reading is None
    assert poll.error is not None and "comm_error" in poll.error
    shown = reading_json(poll)
    assert shown["ok"] is False
    assert shown["faults"] == ["comm_error"]
    assert not {"pack_v", "current_a", "soc", "cell_v", "temperature_c", "charge_fet"} & set(shown)
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(poll_table("device", poll))
    table = console.export_text()
    assert "comm_error" in table and "no values shown" in table
    assert " V " not in table and "SOC" not in table and "cells" not in table


@pytest.mark.parametrize("silence", [_hang, _unpower], ids=["firmware_hang", "unpowered"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_device_that_stops_answering_gives_comm_error_and_no_values(
    protocol: str, silence: Callable[[Emulator], None], scenario_path: Path
) -> None:
    with emulated(protocol, scenario_path) as rig:
        _, first, _ = rig.poll()
        assert first.ok, first.error
        assert first.last_good_age_s is None
        rig.reader.transport.timeout_s, rig.reader.transport.retries = 0.25, 0  # silence: no need to wait long
        rig.mutate(silence)
        with rig.emulator.lock:
            assert not rig.emulator.answering()
        polls = [rig.reader.poll() for _ in range(2)]
        for poll in polls:
            assert_no_values(poll)
            assert poll.last_good_age_s is not None and poll.last_good_age_s > 0
        assert polls[1].last_good_age_s > polls[0].last_good_age_s  # type: ignore[operator]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_monitoring_link_errors_end_in_comm_error_never_in_wrong_values(protocol: str, scenario_path: Path) -> None:
    with emulated(protocol, scenario_path) as rig:
        _, first, _ = rig.poll()
        assert first.ok, first.error
        rig.reader.transport.timeout_s, rig.reader.transport.retries = 0.25, 0
        seen_before = rig.emulator.requests_seen
        rig.mutate(lambda e: inject(e.twin, 0, FaultSpec("monitor_link_errors")))
        for _ in range(2):
            poll = rig.reader.poll()
            assert_no_values(poll)
            assert poll.last_good_age_s is not None
        # The board heard the requests and answered them (damaged): it was not simply silent.
        assert rig.emulator.requests_seen > seen_before
        with rig.emulator.lock:
            assert rig.emulator.answering()
        # Repaired, the link gives fresh, correct values again.
        rig.mutate(lambda e: repair(e.twin, 0, FaultSpec("monitor_link_errors")))
        rig.reader.transport.timeout_s, rig.reader.transport.retries = 0.5, 1
        before, poll, after = rig.poll()
        assert poll.ok, poll.error
        assert poll.reading is not None
        assert poll.last_good_age_s is None
        _close(poll.reading.pack_v, before.pack_v, after.pack_v, RESOLUTION[protocol].pack_v, "pack voltage")
        _close(poll.reading.current_a, before.current_a, after.current_a, RESOLUTION[protocol].current_a, "current")


def test_an_emulator_that_goes_away_over_tcp_gives_comm_error(scenario_path: Path) -> None:
    with emulated("jbd", scenario_path, tcp=True) as rig:
        _, first, _ = rig.poll()
        assert first.ok, first.error
        rig.shut_down()
        poll = rig.reader.poll()
        assert_no_values(poll)
        assert poll.last_good_age_s is not None


def test_an_emulator_that_goes_away_gives_comm_error_not_a_crash(scenario_path: Path) -> None:
    with emulated("jbd", scenario_path) as rig:
        _, first, _ = rig.poll()
        assert first.ok, first.error
        rig.shut_down()
        poll = rig.reader.poll()
        assert_no_values(poll)
        assert poll.last_good_age_s is not None
