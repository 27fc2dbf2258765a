"""Fleet campaigns: reproducible whatever runs them (one process, a process pool, a Dask
LocalCluster), a disabled protection shows as missed protections judged from the twin's physics,
results readable by pyarrow, and bad campaigns refused in one sentence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from openbms.apps.fleet import CampaignError, load_campaign, run_campaign, wilson
from openbms.cli import app

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "scenarios" / "fleet" / "evening-load.yaml"


def _campaign(tmp_path: Path, **extra: Any) -> Path:
    doc: dict[str, Any] = {
        "name": "test campaign",
        "scenario": str(BASE),
        "packs": 4,
        "seed": 7,
        "batch": 2,
        "arms": [{"name": "stock"}],
        "draw": {"soc": [0.15, 0.6], "ambient_c": [5, 35], "capacity_spread": [0.0, 0.05]},
    }
    doc.update(extra)
    path = tmp_path / "campaign.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def _without_timing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items()} for r in rows]


def test_the_same_packs_whatever_runs_them(tmp_path: Path) -> None:
    campaign, base = load_campaign(_campaign(tmp_path))
    alone = run_campaign(campaign, base, workers=1)
    pooled = run_campaign(campaign, base, workers=2)
    assert json.dumps(alone, sort_keys=True, default=str) == json.dumps(pooled, sort_keys=True, default=str)
    rebatched = campaign.model_copy(update={"batch": 3})
    assert json.dumps(run_campaign(rebatched, base), sort_keys=True, default=str) == json.dumps(
        alone, sort_keys=True, default=str
    )


def test_a_dask_local_cluster_gives_the_same_results(tmp_path: Path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    campaign, base = load_campaign(_campaign(tmp_path, packs=2, batch=1))
    alone = run_campaign(campaign, base, workers=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        clustered = run_campaign(campaign, base, scheduler=cluster.scheduler_address)
    assert json.dumps(clustered, sort_keys=True, default=str) == json.dumps(alone, sort_keys=True, default=str)


def test_a_disabled_protection_shows_as_missed(tmp_path: Path) -> None:
    """With the under-voltage protection off, a low pack's cells go below 2.50 V under load and
    stay there longer than its 2 s delay: a missed protection, judged from the true cell voltages.
    The stock arm, on the same packs, misses nothing and trips no nuisance."""
    arms = [{"name": "stock"}, {"name": "no-uv", "set": {"protections.cell_undervoltage.enabled": False}}]
    campaign, base = load_campaign(_campaign(tmp_path, packs=2, arms=arms, draw={"soc": [0.15, 0.2]}))
    rows = run_campaign(campaign, base)
    stock = [r for r in rows if r["arm"] == "stock"]
    off = [r for r in rows if r["arm"] == "no-uv"]
    assert all(r["missed_protections"] == 0 and r["nuisance_trips"] == 0 for r in stock)
    assert all(r["missed_protections"] >= 1 for r in off)
    judged = json.loads(off[0]["judgements"])
    assert judged["missed"][0].startswith("cell_undervoltage from ")


def test_the_command_writes_parquet_and_a_report(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["fleet", "run", str(_campaign(tmp_path, packs=2)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out / "results.parquet")
    assert table.num_rows == 2 and {"arm", "pack", "trips", "missed_protections", "final_state"} <= set(
        table.column_names
    )
    assert "| stock | 2 |" in (out / "report.md").read_text()


def test_wilson_interval_by_hand() -> None:
    # 8 of 10: p = 0.8, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71674,
    # half 1.96 * sqrt(0.016 + 0.0096040) / 1.38416 = 0.22660 -> 0.4901 .. 0.9433
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4901, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"packs": 0}, "packs"),
        ({"draw": {"faults": {"levitation": 0.1}}}, "cannot be drawn"),
        ({"arms": [{"name": "a"}, {"name": "a"}]}, "different names"),
        ({"scenario": "nowhere.yaml"}, "its scenario"),
    ],
)
def test_a_bad_campaign_is_one_sentence(tmp_path: Path, change: dict[str, Any], says: str) -> None:
    path = _campaign(tmp_path, **change)
    with pytest.raises(CampaignError, match=says):
        load_campaign(path)
    result = CliRunner().invoke(app, ["fleet", "run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and says in " ".join(result.output.split())
