"""The shipped scenario library: every scenarios/*.yaml is a self-checking test that must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbms.diagnose.from_twin import diagnosis_of
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

LIBRARY = Path(__file__).parent.parent / "scenarios"
SCENARIOS = sorted(LIBRARY.rglob("*.yaml"))


def test_the_library_is_not_empty() -> None:
    assert len(SCENARIOS) >= 13, f"expected the shipped scenarios in {LIBRARY}"


@pytest.mark.parametrize("path", SCENARIOS, ids=[str(p.relative_to(LIBRARY).with_suffix("")) for p in SCENARIOS])
def test_library_scenario_passes(path: Path) -> None:
    scenario, steps = load_scenario(path)
    assert scenario.description, f"{path.name} needs a description"
    assert any(s.kind == "expect" for s in steps), f"{path.name} checks nothing"
    result = ScenarioRunner(scenario, steps, diagnoser=diagnosis_of).run()
    failures = [e.message for e in result.expectations if not e.ok]
    if result.error and result.error not in failures:
        failures.append(result.error)
    if not result.passed:
        print(f"{path.name}: {scenario.name}")
        for message in failures:
            print("  ✗", message)
    assert result.passed, f"{path.name}:\n  " + "\n  ".join(failures)
