"""Fleet campaigns: reproducible whatever runs them (one process, a process pool, a Dask
LocalCluster), a disabled protection shows as missed protections judged from the twin's physics,
results readable by pyarrow, and bad campaigns refused in one sentence.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from openbms.apps.fleet import CampaignError, load_campaign, report, reset_needed, run_campaign, wilson
from openbms.apps.fleet_series import at_times, day_night, evening_load, pulsed_load
from openbms.cli import app
from openbms.scenario.schema import parse_steps

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


# The newer draws (a usage profile added to the base's load, a day-night ambient series) in place
# of the constant ambient temperature: reproducible in the same way.
SERIES_DRAWS = {
    "soc": [0.15, 0.6],
    "capacity_spread": [0.0, 0.05],
    "usage": {"generator": "pulses", "current_a": [5, 20], "on_s": 600, "off_s": [300, 900], "duration_s": 7200},
    "ambient": {"generator": "day_night", "mean_c": [5, 35], "amplitude_c": [0, 10], "step_s": 1800},
}


@pytest.mark.parametrize("draw", [None, SERIES_DRAWS], ids=["constants", "series"])
def test_the_same_packs_whatever_runs_them(tmp_path: Path, draw: dict[str, Any] | None) -> None:
    campaign, base = load_campaign(_campaign(tmp_path, **({"draw": draw} if draw else {})))
    alone = run_campaign(campaign, base, workers=1)
    pooled = run_campaign(campaign, base, workers=2)
    assert json.dumps(alone, sort_keys=True, default=str) == json.dumps(pooled, sort_keys=True, default=str)
    rebatched = campaign.model_copy(update={"batch": 3})
    assert json.dumps(run_campaign(rebatched, base), sort_keys=True, default=str) == json.dumps(
        alone, sort_keys=True, default=str
    )


@pytest.mark.parametrize("draw", [None, SERIES_DRAWS], ids=["constants", "series"])
def test_a_dask_local_cluster_gives_the_same_results(tmp_path: Path, draw: dict[str, Any] | None) -> None:
    distributed = pytest.importorskip("dask.distributed")
    campaign, base = load_campaign(_campaign(tmp_path, packs=2, batch=1, **({"draw": draw} if draw else {})))
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
    # Resets needed (docs/behaviour.md §4.1): the stock packs' under-voltage trip is of class
    # charger, cleared by the base's charge, so they need nothing; without it the cells run on below
    # the 2.00 V deep-discharge limit, a persistent fault that no reset clears: a service visit.
    assert [r["reset_needed"] for r in stock] == ["none", "none"]
    assert [r["reset_needed"] for r in off] == ["service", "service"]
    assert all("deep_discharge" in json.loads(r["final_faults"]) for r in off)


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
    # The report's figure: a 10 x 4.5 inch PNG at 100 dpi, as Pillow reads it; no temporary file left.
    from PIL import Image

    with Image.open(out / "report.png") as figure:
        assert figure.format == "PNG" and figure.size == (1000, 450)
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "report.png", "results.parquet"]


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
        ({"draw": {"usage": {"generator": "rollercoaster", "current_a": 5}}}, "unknown generator 'rollercoaster'"),
        ({"draw": {"usage": {"generator": "evening", "current_a": 5}}}, "evening needs duration_s"),
        ({"draw": {"usage": {"generator": "evening", "current_a": [50, 20], "duration_s": 60}}}, "low ≤ high"),
        ({"draw": {"usage": {"generator": "evening", "current_a": 5, "duration_s": 60, "volts": 3}}}, "not 'volts'"),
        (
            {"draw": {"usage": {"generator": "evening", "current_a": [1, 2, 3], "duration_s": 5}}},
            "current_a is a number or a",
        ),
        ({"draw": {"usage": {"csv": ["missing.csv"]}}}, "draw.usage.csv"),
        ({"draw": {"ambient": {"csv": ["missing.csv"]}}}, "cannot read the ambient series"),
        ({"draw": {"ambient": {"generator": "day_night", "mean_c": 100, "amplitude_c": 30}}}, "within -60..120"),
        ({"draw": {"ambient_c": [0, 10], "ambient": {"csv": ["t.csv"]}}}, "not both"),
        (
            {"draw": {"usage": {"generator": "pulses", "current_a": 1, "on_s": 1, "off_s": 0, "duration_s": 1e6}}},
            "pulses",
        ),
        ({"draw": {"soc": [0.5, 2]}}, "draw.soc: 2 cannot be drawn"),
        ({"draw": {"ambient_c": [-100, 30]}}, "draw.ambient_c: -100 cannot be drawn"),
        ({"draw": {"capacity_spread": [0, 5]}}, "draw.capacity_spread: 5 cannot be drawn"),
        ({"draw": {"soh": [0.9, 0.5]}}, "runs from high to low"),
        ({"draw": {"soh": [0, 1]}}, "draw.soh: 0 cannot be drawn"),
        ({"draw": {"soc": [math.nan, 0.5]}}, "finite number"),
        ({"arms": [{"name": "a", "set": {"nonsense.key": 1}}]}, "arm 'a': unknown setting 'nonsense.key'"),
        (
            {"arms": [{"name": "b", "set": {"protections.cell_undervoltage.trip_v": "x"}}]},
            "arm 'b': setting 'cell_undervoltage.trip_v'",
        ),
    ],
)
def test_a_bad_campaign_is_one_sentence(tmp_path: Path, change: dict[str, Any], says: str) -> None:
    path = _campaign(tmp_path, **change)
    with pytest.raises(CampaignError, match=says):
        load_campaign(path)
    result = CliRunner().invoke(app, ["fleet", "run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and says in " ".join(result.output.split())


# ---------------------------------------------------------------------------- drawn series
def _base(tmp_path: Path, timeline: list[Any], quiet_thermistors: bool = False) -> Path:
    """A small base scenario: a 4S 100 Ah LiFePO4 pack at 60 % SOC and 25 °C, no spread, at 1 s."""
    doc: dict[str, Any] = {
        "name": "small base",
        "pack": {"chemistry": "lfp", "series": 4, "capacity_ah": 100, "soc": 0.6, "temperature_c": 25},
        "bms": {"profile": "lfp"},
        "dt": "1s",
        "timeline": timeline,
    }
    if quiet_thermistors:
        doc["board"] = {"set": {"afe.temperature_noise_c": 0.0, "afe.temperature_resolution_c": 0.0}}
    path = tmp_path / "base.yaml"
    path.write_text(json.dumps(doc))
    return path


def _trips(row: dict[str, Any], fault: str) -> list[float]:
    return [t["t_s"] for t in json.loads(row["trips"]) if t["fault"] == fault]


def test_generators_by_hand() -> None:
    t, i = evening_load({"current_a": 40.0, "duration_s": 3600.0, "start_s": 600.0}, 0.0)
    assert t.tolist() == [0.0, 600.0, 4200.0] and i.tolist() == [0.0, -40.0, 0.0]
    # 60 s on, 30 s off, for 150 s: on at 0 and 90, the second pulse cut at 150.
    t, i = pulsed_load({"current_a": 10.0, "on_s": 60.0, "off_s": 30.0, "duration_s": 150.0, "start_s": 0.0}, 0.0)
    assert t.tolist() == [0.0, 60.0, 90.0, 150.0] and i.tolist() == [-10.0, 0.0, -10.0, 0.0]
    # 20 + 10 cos(2 pi t / 1 d), warmest at 0 s, every 6 h over a day: 30, 20, 10, 20.
    params = {"mean_c": 20.0, "amplitude_c": 10.0, "peak_s": 0.0, "period_s": 86_400.0, "step_s": 21_600.0}
    t, c = day_night(params, 86_400.0)
    assert t.tolist() == [0.0, 21_600.0, 43_200.0, 64_800.0]
    assert c == pytest.approx([30.0, 20.0, 10.0, 20.0], abs=1e-9)


def test_a_generated_load_adds_to_or_replaces_the_base_load(tmp_path: Path) -> None:
    """The base draws 100 A (1.0 C) for 10 min, under the 1.5 C (150 A) discharge over-current
    limit. A drawn 60 A evening load from start_s on top of it makes 160 A: the protection trips
    once its 1 s delay has passed, the BMS reading the current a cycle late: at ceil(start_s) + 2 s
    (± 1 s). Replacing the base's load, the 60 A alone trips nothing."""
    base = _base(tmp_path, [{"load": {"current_a": 100}}, {"run": "10min"}])
    usage = {"generator": "evening", "current_a": 60, "start_s": [120, 240], "duration_s": 300}
    for mode, trips in (("add", True), ("replace", False)):
        path = _campaign(tmp_path, scenario=str(base), packs=3, draw={"usage": {**usage, "mode": mode}})
        campaign, base_path = load_campaign(path)
        for row in run_campaign(campaign, base_path):
            drawn = json.loads(row["usage"])
            assert drawn["generator"] == "evening" and drawn["current_a"] == 60.0
            assert 120 <= drawn["start_s"] <= 240
            found = _trips(row, "discharge_overcurrent")
            if trips:
                assert len(found) == 1 and abs(found[0] - (math.ceil(drawn["start_s"]) + 2)) <= 1, (row, drawn)
            else:
                assert row["trip_count"] == 0, row


