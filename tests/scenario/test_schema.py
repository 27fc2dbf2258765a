"""Scenario files are validated before anything runs; a bad one gets one sentence: file, line, key."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbms.scenario.schema import STEP_KINDS, ScenarioError, load_scenario

GOOD = """\
name: every step kind
pack: {chemistry: lfp, series: 4, parallel: 2, capacity_ah: 50, soc: 0.5, temperature_c: 20,
       spread: {capacity: 0.02, resistance: 0.05, soc: 0.01, self_discharge: 0.1, seed: 3}}
bms: {profile: lfp, set: {cell_undervoltage.trip_v: 2.6, sleep.delay_s: 600}}
dt: 500ms
timeline:
  - note: "a comment"
  - load: {current_a: 10}
  - load: {power_w: 300}
  - load: {resistance_ohm: 2}
  - profile: {csv: profile.csv}
  - charger: {voltage_v: 14.2, current_a: 10, min_battery_v: 10}
  - disconnect: load
  - disconnect: charger
  - disconnect: short
  - disconnect: main_leads
  - disconnect: balance_connector
  - connect: balance_connector
  - connect: main_leads
  - short: {resistance_ohm: 0.01}
  - ambient: {temperature_c: -5}
  - inject: {fault: cell_internal_short, cell: 2, resistance_ohm: 10}
  - inject: {fault: capacity_fade, cell: 1, soh: 0.7}
  - inject: {fault: open_balance_wire, cell: 3}
  - inject: {fault: sensor_stuck, sensor: cell_v_2, value: 3.3}
  - inject: {fault: sensor_drift, sensor: current, per_hour: 0.5}
  - inject: {fault: afe_glitch}
  - inject: {fault: firmware_hang}
  - inject: {fault: monitor_link_errors}
  - inject: {fault: fet_stuck_closed, fet: charge}
  - inject: {fault: cooling_failure}
  - repair: {fault: open_balance_wire, cell: 3}
  - replace_cell: {cell: 2, soc: 0.5}
  - press: reset_button
  - command: soft_reset
  - command: {service_clear: deep_discharge}
  - run: 10min
  - run: 30
  - run_until: {state: protected, timeout: 2h}
  - expect: {state: normal, faults: [cell_undervoltage], faults_absent: [short_circuit],
             charge_fet: on, discharge_fet: off, soc: [0.1, 0.9], cell_v: [2.5, 3.6],
             pack_v: [10, 15], temperature_c: [0, 40], warnings: [cell_overvoltage],
             events: [fault_set, {kind: fault_cleared, fault: cell_undervoltage},
                      {reset: {method: soft}}]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    (tmp_path / "profile.csv").write_text("t_s,current_a\n0,1\n")
    return path


def test_every_step_and_expect_key_is_accepted(tmp_path: Path) -> None:
    scenario, steps = load_scenario(write(tmp_path, GOOD))
    assert {s.kind for s in steps} == set(STEP_KINDS)
    assert scenario.dt == 0.5
    expect = steps[-1].value
    assert expect.charge_fet is True and expect.discharge_fet is False
    assert steps[-1].line == 40


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "words"),
    [
        ("current_a: 10}", "current_a: -10}", 8, "timeline.1.load.current_a", "greater than"),
        ("timeout: 2h", "timeout: soon", 39, "timeline.32.run_until.timeout", "not a duration"),
        ("- run: 10min", "- walk: 10min", 37, "timeline.30.walk", "unknown step"),
        ("seed: 3}", "seed: 3, colour: red}", 3, "pack.spread.colour", "unknown key"),
        ("trip_v: 2.6", "trip_q: 2.6", 4, "bms.set", "cell_undervoltage.trip_q"),
        (
            "faults: [cell_undervoltage]",
            "faults: [cell_undervolt]",
            40,
            "timeline.33.expect.faults.0",
            "cell_undervolt",
        ),
        ("{state: normal,", "{state: sleepy,", 40, "timeline.33.expect.state", "sleepy"),
        ("cell: 2, soc: 0.5", "cell: 9, soc: 0.5", 33, "timeline.26.replace_cell.cell", "does not exist"),
        (
            "{fault: capacity_fade, cell: 1, soh: 0.7}",
            "{fault: capacity_fade, cell: 1}",
            23,
            "timeline.16.inject",
            "needs soh",
        ),
        ("dt: 500ms", "dt: 5min", 5, "dt", "between"),
        ("charge_fet: on,", "charge_fet: maybe,", 41, "timeline.33.expect.charge_fet", "on or off"),
        ("soc: [0.1, 0.9]", "soc: [0.9, 0.1]", 41, "timeline.33.expect.soc", "low ≤ high"),
        ("{reset: {method: soft}}", "{explosion: {}}", 43, "timeline.33.expect.events", "explosion"),
        (
            "repair: {fault: open_balance_wire, cell: 3}",
            "repair: {fault: sensor_stuck, sensor: x}",
            32,
            "timeline.25.repair.sensor",
            "pattern",
        ),
        # A key with no value is no load (it once reached the physics as NaN and crashed it).
        ("load: {current_a: 10}", "load: {current_a: null}", 8, "timeline.1.load", "exactly one"),
    ],
)
def test_a_bad_file_names_file_line_and_key(
    tmp_path: Path, old: str, new: str, line: int, key: str, words: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert message.startswith(f"{path}, line {line}: {key}"), message
    assert words in message
    assert "\n" not in message


def test_yaml_syntax_errors_and_missing_files_are_one_sentence(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ntimeline: [run: 1s\n")
    with pytest.raises(ScenarioError, match=r"line \d+: not valid YAML"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.yaml")
    empty = write(tmp_path, "name: x\ntimeline: []\n")
    with pytest.raises(ScenarioError, match="timeline is empty"):
        load_scenario(empty)
    no_name = write(tmp_path, "timeline: [{run: 1s}]\n")
    with pytest.raises(ScenarioError, match="name: this key is required"):
        load_scenario(no_name)
