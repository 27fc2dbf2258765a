"""The black box in a file (issue 8 item 8, docs/behaviour.md §7): ``--nvm FILE`` on simulate and emulate, one
writer at a time, every run marked, and a BMS that powers on from the file restores its
persistent faults instead of starting ``normal`` and overwriting them.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from openbms.bms.nvm import NonVolatileMemory, NvmError
from openbms.cli import app

ROOT = Path(__file__).parent.parent.parent
SHORT = ROOT / "tests" / "scenario" / "files" / "short.yaml"  # 4S, 5 s under a 10 A load
OPENBMS = [sys.executable, "-m", "openbms.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OPENBLAS_NUM_THREADS": "1", "COLUMNS": "400"}
cli = CliRunner()

# A 1 Ah cell with a 0.5 ohm internal short falls below 2.0 V within a minute: deep_discharge
# (persistent in the lfp profile) trips and locks the BMS.
DEEP_DISCHARGE = """
name: deep discharge
pack: {chemistry: lfp, series: 4, parallel: 1, capacity_ah: 1, soc: 0.05, temperature_c: 25}
bms: {profile: lfp}
dt: 1s
timeline:
  - inject: {fault: cell_internal_short, cell: 2, resistance_ohm: 0.5}
  - run_until: {faults: [deep_discharge], timeout: 30min}
  - expect: {state: locked, events: [{kind: fault_set, fault: deep_discharge, class: persistent}]}
"""
# The same board the next day: the cells are healthy and half full, so nothing but the memory
# could lock it. The first expect is checked after the first control cycle (t = 0). The charge
# FET stays on for the 0.05 C recovery charge deep_discharge allows (0.05 A for 1 Ah).
NEXT_DAY = """
name: the next day
pack: {chemistry: lfp, series: 4, parallel: 1, capacity_ah: 1, soc: 0.5, temperature_c: 25}
bms: {profile: lfp}
dt: 1s
timeline:
  - expect: {state: locked, faults: [deep_discharge], discharge_fet: off}
  - run: 5s
  - expect: {state: locked, faults: [deep_discharge]}
