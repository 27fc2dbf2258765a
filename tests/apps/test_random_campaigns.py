"""Random campaign files: each is refused in one sentence when it is loaded (``CampaignError``,
exit 2) or every one of its pack runs finishes. A campaign that loads and then fails in its packs
would be bad input found too late (after hours of a large campaign) and reported as a bug.

CI runs the same documents every time; ``scripts/fuzz_documents.py --what campaigns`` sets
OPENBMS_FUZZ_EXAMPLES (and a random draw) for nightly-size runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openbms.apps.fleet import CampaignError, failed, load_campaign, run_campaign

EXAMPLES = int(os.environ.get("OPENBMS_FUZZ_EXAMPLES", "0"))
# A small base so that a run is cheap: a 4S pack at rest for ten minutes at 1 s.
BASE = {
    "name": "small base",
    "pack": {"chemistry": "lfp", "series": 4, "capacity_ah": 50, "soc": 0.5, "temperature_c": 25},
    "bms": {"profile": "lfp"},
    "dt": "1s",
    "timeline": [{"load": {"current_a": 10}}, {"run": "10min"}],
}
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.one_of(st.floats(-200, 200), st.floats(allow_nan=True)), max_size=3),
    st.sampled_from(["evening", "pulses", "day_night", "replace", "add", "a.csv"]),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2),
)
DRAW_KEYS = ["soc", "ambient_c", "capacity_spread", "resistance_spread", "soh", "faults", "usage", "ambient", "x"]
SERIES_KEYS = {
    "usage": ["generator", "csv", "mode", "current_a", "duration_s", "start_s", "on_s", "off_s"],
    "ambient": ["generator", "csv", "mean_c", "amplitude_c", "peak_s", "period_s", "step_s"],
}
SETTINGS = ["protections.cell_undervoltage.trip_v", "protections.cell_overvoltage.trip_delay_s", "balancing.enabled"]


@st.composite
def campaigns(draw: st.DrawFn) -> dict[str, Any]:
    """A valid campaign with a few keys set to anything: a draw, a series parameter, an arm's setting."""
    doc: dict[str, Any] = {"name": "random", "scenario": "base.yaml", "packs": 1, "seed": 1, "draw": {}}
    doc["arms"] = [{"name": "a"}]
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["draw", "usage", "ambient", "arm", "top"]))
        if where == "draw":
            doc["draw"][draw(st.sampled_from(DRAW_KEYS))] = draw(VALUES)
        elif where in SERIES_KEYS:
            series = doc["draw"].setdefault(where, {"generator": "evening" if where == "usage" else "day_night"})
            if isinstance(series, dict):
                series[draw(st.sampled_from(SERIES_KEYS[where]))] = draw(VALUES)
        elif where == "arm":
            doc["arms"] = [{"name": "a", "set": {draw(st.sampled_from(SETTINGS)): draw(VALUES)}}]
        else:
            doc[draw(st.sampled_from(["packs", "seed", "batch", "name", "arms"]))] = draw(VALUES)
    return doc


@settings(
    max_examples=EXAMPLES or 150,
    deadline=None,
    database=None,
    derandomize=not EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(doc=campaigns())
def test_a_random_campaign_is_refused_when_loaded_or_runs(doc: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(json.dumps(BASE))
    (tmp_path / "a.csv").write_text("t_s,current_a,temperature_c\n0,-5,20\n300,0,30\n")
    path = tmp_path / "campaign.yaml"
    path.write_text(json.dumps(doc, allow_nan=True))
    try:
        campaign, base = load_campaign(path)
    except CampaignError as err:
        assert str(err).count("\n") == 0 and str(err)  # one sentence
        return
    rows = run_campaign(campaign.model_copy(update={"packs": 1}), base)
    assert rows and not any(failed(r) for r in rows), [r.get("error") for r in rows]