def test_a_usage_csv_is_picked_per_pack(tmp_path: Path) -> None:
    """Two profiles (relative to the campaign file) step to a 200 A discharge at 100 s and at
    200 s; the base's 100 A load is replaced. Each pack trips discharge over-current (150 A, 1 s
    delay, read a cycle late) at its own file's step + 2 s (± 1 s), and its row names the file."""
    base = _base(tmp_path, [{"load": {"current_a": 100}}, {"run": "10min"}])
    (tmp_path / "profiles").mkdir()
    steps = {"a.csv": 100, "b.csv": 200}
    for name, at in steps.items():
        (tmp_path / "profiles" / name).write_text(f"t_s,current_a\n0,0\n{at},-200\n")
    usage = {"csv": ["profiles/a.csv", "profiles/b.csv"]}
    campaign, base_path = load_campaign(_campaign(tmp_path, scenario=str(base), packs=6, seed=1, draw={"usage": usage}))
    picked = set()
    for row in run_campaign(campaign, base_path):
        name = Path(json.loads(row["usage"])["csv"]).name
        picked.add(name)
        found = _trips(row, "discharge_overcurrent")
        assert len(found) == 1 and abs(found[0] - (steps[name] + 2)) <= 1, row
    assert picked == set(steps)  # seed 1 picks both files among its 6 packs


