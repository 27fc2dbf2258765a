"""``openbms replay``: logged measurements fed to the brain alone.

Oracles: the twin run that made the sample log (its own trips, in ``sample-log.trips.json``);
the log's own numbers read by hand (when the lowest cell first reached a threshold); hand-made
logs with known faults in them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from openbms.cli import app
from openbms.scenario.replay import (
    Arm,
    Log,
    PackSpec,
    ReplayError,
    group_by_clock,
    read_log,
    replay,
    replay_batch,
    replay_files,
)

SAMPLE = Path(__file__).resolve().parents[2] / "scenarios" / "replay" / "sample-log.csv"
TWIN_TRIPS = json.loads(SAMPLE.with_name("sample-log.trips.json").read_text())


def test_replaying_the_twin_s_log_gives_the_twin_s_trips_at_the_same_times() -> None:
    result = replay(read_log(SAMPLE), Arm("same", "lfp", {}), "lfp", 20.0)
    assert result.trips == [(t["t_s"], t["fault"]) for t in TWIN_TRIPS]


def test_a_higher_under_voltage_limit_trips_when_the_log_says_it_should() -> None:
    log = read_log(SAMPLE)
    result = replay(log, Arm("2.8 V", "lfp", {"protections.cell_undervoltage.trip_v": 2.8}), "lfp", 20.0)
    (trip,) = [t for t, f in result.trips if f == "cell_undervoltage"]
    # By hand from the log: the first row whose lowest cell is at or below 2.8 V, and the
    # profile's 2 s trip delay (rows are 1 s apart: the trip is 2 rows later, the condition held).
    below = log.t_s[np.nanmin(log.cell_v, axis=1) <= 2.8]
    assert trip == pytest.approx(float(below[0]) + 2.0, abs=1.0)
    assert trip < next(t["t_s"] for t in TWIN_TRIPS if t["fault"] == "cell_undervoltage")


def test_bad_rows_and_gaps_are_skipped_and_reported(tmp_path: Path) -> None:
    rows = ["t_s,current_a,cell_v_1,cell_v_2,cell_t_c_1"]
    rows += [f"{t},-5,3.30,3.31,25" for t in range(0, 10)]
    rows += ["10,-5,three,3.31,25", "11,-5,3.30", "9,-5,3.30,3.31,25"]  # text, too short, time going back
    rows += [f"{t},-5,3.30,3.31," for t in range(100, 105)]  # a gap of 91 s; the sensor unread
    path = tmp_path / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    log = read_log(path)
    assert len(log.t_s) == 15
    assert [s.split(":")[0] for s in log.skipped] == ["line 12", "line 13", "line 14"]
    assert log.gaps == ["91 s without a row after t=9 s"]
    result = replay(log, Arm("a", "lfp", {}), "lfp", 10.0)
    assert ("sensor_fault" in {f for _, f in result.trips}) or result.final_state != "normal", (
        "an unread temperature is a sensor fault that opens the FETs"
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("t_s,current_a\n1,2\n", "lacks cell_v_1"),
        ("t_s,current_a,cell_v_1,cell_t_c_1\n1,0,3.3,25\n", "fewer than two readable rows"),
    ],
)
def test_a_log_that_cannot_be_replayed_is_one_sentence(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ReplayError, match=says):
        read_log(path)
    result = CliRunner().invoke(app, ["replay", str(path)])
    assert result.exit_code == 2 and says in " ".join(result.output.split()) and "Traceback" not in result.output


def test_the_command_compares_two_settings_in_json() -> None:
    against = "protections.cell_undervoltage.trip_v=2.8"
    result = CliRunner().invoke(app, ["replay", str(SAMPLE), "--capacity-ah", "20", "--against", against, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    same, against = doc["arms"]
    assert [(t["t_s"], t["fault"]) for t in same["trips"]] == [(t["t_s"], t["fault"]) for t in TWIN_TRIPS]
    assert against["overrides"] == {"protections.cell_undervoltage.trip_v": 2.8}


def test_bad_settings_are_one_sentence() -> None:
    runner = CliRunner()
    for args, says in [
        (["--set", "nonsense"], "use key=value"),
        (["--set", "protections.cell_undervoltage.trip_v=-3"], "settings"),
        (["--capacity-ah", "0"], "--capacity-ah"),
        (["--soc", "2"], "--soc"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "two"], "--workers"),
    ]:
        result = runner.invoke(app, ["replay", str(SAMPLE), *args])
        assert result.exit_code == 2 and says in " ".join(result.output.split()), (args, result.output)


def test_a_parquet_log_replays_like_its_csv(tmp_path: Path) -> None:
    """The same measurements as Parquet (written here by pyarrow from the CSV) give the same trips."""
    pa_csv = pytest.importorskip("pyarrow.csv")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "sample-log.parquet"
    pq.write_table(pa_csv.read_csv(SAMPLE), path)
    result = replay(read_log(path), Arm("same", "lfp", {}), "lfp", 20.0)
    assert result.trips == [(t["t_s"], t["fault"]) for t in TWIN_TRIPS]
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(ReplayError, match="cannot read the Parquet log"):
        read_log(broken)


# ---------------------------------------------------------------- many logs, batched on one brain
# Oracle: the twin runs the logs are made from. Each run is a small 4S pack for a few minutes at
# dt 1 s, under a different load, charge, temperature or state of charge; its log is what its brain
# was given each cycle (full precision), its trips are the twin's own fault events.
TWIN_RUNS = {
    "flat": ("soc: 0.05", "- load: {current_a: 20}"),
    "overcurrent": ("soc: 0.5", "- load: {current_a: 35}"),
    "hot": ("soc: 0.5, temperature_c: 61", "- load: {current_a: 10}"),
    "quiet": ("soc: 0.6", "- load: {current_a: 5}"),
    "full": ("soc: 0.97", "- charger: {voltage_v: 14.8, current_a: 18}"),
}


def _twin_log(folder: Path, name: str, pack: str, action: str, run: str = "4min") -> tuple[Path, list[tuple]]:
    """Run the twin on a small scenario; write its brain's inputs as a log; return the twin's trips."""
    log, events = _twin_run(folder, name, pack, action, run)
    return log, [(e.t_s, e.fields["fault"]) for e in events if e.kind == "fault_set"]


def _twin_run(folder: Path, name: str, pack: str, action: str, run: str) -> tuple[Path, list[Any]]:
    """Run the twin on a small scenario; write its brain's inputs as a log; return its events."""
    from openbms.scenario.runner import ScenarioRunner
    from openbms.scenario.schema import load_scenario

    source = folder / f"{name}.yaml"
    source.write_text(
        f"name: {name}\npack: {{chemistry: lfp, series: 4, capacity_ah: 20, {pack}, spread: {{soc: 0.01, seed: 3}}}}\n"
        f"bms: {{profile: lfp}}\ndt: 1s\ntimeline:\n  {action}\n  - run: {run}\n"
    )
    runner = ScenarioRunner(*load_scenario(source), engine="reference")
    rows = []

    def record(t_s: float) -> None:
        m = runner.twin.last_measurements
        rows.append(
            [t_s, m.current_a[0], m.stack_v[0], m.fet_t_c[0], int(m.charger_present[0]), int(m.load_present[0])]
            + list(m.cell_v[0])
            + list(m.cell_t_c[0])
        )

    record(0.0)  # the twin's brain boots on the pack at rest, at t=0, before the first step
    for t_s in runner.cycles():
        record(t_s)
    header = "t_s,current_a,stack_v,fet_t_c,charger_present,load_present,"
    header += ",".join([f"cell_v_{i}" for i in range(1, 5)] + [f"cell_t_c_{i}" for i in range(1, 5)])
    log = folder / f"{name}.csv"
    log.write_text(header + "\n" + "\n".join(",".join(repr(float(x)) for x in row) for row in rows) + "\n")
    return log, list(runner.twin.events)


