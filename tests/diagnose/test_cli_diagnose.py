"""``openbms diagnose`` from the command line, and the seed library's advice.

- ``simulate SCENARIO --save-state FILE`` then ``diagnose --state FILE --json``: the documented keys;
- ``diagnose SCENARIO --apply --json`` on small scenarios that stop at a troubled moment;
- bad inputs exit 2 with one sentence;
- the seed table: every seed case, cut just before its diagnosis expectation, gets the advice the
  seed text gives, and a recommended reset carried out in the twin brings the BMS back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from openbms.cli import app
from openbms.diagnose.apply import apply
from openbms.diagnose.engine import RECOMMENDATIONS, diagnose
from openbms.diagnose.from_twin import diagnosis_of, snapshot_of
from openbms.diagnose.snapshot import load_state
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

ROOT = Path(__file__).parent.parent.parent
SEEDS = sorted((ROOT / "scenarios" / "seed").glob("*.yaml"))
runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # so rich does not wrap the one sentence over two lines

PACK = (
    "pack: {chemistry: lfp, series: 4, parallel: 1, capacity_ah: 10, soc: 0.6, temperature_c: 25}\n"
    "bms: {profile: lfp}\nboard: {set: {supply.hold_up_s: 60}}\n"
)
TROUBLED = {
    # name: (scenario text, the advice)
    "firmware-hang": (
        "name: firmware hang\n"
        "description: the controller hangs; the BMS is silent\n" + PACK + "dt: 1s\n"
        "timeline:\n"
        "  - load: {current_a: 3}\n"
        "  - inject: {fault: firmware_hang}\n"
        "  - run: 30s\n"
        "  - expect: {state: unresponsive, charge_fet: off, discharge_fet: off}\n",
        "hard_reset",
    ),
    "afe-glitch": (
        "name: AFE glitch\n"
        "description: erratic readings latch sensor_fault\n" + PACK + "dt: 500ms\n"
        "timeline:\n"
        "  - inject: {fault: afe_glitch}\n"
        "  - run: 10s\n"
        "  - expect: {state: latched, faults: [sensor_fault]}\n",
        "hard_reset",
    ),
    "short-still-connected": (
        "name: short still connected\n"
        "description: a short across the terminals, not removed\n" + PACK + "dt: 100ms\n"
        "timeline:\n"
        "  - short: {resistance_ohm: 0.01}\n"
        "  - run: 2s\n"
        "  - expect: {state: protected, faults: [short_circuit]}\n",
        "fix_root_cause",
    ),
    "short-removed": (
        "name: short removed\n"
        "description: a short across the terminals, removed; the code stays\n" + PACK + "dt: 100ms\n"
        "timeline:\n"
        "  - short: {resistance_ohm: 0.01}\n"
        "  - run: 1s\n"
        "  - disconnect: short\n"
        "  - run: 5s\n"
        "  - expect: {state: protected, faults: [short_circuit]}\n",
        "soft_reset",
    ),
    "link-errors-repaired": (
        "name: link errors repaired\n"
        "description: the monitoring link threw errors, now healthy; the stale code stays\n" + PACK + "dt: 1s\n"
        "timeline:\n"
        "  - inject: {fault: monitor_link_errors}\n"
        "  - run: 15s\n"
        "  - repair: {fault: monitor_link_errors}\n"
        "  - run: 5s\n"
        "  - expect: {faults: [comm_error]}\n",
        "soft_reset",
    ),
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def json_doc(stdout: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return doc


# ----------------------------------------------------------------------------- --save-state, --state
def test_save_state_then_diagnose_the_state_file(tmp_path: Path) -> None:
    scenario = write(tmp_path, "hang", TROUBLED["firmware-hang"][0])
    state = tmp_path / "state.json"
    sim = runner.invoke(app, ["simulate", str(scenario), "--save-state", str(state)])
    assert sim.exit_code == 0, sim.output
    saved = json.loads(state.read_text("utf-8"))
    assert saved["openbms_state"] == 1 and saved["state"] == "unresponsive"
    assert load_state(state).state == "unresponsive"

    result = runner.invoke(app, ["diagnose", "--state", str(state), "--json"])
    assert result.exit_code == 0, result.output
    doc = json_doc(result.stdout)
    assert {"recommendation", "summary", "reasons", "steps", "assumptions"} <= set(doc)
    assert doc["recommendation"] == "hard_reset"
    assert doc["summary"]
    assert doc["reasons"] and all(isinstance(r["text"], str) and r["text"] for r in doc["reasons"])
    assert any("firmware hang" in r["text"] for r in doc["reasons"])
    assert doc["steps"] and all(isinstance(s["text"], str) and s["text"] for s in doc["steps"])
    safety = [s["safety"] for s in doc["steps"] if "safety" in s]
    assert len(safety) >= 2, "a hard reset carries the seed's safety notes"
    assert any("balance connector" in note for note in safety)
    texts = " ".join(s["text"] for s in doc["steps"])
    for words in ("disconnect all chargers and loads", "main negative and positive leads", "balance wire connector"):
        assert words in texts
    assert "applied" not in doc

    # the same state diagnosed straight from the scenario gives the same advice
    direct = runner.invoke(app, ["diagnose", str(scenario), "--json"])
    assert direct.exit_code == 0, direct.output
    again = json_doc(direct.stdout)
    assert again["recommendation"] == doc["recommendation"]
    assert again["steps"] == doc["steps"]


def test_the_report_a_person_reads(tmp_path: Path) -> None:
    scenario = write(tmp_path, "hang", TROUBLED["firmware-hang"][0])
    state = tmp_path / "state.json"
    assert runner.invoke(app, ["simulate", str(scenario), "--save-state", str(state)]).exit_code == 0
    result = runner.invoke(app, ["diagnose", "--state", str(state)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "Hard reset" in result.stdout and "BMS state: unresponsive" in result.stdout
    assert "⚠" in result.stdout  # safety notes are shown


def test_save_state_takes_exactly_one_scenario(tmp_path: Path) -> None:
    scenario = write(tmp_path, "hang", TROUBLED["firmware-hang"][0])
    result = runner.invoke(
        app, ["simulate", str(scenario), str(scenario), "--save-state", str(tmp_path / "s.json")], env=WIDE
    )
    assert result.exit_code == 2
    assert "error:" in result.stderr
    assert not (tmp_path / "s.json").exists()


# ----------------------------------------------------------------------------- SCENARIO --apply
@pytest.mark.parametrize("name", sorted(TROUBLED))
def test_diagnose_and_apply_a_troubled_scenario(tmp_path: Path, name: str) -> None:
    text, expected = TROUBLED[name]
    scenario = write(tmp_path, name, text)
    result = runner.invoke(app, ["diagnose", str(scenario), "--apply", "--json"])
    doc = json_doc(result.stdout)
    assert doc["recommendation"] == expected, doc["reasons"]
    applied = doc["applied"]
    assert applied["ok"] is True, applied
    assert applied["final_state"] == "normal"
    assert applied["steps"] and all(s["ok"] for s in applied["steps"])
    assert [s["index"] for s in applied["steps"]] == list(range(1, len(applied["steps"]) + 1))
    assert result.exit_code == 0, result.output


def test_a_failed_apply_exits_1(tmp_path: Path) -> None:
    """A stuck cell-voltage reading: the steps send a technician to the sensors, which the twin's
    hands cannot do; the command says the BMS is not back and exits 1."""
    scenario = write(
        tmp_path,
        "stuck",
        "name: stuck sensor\ndescription: a cell reading frozen\n" + PACK + "dt: 1s\n"
        "timeline:\n"
        "  - inject: {fault: sensor_stuck, sensor: cell_v_2, value: 3.0}\n"
        "  - load: {current_a: 3}\n"
        "  - run_until: {faults: [sensor_fault], timeout: 10min}\n",
    )
    result = runner.invoke(app, ["diagnose", str(scenario), "--apply", "--json"])
    doc = json_doc(result.stdout)
    assert doc["recommendation"] == "fix_root_cause"
    assert doc["applied"]["ok"] is False
    assert doc["applied"]["message"]
    assert result.exit_code == 1


# ----------------------------------------------------------------------------- bad inputs
def _one_sentence(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines
    return str(lines[0])


def test_a_missing_state_file(tmp_path: Path) -> None:
    line = _one_sentence(runner.invoke(app, ["diagnose", "--state", str(tmp_path / "nope.json")], env=WIDE))
    assert "nope.json" in line and "cannot read" in line


@pytest.mark.parametrize(
    "content, words",
    [
        ('{"name": "not a state"}', "not an openbms state file"),
        ("[1, 2, 3]", "not an openbms state file"),
        ("this is not json", "not a JSON state file"),
        ('{"openbms_state": 1, "cell_v": "three volts"}', "cell_v"),
        ('{"openbms_state": 99, "state": "normal"}', "not an openbms state file"),
    ],
    ids=["other-json", "json-list", "not-json", "wrong-field", "other-version"],
)
def test_a_file_that_is_not_a_state_file(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content, encoding="utf-8")
    line = _one_sentence(runner.invoke(app, ["diagnose", "--state", str(path)], env=WIDE))
    assert "state.json" in line and words in line


def test_apply_with_a_state_file(tmp_path: Path) -> None:
    scenario = write(tmp_path, "hang", TROUBLED["firmware-hang"][0])
    state = tmp_path / "state.json"
    assert runner.invoke(app, ["simulate", str(scenario), "--save-state", str(state)]).exit_code == 0
    line = _one_sentence(runner.invoke(app, ["diagnose", "--state", str(state), "--apply"], env=WIDE))
    assert "--apply" in line


@pytest.mark.parametrize(
    "args",
    [
        ["SCENARIO", "--state", "STATE"],
        ["SCENARIO", "--guide"],
        ["--state", "STATE", "--device", "jbd:/dev/null"],
        [],
    ],
    ids=["scenario-and-state", "scenario-and-guide", "state-and-device", "none"],
)
def test_exactly_one_source(tmp_path: Path, args: list[str]) -> None:
    scenario = write(tmp_path, "hang", TROUBLED["firmware-hang"][0])
    state = tmp_path / "state.json"
    state.write_text("{}", encoding="utf-8")
    argv = ["diagnose"] + [str(scenario) if a == "SCENARIO" else str(state) if a == "STATE" else a for a in args]
    line = _one_sentence(runner.invoke(app, argv, input="", env=WIDE))
    assert "exactly one" in line


def test_an_invalid_scenario(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad", "name: bad\n" + PACK + "dt: 1s\ntimeline:\n  - explode: now\n")
    line = _one_sentence(runner.invoke(app, ["diagnose", str(bad), "--json"], env=WIDE))
    assert "bad.yaml" in line


def test_a_missing_scenario(tmp_path: Path) -> None:
    line = _one_sentence(runner.invoke(app, ["diagnose", str(tmp_path / "gone.yaml")], env=WIDE))
    assert "gone.yaml" in line


# ----------------------------------------------------------------------------- the seed library
# What the seed text (seed/bms-soft-and-hard-reset.txt) advises at each seed case's diagnosis moment.
SEED_ADVICE = {
    # "The battery shut down due to a low-voltage event" -> soft reset: connect a charger
    ("01-low-voltage-cutoff-charger-wake", 0): "soft_reset",
    # "If charging alone doesn't work, disconnect the charger and let the battery rest" -> soft reset
    ("02-charger-does-not-wake-until-reconnected", 0): "soft_reset",
    # the overload is still connected: "Disconnect all loads" first - the cause is still there
    ("03-temporary-overload", 0): "fix_root_cause",
    # "temporary overload" with the load removed -> soft reset
    ("03-temporary-overload", 1): "soft_reset",
    # "a temporary communication error with your monitoring equipment" -> soft reset
    ("04-communication-error", 0): "soft_reset",
    # "a fault code that doesn't correspond to a persistent hardware issue" -> soft reset
    ("05-fault-code-not-a-hardware-problem", 0): "soft_reset",
    # "If the BMS does not wake up after connecting a charger (soft reset fails)" -> hard reset
    ("06-soft-reset-fails-hard-reset-succeeds", 0): "hard_reset",
    # latched error states; "Wait ... at least 10-15 minutes" (the first try was too short) -> hard reset
    ("07-hard-reset-too-short", 0): "hard_reset",
    # the board survived the wrong order and works: nothing to reset
    ("08-wrong-reconnection-order", 0): "none",
    # "risk of ... damage if done incorrectly": the BMS is damaged; no reset fixes it -> service
    ("08b-wrong-reconnection-order-damages-the-afe", 0): "service",
    # "After replacing a cell or performing other significant maintenance" -> hard reset
    ("09-cell-replacement", 0): "hard_reset",
    # "erratic behavior or false readings that persist after a soft reset" -> hard reset
    ("10-erratic-readings-after-soft-reset", 0): "hard_reset",
    # FAQ: "If the battery cells themselves are damaged ... a reset will not fix them" -> replace cells
    ("11-dead-cell-no-reset-fixes", 0): "replace_cells",
    # "Forcibly clearing an error without addressing the root cause can mask a serious problem" -> service
    ("12-forced-clear-refused-while-the-cause-persists", 0): "service",
    # FAQ: "a full charge cycle ... to recalibrate the state-of-charge reading" - not a reset
    ("13-soc-recalibrated-by-a-full-charge", 0): "none",
}
SEED_BUGS = {
    ("07-hard-reset-too-short", 0): (
        "bug: bms/plausibility.py SensorWatch.implausible + diagnose/engine.py present_conditions: at dt 1 s the AFE "
        "glitch latches sensor_fault before 3 jumps are counted, so its reason is out_of_range and the engine calls it "
        "a steady sensor fault: expected hard_reset, got fix_root_cause"
    ),
    ("09-cell-replacement", 0): (
        "bug: diagnose/from_twin.py snapshot_of: right after replace_cell (no step since) it reports the stale "
        "last_measurements of an unpowered BMS (cell 5 at 2.49 V, the replaced cell's old voltage), so the engine "
        "finds a 'collapsed' cell: expected hard_reset, got replace_cells"
    ),
}


def _diagnosis_steps(path: Path) -> list[tuple[int, str]]:
    _, steps = load_scenario(path)
    return [(i, s.value.diagnosis) for i, s in enumerate(steps) if s.kind == "expect" and s.value.diagnosis]


def test_the_table_matches_every_seed_scenario() -> None:
    found = {}
    for path in SEEDS:
        marks = _diagnosis_steps(path)
        assert marks, f"{path.name} has no diagnosis expectation"
        for k, (_, advice) in enumerate(marks):
            found[(path.stem, k)] = advice
    assert found == SEED_ADVICE
    assert set(SEED_ADVICE.values()) == set(RECOMMENDATIONS)


def _seed_params() -> list[Any]:
    return [
        pytest.param(
            stem,
            k,
            advice,
            id=f"{stem}#{k}",
            marks=[],
        )
        for (stem, k), advice in SEED_ADVICE.items()
    ]


@pytest.mark.parametrize("stem, k, advice", _seed_params())
def test_the_seed_case_gets_the_seed_advice(stem: str, k: int, advice: str) -> None:
    path = ROOT / "scenarios" / "seed" / f"{stem}.yaml"
    scenario, steps = load_scenario(path)
    cut = _diagnosis_steps(path)[k][0]
    run = ScenarioRunner(scenario, steps[:cut], diagnoser=diagnosis_of)
    result = run.run()
    assert result.passed, [e.message for e in result.expectations if not e.ok]
    twin = run.twin
    d = diagnose(snapshot_of(twin))
    assert d.recommendation == advice, (twin.state_name(0), [r.text for r in d.reasons])
    assert d.reasons and all(r.text for r in d.reasons)
    if advice in ("soft_reset", "hard_reset"):
        applied = apply(twin, d)
        assert applied.ok, applied.message
        assert twin.state_name(0) == "normal"


# ----------------------------------------------------------------------------- diagnosis expectations
def test_a_wrong_diagnosis_expectation_fails_the_scenario(tmp_path: Path) -> None:
    scenario = write(
        tmp_path,
        "healthy",
        "name: healthy\ndescription: nothing wrong\n" + PACK + "dt: 1s\n"
        "timeline:\n  - run: 5s\n  - expect: {state: normal, diagnosis: service}\n",
    )
    result = runner.invoke(app, ["simulate", str(scenario), "--json"])
    doc = json_doc(result.stdout)
    assert doc["passed"] is False
    assert result.exit_code == 1


def test_a_right_diagnosis_expectation_passes(tmp_path: Path) -> None:
    scenario = write(
        tmp_path,
        "healthy",
        "name: healthy\ndescription: nothing wrong\n" + PACK + "dt: 1s\n"
        "timeline:\n  - run: 5s\n  - expect: {state: normal, diagnosis: none}\n",
    )
    result = runner.invoke(app, ["simulate", str(scenario), "--json"])
    assert result.exit_code == 0, result.output