def test_a_hot_ambient_series_trips_over_temperature_when_the_cells_heat_up(tmp_path: Path) -> None:
    """A pack at rest; its ambient series holds 25 °C, then 80 °C from 100 s. An lfp cell's thermal
    mass is 22 J/K per Ah and its cooling 0.01 W/K per Ah (chemistries.yaml): a time constant of
    2,200 s. Stepped semi-implicitly at 1 s, T(100 + k) = 80 - 55 (2200/2201)^k reaches the
    45 °C charge over-temperature limit after k = ln(55/35) / ln(2201/2200) = 994.6, so 995
    cycles (1,095 s); the BMS reads it a cycle later and trips after the 2 s delay: at 1,098 s
    (± 1 s). Applied from the start the step would trip about 100 s sooner; never applied, never.
    The thermistors are noiseless here so the time is exact; the trip is no nuisance."""
    base = _base(tmp_path, [{"run": "25min"}], quiet_thermistors=True)
    (tmp_path / "hot.csv").write_text("t_s,temperature_c\n0,25\n100,80\n")
    campaign, base_path = load_campaign(
        _campaign(tmp_path, scenario=str(base), packs=1, draw={"ambient": {"csv": ["hot.csv"]}})
    )
    (row,) = run_campaign(campaign, base_path)
    assert [t["fault"] for t in json.loads(row["trips"])] == ["charge_overtemperature"]
    assert abs(_trips(row, "charge_overtemperature")[0] - 1098) <= 1
    assert row["nuisance_trips"] == 0 and row["missed_protections"] == 0
    assert json.loads(row["ambient_series"])["csv"].endswith("hot.csv")


def test_a_trip_within_the_thermistors_error_is_no_nuisance(tmp_path: Path) -> None:
    """The same hot series with the board's own thermistors (noise 0.1 °C, step 0.1 °C): the
    readings reach 45 °C a little before the cells do. The judge allows the board's sensor error,
    one step and four standard deviations (0.5 °C), which the cells' true rise near 45 °C, 35/2200
    °C a second, covers in 31 s: the trip comes at most 32 s before the noiseless 1,098 s and is no
    nuisance."""
    base = _base(tmp_path, [{"run": "25min"}])
    (tmp_path / "hot.csv").write_text("t_s,temperature_c\n0,25\n100,80\n")
    campaign, base_path = load_campaign(
        _campaign(tmp_path, scenario=str(base), packs=1, draw={"ambient": {"csv": ["hot.csv"]}})
    )
    (row,) = run_campaign(campaign, base_path)
    (tripped,) = _trips(row, "charge_overtemperature")
    assert 1098 - 32 <= tripped <= 1099
    assert row["nuisance_trips"] == 0 and row["missed_protections"] == 0