def test_replay_gives_the_twin_run_s_warnings_and_balancing(tmp_path: Path) -> None:
    """A 4S pack at 90 % with a 4 % SOC spread on a 14.2 V charger: the twin's brain bleeds cells
    1, 3 and 4 from 2 s to the end (20 min), warns of over-voltage at 127 s and trips at 133 s. The
    replayed log gives the same warnings at the same times, and the balancing the twin's own
    balancing events add up to (each lasts to the next, the last to the end of the run)."""
    log, events = _twin_run(tmp_path, "top", "soc: 0.9", "- charger: {voltage_v: 14.2, current_a: 10}", "20min")
    (result,) = replay_files([log], [Arm("same", "lfp", {})], PackSpec("lfp", 20.0))[0].results
    assert result.warnings == [(e.t_s, e.fields["warning"]) for e in events if e.kind == "warning"]
    changes = [(e.t_s, e.fields["cells"]) for e in events if e.kind == "balancing"]
    ends = [t for t, _ in changes[1:]] + [1200.0]
    bled_s = sum(end - t for (t, cells), end in zip(changes, ends, strict=True) if cells)
    cells = sorted({c for _, now in changes for c in now})
    assert result.balancing() == (bled_s, cells)
    assert cells and bled_s > 600 and result.warnings  # the run is worth comparing


