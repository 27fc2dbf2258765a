"""The runner: run_until and its timeout, events since the last expect, current profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import ScenarioError, load_scenario


def run(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "s.yaml"
    path.write_text(text)
    scenario, steps = load_scenario(path)
    return ScenarioRunner(scenario, steps).run()


def test_run_until_stops_as_soon_as_the_condition_holds(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
name: until
pack: {series: 4, capacity_ah: 10, soc: 0.5}
timeline:
  - short: {resistance_ohm: 0.01}
  - run_until: {faults: [short_circuit], timeout: 10s}
  - expect: {events: [{kind: fault_set, fault: short_circuit}], discharge_fet: off}
""",
    )
    assert result.passed, result.expectations
    assert result.final["t_s"] == pytest.approx(0.1)


def test_run_until_timeout_fails_clearly_and_stops_the_run(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
name: never
pack: {series: 4, capacity_ah: 10, soc: 0.5}
timeline:
  - run_until: {state: protected, timeout: 30s}
  - expect: {state: normal}
""",
    )
    assert not result.passed
    assert result.final["t_s"] == pytest.approx(30.0)
    assert len(result.expectations) == 1  # the later expect never ran
    message = result.expectations[0].message
    assert "timed out after 30.0 s" in message and "state is normal, expected protected" in message


def test_events_are_counted_since_the_previous_expect(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
name: events
pack: {series: 4, capacity_ah: 10, soc: 0.5}
timeline:
  - short: {resistance_ohm: 0.01}
  - run: 1s
  - expect: {events: [fault_set]}
  - run: 1s
  - expect: {events: [fault_set]}
""",
    )
    assert [e.ok for e in result.expectations] == [True, False]


def test_profile_current_follows_the_csv_with_zero_order_hold(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("t_s,current_a\n0,-5\n2,3\n3,0\n")
    result = run(
        tmp_path,
        """
name: profile
pack: {series: 4, capacity_ah: 10, soc: 0.5}
dt: 500ms
timeline:
  - profile: {csv: p.csv}
  - run: 5s
""",
    )
    data = result.telemetry.array()
    current = dict(zip(np.round(data[:, 0], 3), data[:, 2], strict=True))
    assert current[0.5] == pytest.approx(-5.0) and current[2.0] == pytest.approx(-5.0)
    assert current[2.5] == pytest.approx(3.0) and current[3.0] == pytest.approx(3.0)
    assert current[3.5] == pytest.approx(0.0) and current[5.0] == pytest.approx(0.0)


def test_a_profile_with_bad_rows_is_refused_before_running(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("t_s,current_a\n0,1\n0,2\n")
    path = tmp_path / "s.yaml"
    path.write_text("name: p\ntimeline:\n  - profile: {csv: p.csv}\n  - run: 1s\n")
    scenario, steps = load_scenario(path)
    with pytest.raises(ScenarioError, match="t_s must increase"):
        ScenarioRunner(scenario, steps)
