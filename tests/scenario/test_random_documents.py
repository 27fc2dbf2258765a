"""A thousand random scenario documents: each is refused in one sentence (exit 2) or runs to
its end (exit 0 or 1); none is an internal error (exit 3), none runs long (issue 8, item 7).

Documents are mutations of a valid scenario that uses every kind of step (a value anywhere
replaced by a random one, keys added) and YAML-ish text with random structure. Durations in the pool are short
or far beyond the duration cap, so every accepted document finishes in well under a second.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from openbms.cli import app

BASE: dict[str, Any] = {
    "name": "random",
    "pack": {"chemistry": "lfp", "series": 4, "capacity_ah": 50, "soc": 0.5, "spread": {"seed": 1}},
    "bms": {"profile": "lfp", "set": {"cell_undervoltage.trip_v": 2.6}},
    "dt": "100ms",
    "timeline": [
        {"load": {"current_a": 10}},
        {"run": "1s"},
        {"inject": {"fault": "sensor_drift", "sensor": "cell_v_2", "per_hour": 0.1}},
        {"run_until": {"state": "normal", "timeout": "1s"}},
        {"expect": {"state": "normal", "events": [{"fault_set": {"fault": "cell_undervoltage"}}]}},
        {"charger": {"voltage_v": 14.2, "current_a": 5}},
        {"short": {"resistance_ohm": 0.01}},
        {"ambient": {"temperature_c": 30}},
        {"inject": {"fault": "sensor_stuck", "sensor": "cell_t_1", "value": 20}},
        {"inject": {"fault": "cell_internal_short", "cell": 2, "resistance_ohm": 1}},
        {"disconnect": "main_leads"},
        {"disconnect": "balance_connector"},
        {"run": "2s"},
        {"connect": "balance_connector"},
        {"connect": "main_leads"},
        {"replace_cell": {"cell": 1, "soc": 0.5}},
        {"press": "reset_button"},
        {"command": "soft_reset"},
        {"command": {"service_clear": "sensor_fault"}},
        {"repair": {"fault": "sensor_stuck", "sensor": "cell_t_1"}},
        {"run": "1s"},
    ],
}

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 60),
    st.sampled_from([0, -1, 10**11, 2**70, -(2**70)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "x", "1s", "0.5s", "400d", "1e9s", "on", "off", "normal", "fault_set", "cell_v_3", "lfp"]),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=6), SCALARS), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    ["name", "pack", "bms", "dt", "timeline", "series", "soc", "set", "run", "expect", "events", "kind", "value"]
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``doc`` a value can be swapped."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, prefix + (i,))
    return found


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replace(doc[head], rest, value)  # type: ignore[index]
    return copy


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc: Any = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        doc = _replace(doc, path, draw(VALUES))
    if isinstance(doc, dict) and draw(st.booleans()):
        doc[draw(KEYS)] = draw(VALUES)
    return doc


def _dump(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        return repr(doc)  # keys yaml cannot dump: the text itself is then the random document


TEXTS = st.one_of(
    mutated().map(_dump),
    VALUES.map(_dump),
    st.tuples(mutated().map(_dump), st.integers(0, 400), st.text(max_size=6)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    ),
)

runner = CliRunner()


# CI runs the same 1,000 documents every time; `scripts/fuzz_documents.py` sets
# OPENBMS_FUZZ_EXAMPLES (and a random draw) for nightly-size runs.
@settings(
    max_examples=int(os.environ.get("OPENBMS_FUZZ_EXAMPLES", "1000")),
    deadline=None,
    database=None,
    derandomize="OPENBMS_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(text=TEXTS)
def test_a_random_document_is_refused_in_one_sentence_or_runs(text: str, tmp_path: Path) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    result = runner.invoke(app, ["simulate", "--json", str(path)], env={"COLUMNS": "4000"})
    assert time.perf_counter() - started < 20
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stderr, text)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    else:
        doc = json.loads(result.stdout.splitlines()[-1], parse_constant=_refuse)
        assert math.isfinite(doc["final"]["t_s"])


def _refuse(token: str) -> float:
    raise ValueError(f"{token} is not JSON")