@pytest.fixture(scope="module")
def twin_logs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, list[tuple]]]:
    """The runs above (one clock), a run of another length (another clock), and the first run's
    log moved a day later (the same clock, another time base: its trips a day later too)."""
    folder = tmp_path_factory.mktemp("twin-logs")
    logs = [_twin_log(folder, name, pack, action) for name, (pack, action) in TWIN_RUNS.items()]
    logs.append(_twin_log(folder, "longer", *TWIN_RUNS["flat"], run="5min"))
    flat, flat_trips = logs[0]
    later = folder / "flat-a-day-later.csv"
    header, *rows = flat.read_text().splitlines()
    later.write_text(
        "\n".join([header] + [f"{float(r.split(',', 1)[0]) + 86400.0!r},{r.split(',', 1)[1]}" for r in rows])
    )
    logs.append((later, [(t + 86400.0, f) for t, f in flat_trips]))
    return logs


def test_logs_replayed_together_each_give_their_own_twin_run_s_trips(twin_logs: list[tuple[Path, list]]) -> None:
    paths = [path for path, _ in twin_logs]
    outcomes = replay_files(paths, [Arm("same", "lfp", {})], PackSpec("lfp", 20.0))
    assert [o.path for o in outcomes] == [str(p) for p in paths]
    for (path, twin_trips), outcome in zip(twin_logs, outcomes, strict=True):
        assert outcome.error is None
        assert outcome.results[0].trips == twin_trips, path.name
    # The runs are worth comparing: several faults among them and a run without any.
    faults = {f for _, trips in twin_logs for _, f in trips}
    assert {"cell_undervoltage", "discharge_overcurrent", "discharge_overtemperature", "cell_overvoltage"} <= faults
    assert any(not trips for _, trips in twin_logs)
    # And they were batched: the runs of one length and the moved copy on one brain, the longer one alone.
    assert sorted(map(len, group_by_clock([o.log for o in outcomes if o.log is not None]))) == [1, 6]


def _noisy_sample_copies(count: int, rows: int) -> list[Log]:
    """The sample log's first rows with a few mV of noise per copy (a seed each) and a time offset:
    warnings and trips that begin on noise, near the thresholds."""
    sample = read_log(SAMPLE)
    columns = ("t_s", "current_a", "cell_v", "cell_t_c", "stack_v", "fet_t_c", "charger_present", "load_present")
    first = replace(sample, **{name: getattr(sample, name)[:rows] for name in columns})
    copies = []
    for seed in range(count):
        noise = np.random.default_rng(seed).normal(0.0, 0.003, first.cell_v.shape)
        copies.append(replace(first, path=f"noisy-{seed}", t_s=first.t_s + 1000.0 * seed, cell_v=first.cell_v + noise))
    return copies