HOME_DAY = ROOT / "scenarios" / "fleet" / "home-day.yaml"


def test_a_day_long_run_is_judged_on_every_cycle(tmp_path: Path) -> None:
    """A simulated day at 1 s is 86,401 telemetry rows; memory keeps one in eight of them, and an
    over-voltage excursion at the top of a charge lasts a couple of seconds. On the base's own
    settings and a healthy board, a trip is the brain reading a cell past its limit, and the reading
    is within the board's error of the truth: no trip may be a nuisance. All three packs of seed 2
    trip over-voltage at the top of the day's charge (the test needs them to, or it proves nothing)."""
    campaign, base = load_campaign(
        _campaign(
            tmp_path,
            scenario=str(HOME_DAY),
            packs=3,
            seed=2,
            batch=3,
            draw={
                "soc": [0.2, 0.9],
                "ambient_c": [0, 40],
                "capacity_spread": [0.0, 0.05],
                "resistance_spread": [0, 0.1],
            },
        )
    )
    rows = run_campaign(campaign, base)
    over = [r for r in rows if _trips(r, "cell_overvoltage")]
    assert [r["pack"] for r in over] == [0, 1, 2]
    assert all(r["nuisance_trips"] == 0 and r["missed_protections"] == 0 for r in rows), [r["judgements"] for r in rows]


def test_every_fault_a_campaign_draws_runs(tmp_path: Path) -> None:
    """Each injectable fault at chance 1 on one pack: it runs (a drifting sensor is a cell's voltage
    sensor, named for the drawn cell) and the row lists all five."""
    faults = {
        "cell_internal_short": 1,
        "capacity_fade": 1,
        "cooling_failure": 1,
        "sensor_drift": 1,
        "open_balance_wire": 1,
    }
    base = _base(tmp_path, [{"run": "10min"}])
    campaign, base_path = load_campaign(_campaign(tmp_path, scenario=str(base), packs=1, draw={"faults": faults}))
    (row,) = run_campaign(campaign, base_path)
    assert row["error"] == ""
    assert sorted(f.split("@")[0] for f in json.loads(row["faults_injected"])) == sorted(faults)


def test_an_aged_pack_reaches_its_cut_off_in_its_share_of_the_time(tmp_path: Path) -> None:
    """``soh`` fades every cell to that share of its capacity (the BMS still counts the rated one).
    On a constant 100 A load from 60 % SOC, a cell at half its capacity loses SOC twice as fast and
    its voltage at a given SOC and current is the same, so it reaches the under-voltage cut-off in
    half the time of a new one (within a few seconds: the 2 s delay, a reading's noise)."""
    base = _base(tmp_path, [{"load": {"current_a": 100}}, {"run": "1h"}])
    new_pack, aged = (
        run_campaign(*load_campaign(_campaign(tmp_path, scenario=str(base), packs=1, draw=draw)))[0]
        for draw in ({}, {"soh": [0.5, 0.5]})
    )
    (t_new,) = _trips(new_pack, "cell_undervoltage")
    (t_aged,) = _trips(aged, "cell_undervoltage")
    assert t_new > 1800 and abs(t_aged - 0.5 * t_new) <= 4, (t_new, t_aged)
    assert aged["soh"] == 0.5 and new_pack["soh"] is None


def test_reset_needed_by_hand() -> None:
    """docs/behaviour.md §4.1 and §10.1: the most of what the diagnosis recommends and what the
    faults still active need once their cause is gone."""
    assert reset_needed("none", ["auto", "charger", "load-removal"]) == "none"
    assert reset_needed("fix_root_cause", ["latched"]) == "hard_reset"  # e.g. a cell still over its latched limit
    assert reset_needed("soft_reset", ["soft"]) == "soft_reset"
    assert reset_needed("soft_reset", []) == "soft_reset"  # a sleeping BMS
    assert reset_needed("hard_reset", []) == "hard_reset"  # an unresponsive BMS reports no fault
    assert reset_needed("replace_cells", ["persistent"]) == "service"
    assert reset_needed("hard_reset", ["persistent"]) == "service"


