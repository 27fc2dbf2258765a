"""The troubled scenario library (scenarios/troubled/): one small scenario per recommendation.

Each file is named after the advice it must end in (decided by hand from the seed text, not read
from the file's own expectation), stops at the troubled moment, and ``diagnose --apply`` on it
either brings the pack back to normal or hands a person's step over without failing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from openbms.cli import app
from openbms.diagnose.apply import apply
from openbms.diagnose.engine import RECOMMENDATIONS, Diagnosis
from openbms.diagnose.from_twin import diagnosis_of
from openbms.diagnose.procedures import ProcedureStep
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

TROUBLED_DIR = Path(__file__).parent.parent.parent / "scenarios" / "troubled"
runner = CliRunner()

# file stem: the advice a technician following the seed text gives at the file's end
ADVICE = {
    # nothing wrong: nothing to reset
    "none-healthy-pack": "none",
    # the overload is still plugged in: "Disconnect all loads" first - the cause is still there
    "fix-root-cause-overload-still-connected": "fix_root_cause",
    # a protection whose cause has passed: a soft reset brings it back
    "soft-reset-short-removed": "soft_reset",
    # a BMS that does not respond at all: only a power-down (hard reset) restarts it
    "hard-reset-firmware-hang": "hard_reset",
    # FAQ: "If the battery cells themselves are damaged ... a reset will not fix them"
    "replace-cells-collapsed-cell": "replace_cells",
    # "risk of ... damage if done incorrectly": a damaged board needs service, no reset fixes it
    "service-damaged-board": "service",
}
BACK_TO_NORMAL = {"fix_root_cause", "soft_reset", "hard_reset", "replace_cells"}


def json_doc(stdout: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return doc


def test_one_troubled_scenario_per_recommendation() -> None:
    stems = {p.stem for p in TROUBLED_DIR.glob("*.yaml")}
    assert stems == set(ADVICE)
    assert set(ADVICE.values()) == set(RECOMMENDATIONS)
    for stem, advice in ADVICE.items():
        assert stem.startswith(advice.replace("_", "-")), stem


@pytest.mark.parametrize("stem", sorted(ADVICE))
def test_the_file_ends_in_its_advice(stem: str) -> None:
    scenario, steps = load_scenario(TROUBLED_DIR / f"{stem}.yaml")
    assert scenario.description and len(scenario.description.split()) >= 20
    last = steps[-1]
    assert last.kind == "expect" and last.value.diagnosis == ADVICE[stem], "the file stops at its diagnosis"
    result = ScenarioRunner(scenario, steps, diagnoser=diagnosis_of).run()
    assert result.passed, [e.message for e in result.expectations if not e.ok]


@pytest.mark.parametrize("stem", sorted(ADVICE))
def test_diagnose_apply_carries_the_advice_out(stem: str) -> None:
    advice = ADVICE[stem]
    result = runner.invoke(app, ["diagnose", str(TROUBLED_DIR / f"{stem}.yaml"), "--apply", "--json"])
    doc = json_doc(result.stdout)
    assert doc["recommendation"] == advice, doc["reasons"]
    applied = doc["applied"]
    assert result.exit_code == 0, applied
    assert applied["ok"] is True, applied
    if advice in BACK_TO_NORMAL:
        assert applied["outcome"] == "done"
        assert applied["final_state"] == "normal"
        assert applied["steps"] and all(s["ok"] and "for_a_person" not in s for s in applied["steps"])
    elif advice == "service":
        assert applied["outcome"] == "for_a_person"
        assert applied["final_state"] == "locked", "the twin cannot replace a board"
        assert any("BMS board" in text for text in applied["for_a_person"])
        assert "for a person to do" in applied["message"]
        assert applied["steps"][0]["for_a_person"] is True
    else:
        assert applied["outcome"] == "done" and applied["steps"] == []
        assert applied["final_state"] == "normal"


def test_the_report_says_what_is_left_for_a_person() -> None:
    result = runner.invoke(
        app, ["diagnose", str(TROUBLED_DIR / "service-damaged-board.yaml"), "--apply"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "☞" in result.stdout and "for a person to do" in result.stdout
    assert "✗" not in result.stdout


def test_a_failing_step_still_fails_even_next_to_a_person_step() -> None:
    """A twin step that fails before the hand-over is a failure, not a person's step."""
    scenario, steps = load_scenario(TROUBLED_DIR / "service-damaged-board.yaml")
    run = ScenarioRunner(scenario, steps, diagnoser=diagnosis_of)
    run.run()
    d = Diagnosis(
        recommendation="service",
        summary="test",
        reasons=[],
        steps=[
            ProcedureStep(text="Do something the twin does not know.", action="juggle the cells"),
            ProcedureStep(text="Call a technician.", action="call service"),
        ],
    )
    applied = apply(run.twin, d)
    assert applied.ok is False and applied.outcome == "failed"
    assert len(applied.outcomes) == 1 and not applied.outcomes[0].for_a_person
