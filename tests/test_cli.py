"""The `openbms` command as a user meets it: exit codes, JSON, output files, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from openbms.cli import app

FILES = Path(__file__).parent / "scenario" / "files"
runner = CliRunner()


def test_simulate_passing_scenario_exits_0_and_prints_a_summary() -> None:
    result = runner.invoke(app, ["simulate", str(FILES / "short.yaml")])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output
    assert "Final: state normal" in result.output


def test_simulate_json_has_the_documented_fields() -> None:
    result = runner.invoke(app, ["simulate", "--json", str(FILES / "short.yaml")])
    assert result.exit_code == 0
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["name"] == "Short test scenario"
    assert doc["passed"] is True
    assert {"index", "ok", "message"} <= set(doc["expectations"][0])
    for key in ("state", "faults", "charge_fet", "discharge_fet", "soc", "cell_v", "pack_v"):
        assert key in doc["final"]
    assert len(doc["final"]["cell_v"]) == 4
    assert isinstance(doc["events"], list)


def test_failed_expectation_exits_1_and_says_which_where_and_what() -> None:
    result = runner.invoke(app, ["simulate", "--json", str(FILES / "failing.yaml")])
    assert result.exit_code == 1
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["passed"] is False
    failed = [e for e in doc["expectations"] if not e["ok"]]
    assert len(failed) == 1
    assert "line 5" in failed[0]["message"] and "state is normal, expected protected" in failed[0]["message"]


def test_invalid_file_exits_2_before_running_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntimeline:\n  - run: forever\n")
    result = runner.invoke(app, ["simulate", str(FILES / "short.yaml"), str(bad)])
    assert result.exit_code == 2
    assert "line 3" in result.output and "timeline.0.run" in result.output
    assert "PASSED" not in result.output  # the valid first file was not run either


def test_out_writes_telemetry_events_result_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["simulate", str(FILES / "short.yaml"), "--out", str(out), "--every", "1s"])
    assert result.exit_code == 0, result.output
    header, *rows = (out / "telemetry.csv").read_text().splitlines()
    columns = header.split(",")
    assert columns[:7] == ["t_s", "pack_v", "current_a", "soc", "state", "charge_fet", "discharge_fet"]
    assert columns[7:11] == [f"cell_v_{i}" for i in range(1, 5)]
    assert columns[11:] == [f"cell_t_c_{i}" for i in range(1, 5)]
    assert len(rows) == 6  # t = 0 … 5 s at --every 1s
    assert rows[-1].split(",")[4] == "normal"
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert all("t_s" in e and "kind" in e for e in events)
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "result.json").read_text())["passed"] is True
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_errors_are_one_sentence_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "openbms.cli", "simulate", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "cannot read the file" in proc.stderr


def test_bad_every_option_exits_2() -> None:
    result = runner.invoke(app, ["simulate", str(FILES / "short.yaml"), "--every", "often"])
    assert result.exit_code == 2
