"""A real board's recorded history (`monitor --record FILE`, `diagnose --history FILE`): a board that
goes silent after a recorded low-voltage cut-off gets soft-reset advice; silence alone, or a cut-off
the charger cleared before the silence, does not. The file survives restarts and kills, refuses to
overwrite someone else's database, and stays small."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from openbms.cli import app
from openbms.devices.history import HistoryError, HistoryRecorder, load_history
from openbms.devices.model import DeviceReading
from openbms.devices.reader import Poll
from openbms.diagnose.engine import diagnose
from openbms.diagnose.from_device import snapshot_from_reading
from tests.devices.emulated import HUNG, emulated_port
from tests.devices.test_cli_devices import assert_refused, run

# A 4S 5 Ah pack at 3 % under a 3 A load: cell_undervoltage trips at about t=160 s and the board
# sleeps sleep.delay_s (300 s) later, then stays silent — with the profile's current noise on
# (σ 0.05 A against a 0.1 A rest current: single samples above it must not keep it awake).
CUT_OFF = """\
name: cut off, then asleep
pack: {series: 4, capacity_ah: 5, soc: 0.03}
timeline:
  - load: {current_a: 3}
  - run: 2h
"""


@pytest.fixture
def cut_off_port(tmp_path: Path) -> Iterator[str]:
    yield from emulated_port(tmp_path, CUT_OFF, speed=200.0)


@pytest.fixture
def hung_port(tmp_path: Path) -> Iterator[str]:
    yield from emulated_port(tmp_path, HUNG)


def _monitor(device: str, record: Path, count: int) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        app,
        ["monitor", "--device", device, "--record", str(record), "--interval", "0.2s", "--count", str(count), "--json"],
    )
    assert result.exit_code in (0, 1), result.output
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


def _diagnose_json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["diagnose", *args, "--json"])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return doc


def _reading(faults: list[str] | None = None, series: int = 4, cell_v: float = 3.3) -> DeviceReading:
    return DeviceReading(
        protocol="jbd",
        cell_v=[cell_v] * series,
        temperature_c=[25.0, 25.1],
        fet_temperature_c=30.0,
        current_a=-2.5,
        pack_v=cell_v * series,
        soc=0.5,
        charge_fet=True,
        discharge_fet=not faults,
        faults=faults or [],
    )


SILENT = Poll(None, "comm_error: no answer")


# ----------------------------------------------------------------------------- against the emulator
def test_a_board_silent_after_a_recorded_cut_off_gets_soft_reset_advice(cut_off_port: str, tmp_path: Path) -> None:
    device, record = f"jbd:{cut_off_port}", tmp_path / "battery.db"
    polls: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while not (polls and polls[-1]["ok"] is False) and time.monotonic() < deadline:
        polls += _monitor(device, record, 5)  # one monitor run after another: one history
    assert polls[-1]["ok"] is False, "the emulated board never went silent"
    assert any("cell_undervoltage" in p["faults"] for p in polls if p["ok"])
    events = load_history(record, device)
    kinds = [(e["kind"], e.get("fault") or e.get("warning")) for e in events]
    assert ("fault_set", "cell_undervoltage") in kinds
    assert kinds[-1] == ("warning", "no_answer")
    assert kinds.count(("fault_set", "cell_undervoltage")) == 1  # not repeated by each monitor run
    assert all("t_s" in e and "time" in e for e in events)

    doc = _diagnose_json("--device", device, "--history", str(record))
    assert doc["recommendation"] == "soft_reset", doc
    texts = " ".join(r["text"] for r in doc["reasons"])
    assert "history" in texts and "cut-off" in texts

    alone = _diagnose_json("--device", device)
    assert alone["recommendation"] == "fix_root_cause"
    alone_texts = " ".join(r["text"] for r in alone["reasons"])
    assert "recorded history shows" not in alone_texts and "no history of this board was given" in alone_texts
    assert [r["source"] for r in doc["reasons"]] == ["measured", "history"]
    assert [r["source"] for r in alone["reasons"]] == ["measured", "assumed"]


def test_a_board_silent_from_the_start_gets_no_reset_from_its_history(hung_port: str, tmp_path: Path) -> None:
    device, record = f"jbd:{hung_port}", tmp_path / "battery.db"
    polls = _monitor(device, record, 2)
    assert [p["ok"] for p in polls] == [False, False]
    events = load_history(record, device)
    assert [(e["kind"], e.get("warning")) for e in events] == [("warning", "no_answer")]  # once, not per poll
    doc = _diagnose_json("--device", device, "--history", str(record))
    assert doc["recommendation"] == "fix_root_cause"
    assert "did not reply" in " ".join(r["text"] for r in doc["reasons"])


# ----------------------------------------------------------------------------- events, without a board
def _recorded(path: Path, polls: list[Poll], t0: float = 1_700_000_000.0) -> list[dict[str, Any]]:
    with HistoryRecorder(path, "jbd:/dev/ttyUSB0") as recorder:
        for i, poll in enumerate(polls):
            recorder.record(poll, t0 + 10.0 * i)
    return load_history(path, "jbd:/dev/ttyUSB0")


def test_a_cut_off_cleared_by_a_charge_before_the_silence_gets_no_reset(tmp_path: Path) -> None:
    history = _recorded(
        tmp_path / "h.db",
        [Poll(_reading()), Poll(_reading(["cell_undervoltage"], cell_v=2.45)), Poll(_reading(cell_v=3.2)), SILENT],
    )
    assert [(e["kind"], e.get("fault") or e.get("warning")) for e in history] == [
        ("fault_set", "cell_undervoltage"),
        ("fault_cleared", "cell_undervoltage"),
        ("warning", "no_answer"),
    ]
    verdict = diagnose(snapshot_from_reading(None, "comm_error: no answer", None, history))
    assert verdict.recommendation == "fix_root_cause"


def test_a_cut_off_then_silence_answer_silence_still_reads_as_a_cut_off(tmp_path: Path) -> None:
    """An answer after a silence is recorded as ``answered``, not ``wake``: it is not a recovery."""
    uv = Poll(_reading(["cell_undervoltage"], cell_v=2.45))
    history = _recorded(tmp_path / "h.db", [Poll(_reading()), uv, SILENT, SILENT, uv, SILENT])
    kinds = [e["kind"] for e in history]
    assert kinds == ["fault_set", "warning", "answered", "warning"]
    assert history[1]["detail"] == "comm_error: no answer"
    assert [e["t_s"] for e in history] == [10.0, 20.0, 40.0, 50.0]
    verdict = diagnose(snapshot_from_reading(None, "comm_error: no answer", None, history))
    assert verdict.recommendation == "soft_reset"


def test_two_recorder_sessions_on_one_file_make_one_history(tmp_path: Path) -> None:
    path, t0 = tmp_path / "h.db", 1_700_000_000.0
    with HistoryRecorder(path, "jbd:/dev/ttyUSB0") as first:
        first.record(Poll(_reading()), t0)
        first.record(Poll(_reading(["cell_undervoltage"])), t0 + 5)
        first.record(SILENT, t0 + 10)
    with HistoryRecorder(path, "jbd:/dev/ttyUSB0") as second:
        # the fault is still there: not set again; the board answers after the silence of run one
        assert second.record(Poll(_reading(["cell_undervoltage"])), t0 + 100) == [
            {"kind": "answered", "t_s": 100.0, "time": second_time(t0 + 100)}
        ]
        second.record(Poll(_reading()), t0 + 123.45)
    events = load_history(path)
    assert [(e["kind"], e["t_s"]) for e in events] == [
        ("fault_set", 5.0),
        ("warning", 10.0),
        ("answered", 100.0),
        ("fault_cleared", 123.5),
    ]


def second_time(t_unix: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t_unix).astimezone().isoformat(timespec="seconds")


def test_events_say_when_in_local_time(tmp_path: Path) -> None:
    (event,) = _recorded(tmp_path / "h.db", [SILENT])
    assert event["t_s"] == 0.0
    assert event["time"] == second_time(1_700_000_000.0)
    assert "T" in event["time"] and len(event["time"]) == len("2023-11-14T23:13:20+01:00")


def test_what_was_committed_survives_a_kill_between_polls(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    recorder = HistoryRecorder(path, "jbd:/dev/ttyUSB0")
    recorder.record(Poll(_reading(["cell_undervoltage"])), 1_700_000_000.0)
    recorder.record(SILENT, 1_700_000_001.0)
    # another process sees it while the recorder is still open (and never closed)
    assert [e["kind"] for e in load_history(path)] == ["fault_set", "warning"]
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM polls").fetchone() == (2,)
    recorder.close()


def test_a_killed_recording_process_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    code = f"""
import sys, time
from openbms.devices.history import HistoryRecorder
from openbms.devices.reader import Poll
from openbms.devices.model import DeviceReading
r = HistoryRecorder({str(path)!r}, "jbd:/dev/ttyUSB0")
r.record(Poll(DeviceReading("jbd", cell_v=[2.4] * 4, faults=["cell_undervoltage"])), 1_700_000_000.0)
r.record(Poll(None, "comm_error: no answer"), 1_700_000_001.0)
print("recorded", flush=True)
time.sleep(60)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, ["src", os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "recorded"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert [e["kind"] for e in load_history(path)] == ["fault_set", "warning"]
    with HistoryRecorder(path, "jbd:/dev/ttyUSB0") as again:  # and the next run carries on from it
        assert [e["kind"] for e in again.record(Poll(_reading()), 1_700_000_002.0)] == ["answered", "fault_cleared"]


def test_old_rows_are_pruned(tmp_path: Path) -> None:
    path, t0 = tmp_path / "h.db", 1_700_000_000.0
    with HistoryRecorder(path, "jbd:/dev/ttyUSB0", keep_s=3600) as recorder:
        recorder.record(SILENT, t0)
        recorder.record(Poll(_reading()), t0 + 1800)  # within the hour: no prune yet
        recorder.record(Poll(_reading(["cell_undervoltage"])), t0 + 7200)
    assert [e["kind"] for e in load_history(path)] == ["fault_set"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM polls").fetchone() == (1,)


def test_3600_polls_of_a_16s_pack_stay_small_and_derive_no_events(tmp_path: Path) -> None:
    path, t0 = tmp_path / "h.db", 1_700_000_000.0
    reading = DeviceReading(
        protocol="jk",
        cell_v=[3.301 + 0.001 * i for i in range(16)],
        temperature_c=[24.9, 25.3, 25.7, 26.1],
        fet_temperature_c=31.4,
        current_a=-12.34,
        pack_v=52.96,
        soc=0.734,
        charge_fet=True,
        discharge_fet=True,
    )
    with HistoryRecorder(path, "jk:/dev/ttyUSB0") as recorder:
        derived = [e for i in range(3600) for e in recorder.record(Poll(reading), t0 + i)]
    assert derived == []
    assert load_history(path) == []
    size = sum(p.stat().st_size for p in tmp_path.glob("h.db*"))
    assert size < 2_000_000, f"3,600 polls of a 16S pack take {size:,} bytes"


# ----------------------------------------------------------------------------- refusals
@pytest.fixture(params=["sqlite", "text"])
def foreign_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Someone else's file: an SQLite database of another program, or plain text."""
    path = tmp_path / "other.db"
    if request.param == "sqlite":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
            conn.execute("INSERT INTO meta VALUES ('owner', 'my accounts')")
        conn.close()
    else:
        path.write_text("my notes, not a database\n" * 100)
    return path


def test_a_file_that_is_not_an_openbms_history_is_never_written_or_read(foreign_file: Path) -> None:
    before = foreign_file.read_bytes()
    assert_refused(
        run("monitor", "--device", "jbd:/dev/openbms-no-such-port", "--record", str(foreign_file)),
        "is not an openbms history",
    )
    assert_refused(
        run("diagnose", "--device", "jbd:/dev/openbms-no-such-port", "--history", str(foreign_file)),
        "is not an openbms history",
    )
    with pytest.raises(HistoryError, match="is not an openbms history"):
        HistoryRecorder(foreign_file, "jbd:/dev/ttyUSB0")
    assert foreign_file.read_bytes() == before
    assert sorted(p.name for p in foreign_file.parent.iterdir()) == [foreign_file.name]


def test_a_missing_history_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    assert_refused(
        run("diagnose", "--device", "jbd:/dev/openbms-no-such-port", "--history", str(missing)), "does not exist"
    )
    assert not missing.exists()


def test_history_without_a_device_is_refused(tmp_path: Path) -> None:
    assert_refused(
        run("diagnose", "--state", "x.json", "--history", str(tmp_path / "h.db")), "--history goes with --device"
    )


def test_a_corrupt_history_is_refused_in_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with HistoryRecorder(path, "jbd:/dev/ttyUSB0") as recorder:
        for i in range(300):
            recorder.record(Poll(_reading(["cell_undervoltage"] if i % 2 else [])), 1_700_000_000.0 + i)
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)  # every page after the first is garbage
    path.write_bytes(bytes(data))
    with pytest.raises(HistoryError) as caught:
        load_history(path)
    assert str(caught.value).startswith(f"{path} ")
    assert_refused(run("diagnose", "--device", "jbd:/dev/openbms-no-such-port", "--history", str(path)), str(path))


def test_a_history_of_another_device_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    _recorded(path, [SILENT])
    with pytest.raises(HistoryError, match="is the history of jbd:/dev/ttyUSB0, not of jbd:/dev/ttyUSB1"):
        HistoryRecorder(path, "jbd:/dev/ttyUSB1")
    with pytest.raises(HistoryError, match="not of daly:/dev/ttyUSB0"):
        load_history(path, "daly:/dev/ttyUSB0")


def test_a_port_that_cannot_be_opened_leaves_no_empty_history_behind(tmp_path: Path) -> None:
    record = tmp_path / "battery.db"
    result = CliRunner().invoke(app, ["monitor", "--device", "jbd:/dev/ttyNOPE", "--record", str(record)])
    assert result.exit_code == 2, result.output
    assert "cannot open" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []
