"""``openbms replay``: logged measurements fed to the brain alone.

Oracles: the twin run that made the sample log (its own trips, in ``sample-log.trips.json``);
the log's own numbers read by hand (when the lowest cell first reached a threshold); hand-made
logs with known faults in them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from openbms.cli import app
from openbms.scenario.replay import Arm, ReplayError, read_log, replay

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