def test_the_report_counts_hard_resets_and_service_visits(tmp_path: Path) -> None:
    campaign, _ = load_campaign(_campaign(tmp_path, packs=10))
    base_row = {"arm": "stock", "trip_count": 0, "nuisance_trips": 0, "missed_protections": 0, "late_protections": 0}
    kinds = ["service"] * 5 + ["hard_reset"] * 3 + ["soft_reset", "none"]
    rows = [
        {**base_row, "pack": k, "final_state": "normal", "recommendation": "x", "reset_needed": v}
        for k, v in enumerate(kinds)
    ]
    line = next(ln for ln in report(campaign, rows).splitlines() if ln.startswith("| stock |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # 8 of 10 (see the Wilson test): 49.0-94.3 %.
    assert cells[6] == "8 (80.0 %, 95 % CI 49.0–94.3 %)"
    assert cells[9] == "hard_reset 3, none 1, service 5, soft_reset 1"


def test_timed_steps_split_the_runs_at_their_times() -> None:
    """Base: load, run 100 s, disconnect, run 50 s (dt 1 s). Steps at 0 s go first; at 30.4 s
    (rounded to the cycle at 30 s) the first run splits 30 + 70; one at 100 s comes after the
    disconnect, before the second run; one at 150 s (the end) is dropped."""
    base = parse_steps([{"load": {"current_a": 1}}, {"run": 100}, {"disconnect": "load"}, {"run": 50}], "t", {})
    marks = parse_steps([{"note": n} for n in ("at 0", "at 30", "at 100", "at 150")], "t", {})
    out = at_times(base, list(zip((0.0, 30.4, 100.0, 150.0), marks, strict=True)), 1.0)
    assert [(s.kind, s.value) for s in out] == [
        ("note", "at 0"),
        ("load", base[0].value),
        ("run", 30.0),
        ("note", "at 30"),
        ("run", 70.0),
        ("disconnect", "load"),
        ("note", "at 100"),
        ("run", 50.0),
    ]


def test_a_scheduler_that_cannot_be_reached_is_one_sentence(tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    path = _campaign(tmp_path, packs=1)
    result = CliRunner().invoke(
        app, ["fleet", "run", str(path), "--scheduler", "nonsense", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "cannot reach a Dask scheduler" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "o" / "results.parquet").exists()


def test_a_pack_run_that_fails_keeps_the_others_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug that makes one pack's run raise must not lose a campaign's other packs: that pack's
    row has its draws and the error, the shares count the others, and the command writes the
    results, says how many runs failed and exits 3."""
    from openbms.apps import fleet

    real = fleet.run_pack

    def pack_1_breaks(base: Path, campaign: Any, arm: Any, draw: Any, engine: str) -> dict[str, Any]:
        if draw.pack == 1:
            raise RuntimeError("boom")
        return real(base, campaign, arm, draw, engine)

    monkeypatch.setattr(fleet, "run_pack", pack_1_breaks)
    path = _campaign(tmp_path, packs=3)
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["fleet", "run", str(path), "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert "1 of 3 pack runs failed" in " ".join(result.output.split())
    pq = pytest.importorskip("pyarrow.parquet")
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert [r["pack"] for r in rows] == [0, 1, 2]
    assert rows[1]["error"] == "the run failed: RuntimeError: boom" and rows[1]["trip_count"] is None
    assert rows[1]["soc0"] is not None and all(r["trip_count"] is not None for r in (rows[0], rows[2]))
    text = (out / "report.md").read_text()
    assert "| stock | 2 |" in text and "stock, pack 1: the run failed: RuntimeError: boom" in text


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"draw": {"x\ny": 1}}, "draw.x\\ny: Extra inputs are not permitted"),
        ({"draw": {"usage": {"csv": "a\nb.csv"}}}, "a\\nb.csv: cannot read the profile"),
    ],
)
def test_a_line_break_from_the_file_stays_escaped_in_the_one_line(
    tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    with pytest.raises(CampaignError) as caught:
        load_campaign(_campaign(tmp_path, **change))
    assert "\n" not in str(caught.value) and says in str(caught.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"name": "r", "scenario": "\\ud800", "packs": 1}', "not valid Unicode"),
        ('{"name": "r", "scenario": "BASE", "packs": 1, "draw": {"usage": {"csv": "\\udc00"}}}', "not valid Unicode"),
        ("a: &a [*a, *a]\n", "an alias refers to itself"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_campaign_file_that_is_not_a_document_is_one_sentence(tmp_path: Path, text: str, says: str) -> None:
    """The campaign is read by the scenario files' own guarded reader (size, nesting, aliases, NUL,
    YAML errors) and a lone surrogate escape is refused, not an internal error."""
    path = tmp_path / "campaign.yaml"
    path.write_text(text.replace("BASE", str(BASE)))
    with pytest.raises(CampaignError, match=says) as caught:
        load_campaign(path)
    assert "\n" not in str(caught.value)