def test_batched_is_replaying_each_log_alone(twin_logs: list[tuple[Path, list]]) -> None:
    """Oracle: each log replayed on a brain of its own. Every event (same time, in the log's own
    time base), the final state and SOC are equal, whatever the batch and the number of workers."""
    logs = [read_log(path) for path, _ in twin_logs]
    noisy = _noisy_sample_copies(3, 700)
    arm = Arm("2.8 V", "lfp", {"protections.cell_undervoltage.trip_v": 2.8})
    alone = [replay(log, arm, "lfp", 20.0) for log in logs + noisy]
    together = replay_batch(logs[:5] + logs[6:], arm, PackSpec("lfp", 20.0))
    together.insert(5, replay_batch([logs[5]], arm, PackSpec("lfp", 20.0))[0])
    together += replay_batch(noisy, arm, PackSpec("lfp", 20.0))
    for one, batched in zip(alone, together, strict=True):
        assert (batched.events, batched.final_state, batched.final_soc) == (one.events, one.final_state, one.final_soc)
    assert any(e["kind"] == "warning" for r in alone[-3:] for e in r.events)
    paths = [path for path, _ in twin_logs]
    two_workers = replay_files(paths, [arm], PackSpec("lfp", 20.0), workers=2)
    for one, outcome in zip(alone[: len(paths)], two_workers, strict=True):
        assert (outcome.results[0].events, outcome.results[0].final_soc) == (one.events, one.final_soc)


def test_many_logs_one_unreadable_the_others_reported_and_summed_up(
    twin_logs: list[tuple[Path, list]], tmp_path: Path
) -> None:
    """A log that does not exist is one sentence and exit code 2; the others' documents come in the
    order given, then a summary whose counts are the twin runs' (oracle: their own trips)."""
    paths = [str(path) for path, _ in twin_logs]
    missing = str(tmp_path / "no-such-log.csv")
    args = ["replay", paths[0], missing, *paths[1:], "--capacity-ah", "20", "--json", "--workers", "2"]
    result = CliRunner().invoke(app, [*args, "--against", "protections.cell_undervoltage.trip_v=2.8"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"cannot read the log {missing}: No such file or directory" in " ".join(result.output.split())
    docs = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    *per_log, summary = docs
    assert [d["log"] for d in per_log] == paths
    for doc, (_, twin_trips) in zip(per_log, twin_logs, strict=True):
        assert [(t["t_s"], t["fault"]) for t in doc["arms"][0]["trips"]] == twin_trips
    same = summary["summary"]["arms"][0]
    assert summary["summary"]["failed"] == [missing] and summary["summary"]["logs"] == len(paths) + 1
    assert same["tripped"] == sum(bool(trips) for _, trips in twin_logs)
    faults = {f for _, trips in twin_logs for _, f in trips}
    assert same["by_fault"] == {f: sum(f in {g for _, g in trips} for _, trips in twin_logs) for f in sorted(faults)}


def test_a_replay_that_fails_keeps_the_other_logs_results(
    twin_logs: list[tuple[Path, list]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that makes one brain's replay raise must not lose the other logs: the logs of that
    brain say the replay failed, the others are printed with their twin runs' trips, and the
    command exits 3 (not 2: the logs were fine)."""
    from openbms.scenario import replay as replay_module

    real = replay_module.replay_batch
    longer = str(twin_logs[5][0])  # the log of another length: a brain of its own

    def breaks_on_longer(logs: Any, arm: Any, spec: Any) -> Any:
        if any(log.path == longer for log in logs):
            raise RuntimeError("boom")
        return real(logs, arm, spec)

    monkeypatch.setattr(replay_module, "replay_batch", breaks_on_longer)
    paths = [str(path) for path, _ in twin_logs]
    result = CliRunner().invoke(app, ["replay", *paths, "--capacity-ah", "20", "--json"])
    assert result.exit_code == 3, result.output
    assert f"{longer}: the replay failed: RuntimeError: boom" in " ".join(result.output.split())
    docs = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    *per_log, summary = docs
    assert [d["log"] for d in per_log] == [p for p in paths if p != longer]
    for doc, (path, twin_trips) in zip(per_log, [t for t in twin_logs if str(t[0]) != longer], strict=True):
        assert [(t["t_s"], t["fault"]) for t in doc["arms"][0]["trips"]] == twin_trips, path
    assert summary["summary"]["failed"] == [longer]
