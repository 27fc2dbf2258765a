"""The fast engine (``ScenarioRunner(engine="fast")``) behaves exactly as the Python reference.

Why: the fast engine earns its place only by running the same scenarios faster. It runs quiet
cycles in a compiled kernel and hands every discrete cycle to the reference, so a mistake in the
hand-over (a missed trip, a cycle too many, a profile step off by one) changes what a user sees.
Every scenario is played on both engines and must give the same events at the same times, the same
expectation results, the same final block and the same telemetry (within 1e-9); see
tests/fast/engine_diff.py for the comparison and tests/fast/random_scenarios.py for the generator.

Two sets: every scenario of the library (what users run) and 200 random timelines (the orders of
events nobody wrote down). scripts/fuzz_engines.py runs the random set at nightly size. Mismatches
found while writing this test are kept, smallest first, in tests/fast/regressions/ and run here too.
The whole file takes about 4.5 min on one core (-n 0): 2.2 min the random set, the rest the library.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from engine_diff import differences
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from random_scenarios import random_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIO_FILES = sorted(
    [
        *(ROOT / "scenarios").glob("*.yaml"),
        *(ROOT / "scenarios" / "faults").glob("*.yaml"),
        *(ROOT / "scenarios" / "seed").glob("*.yaml"),
        *(ROOT / "scenarios" / "troubled").glob("*.yaml"),
        *(ROOT / "scenarios" / "replay").glob("*.yaml"),
        *(ROOT / "src" / "openbms" / "scenario" / "library").glob("*.yaml"),
        ROOT / "tests" / "data" / "pybamm_thevenin" / "scenario.yaml",
        *(Path(__file__).parent / "regressions").glob("*.yaml"),
    ]
)


def assert_engines_agree(path: Path) -> None:
    """Fail, naming the first differing event, expectation, final key and telemetry row, unless
    both engines play ``path`` alike."""
    problems = differences(path)
    assert not problems, f"{path}: the fast engine differs from the reference:\n  " + "\n  ".join(problems)


def test_the_library_is_found() -> None:
    """A moved folder must not silently shrink the parametrized set below."""
    assert len(SCENARIO_FILES) >= 45


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_library_scenario_runs_alike_on_both_engines(path: Path) -> None:
    assert_engines_agree(path)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rnd=st.randoms(use_true_random=False))
def test_a_random_scenario_runs_alike_on_both_engines(
    rnd: random.Random, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("random")
    path = random_scenario(rnd).write(folder)
    assert_engines_agree(path)