"""


def read_only(db: Path, query: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_a_persistent_fault_is_active_from_the_first_cycle_of_the_next_run(tmp_path: Path) -> None:
    db = tmp_path / "bms.db"
    (tmp_path / "dd.yaml").write_text(DEEP_DISCHARGE)
    (tmp_path / "next.yaml").write_text(NEXT_DAY)
    first = cli.invoke(app, ["simulate", str(tmp_path / "dd.yaml"), "--nvm", str(db)])
    assert first.exit_code == 0, first.output
    out = tmp_path / "out"
    second = cli.invoke(
        app, ["simulate", str(tmp_path / "next.yaml"), "--nvm", str(db), "--json", "--out", str(out), "--every", "1s"]
    )
    assert second.exit_code == 0, second.output
    doc = json.loads(second.stdout.strip().splitlines()[-1])
    assert [e["ok"] for e in doc["expectations"]] == [True, True], doc["expectations"]
    assert doc["final"]["charge_current_limit_a"] == 0.05 and doc["final"]["discharge_current_limit_a"] == 0
    rows = (out / "telemetry.csv").read_text().splitlines()[1:]
    assert len(rows) == 6 and rows[0].split(",")[:1] == ["0.000"]  # t = 0 … 5 s
    assert {r.split(",")[4] for r in rows} == {"locked"}  # from the very first row
    # The fault is still in the file afterwards (the first save wrote it back, not a clean slate).
    (snapshot,) = read_only(db, "SELECT snapshot FROM persistent WHERE pack = 0")[0]
    assert "deep_discharge" in json.loads(snapshot)["persistent_faults"]
    # The second run logged the power-on that kept it.
    events = read_only(db, "SELECT run, kind, fields FROM events ORDER BY id")
    kept = [json.loads(f) for run, kind, f in events if run == 2 and kind == "fault_persisted_after_reset"]
    assert {"fault": "deep_discharge", "method": "power_on"} in kept


def test_every_run_is_marked_and_each_event_belongs_to_one(tmp_path: Path) -> None:
    db = tmp_path / "bms.db"
    (tmp_path / "dd.yaml").write_text(DEEP_DISCHARGE)
    # Two scenarios in one command (one board), then a third run in another command.
    assert cli.invoke(app, ["simulate", str(tmp_path / "dd.yaml"), str(SHORT), "--nvm", str(db)]).exit_code in (0, 1)
    assert cli.invoke(app, ["simulate", str(SHORT), "--nvm", str(db)]).exit_code in (0, 1)
    nvm = NonVolatileMemory(db)
    try:
        runs, events = nvm.runs(), nvm.events()
    finally:
        nvm.close()
    assert [r["label"] for r in runs] == ["deep discharge", "Short test scenario", "Short test scenario"]
    assert [r["run"] for r in runs] == [1, 2, 3]
    assert all(r["pid"] == os.getpid() and r["started_utc"].endswith("+00:00") for r in runs)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))  # still gap-free
    # Each run's events are the ids from its first_event up to the next run's.
    bounds = [r["first_event"] for r in runs] + [len(events) + 1]
    for k, run in enumerate(runs):
        mine = [e["id"] for e in events if e["run"] == run["run"]]
        assert mine == list(range(bounds[k], bounds[k + 1])), run
        assert mine, f"run {run['run']} logged nothing"
    # Time restarts with every run: without the marks the log would go backwards unexplained.
    assert events[bounds[1] - 1]["t_s"] < events[bounds[1] - 2]["t_s"]


def test_a_memory_of_another_pack_is_refused_in_one_sentence(tmp_path: Path) -> None:
    db = tmp_path / "bms.db"
    sixteen = tmp_path / "16s.yaml"
    sixteen.write_text(SHORT.read_text().replace("series: 4", "series: 16").replace("cell_v: [3.0, 3.4], ", ""))
    assert cli.invoke(app, ["simulate", str(SHORT), "--nvm", str(db)]).exit_code == 0
    result = cli.invoke(app, ["simulate", str(sixteen), "--nvm", str(db)])
    assert result.exit_code == 2
    assert "remembers pack 1 with 4 cells, but this pack has 16" in result.output
    assert "Traceback" not in result.output


def test_a_second_writer_is_refused_and_a_killed_writer_leaves_no_lock(tmp_path: Path) -> None:
    db = tmp_path / "bms.db"
    first = subprocess.Popen(
        [*OPENBMS, "emulate", str(SHORT), "--tcp", "0", "--speed", "4", "--nvm", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline().startswith("socket://"), first.stderr.read() if first.stderr else ""
        time.sleep(0.3)  # let it write a few cycles
        second = subprocess.run(
            [*OPENBMS, "simulate", str(SHORT), "--nvm", str(db)], capture_output=True, text=True, env=ENV, timeout=60
        )
        assert second.returncode == 2, second.stderr
        message = second.stderr.strip()
        assert "Traceback" not in message and len(message.splitlines()) == 1, message
        assert str(db) in message and f"in use by process {first.pid}" in message
        with pytest.raises(NvmError, match="one process writes it at a time"):
            NonVolatileMemory(db)  # the same refusal for the API
        emulate_again = subprocess.run(
            [*OPENBMS, "emulate", str(SHORT), "--tcp", "0", "--linger", "0s", "--nvm", str(db)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )
        assert emulate_again.returncode == 2 and "in use by process" in emulate_again.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    # The kernel dropped the killed writer's lock: the next one gets in, and both runs are marked.
    third = subprocess.run(
        [*OPENBMS, "simulate", str(SHORT), "--nvm", str(db), "--json"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert third.returncode == 0, third.stderr
    runs = read_only(db, "SELECT id, label, pid FROM runs ORDER BY id")
    assert [(r[0], r[1]) for r in runs] == [(1, "Short test scenario"), (2, "Short test scenario")]
    assert runs[0][2] == first.pid and runs[1][2] != first.pid
    ids = [r[0] for r in read_only(db, "SELECT id FROM events ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1))
    assert {r[0] for r in read_only(db, "SELECT DISTINCT run FROM events")} == {1, 2}
