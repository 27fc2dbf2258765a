"""`openbms diagnose --device URL`: the diagnosis reads a (here emulated) BMS over its protocol."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openbms.cli import app
from openbms.devices.emulator import Emulator, PtyPort, run_emulator
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

HOT = """\
name: a hot pack
pack: {series: 8, capacity_ah: 50, soc: 0.7, temperature_c: 66}
board: {set: {afe.cell_v_noise_v: 0.0, afe.temperature_noise_c: 0.0}}
timeline:
  - ambient: {temperature_c: 66}
  - run: 10s
"""


@pytest.fixture
def hot_device(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "hot.yaml"
    path.write_text(HOT)
    scenario, steps = load_scenario(path)
    emulator = Emulator(ScenarioRunner(scenario, steps), "jbd")
    port = PtyPort()
    stop = threading.Event()
    thread = threading.Thread(
        target=run_emulator, args=(emulator, port), kwargs={"speed": 20.0, "stop": stop}, daemon=True
    )
    thread.start()
    try:
        yield f"jbd:{port.path}"
    finally:
        stop.set()
        thread.join(5)
        port.close()


def test_diagnose_device_reads_the_protection_bits_and_names_the_cause(hot_device: str) -> None:
    threading.Event().wait(1.0)  # let the emulated pack trip on its temperature
    result = CliRunner().invoke(app, ["diagnose", "--device", hot_device, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["recommendation"] == "fix_root_cause"
    assert any("°C" in r["text"] for r in doc["reasons"])


def test_diagnose_a_silent_device_checks_the_link_before_any_reset(tmp_path: Path) -> None:
    port = PtyPort()  # nobody answers on it
    try:
        result = CliRunner().invoke(app, ["diagnose", "--device", f"jbd:{port.path}", "--json"])
    finally:
        port.close()
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["recommendation"] == "fix_root_cause"
    assert not any("asleep after" in r["text"] for r in doc["reasons"])
