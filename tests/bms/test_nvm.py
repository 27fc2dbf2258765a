"""The non-volatile memory keeps what docs/behaviour.md §7 promises (and issue 3 item 7 asks us to prove).

- Unit: gap-free ids across appends and reopenings, atomic appends, WAL with synchronous=FULL,
  snapshots that round-trip, clear errors.
- ``kill -9`` of a writing process at random points, 64 times, most of them on a database a killed
  writer left behind: the file is intact, ids stay gap-free, no committed event is lost and no
  transaction is half-written.
- Through the twin and a scenario file: the event log and the persistent values survive a soft
  reset, an incomplete hard reset and a full hard reset.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openbms.bms.events import EVENT_KINDS, Event
from openbms.bms.nvm import NonVolatileMemory, NvmError
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

CHILD = Path(__file__).with_name("nvm_child.py")
MARKER = "nvm_kill_test_batch"  # the child's marker events (see nvm_child.py)
SNAPSHOT_KEYS = {
    "persistent_faults",
    "active_faults",
    "soc",
    "soc_uncertain",
    "capacity_ah",
    "soh",
    "cell_v",
    "counters",
    "reset_counts",
    "failed_cells",
    "afe_damaged",
}


def warning(t_s: float, n: int, pack: int = 0) -> Event:
    return Event(t_s, pack, "warning", {"warning": "test", "n": n})


def raw_rows(path: Path) -> list[tuple[Any, ...]]:
    """The events table as stored, read past the module under test (read-only)."""
    con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT id, pack, typeof(pack), t_s, typeof(t_s), kind, fields FROM events ORDER BY id"
        ).fetchall()
    finally:
        con.close()


# ---------------------------------------------------------------------------------- unit


def test_ids_are_gap_free_across_many_appends_and_reopenings(tmp_path: Path) -> None:
    path = tmp_path / "nvm.db"
    rng = random.Random(3)
    expected: list[int] = []
    n = 0
    for _opening in range(5):
        nvm = NonVolatileMemory(path)
        assert [e["id"] for e in nvm.events()] == expected  # everything from before is still there
        for _ in range(40):
            size = rng.choice([0, 1, 1, 2, 5, 17])
            ids = nvm.append(warning(float(n + k), n + k) for k in range(size))
            assert ids == list(range(len(expected) + 1, len(expected) + size + 1))
            expected += ids
            n += size
        nvm.close()
    nvm = NonVolatileMemory(path)
    events = nvm.events()
    nvm.close()
    assert [e["id"] for e in events] == list(range(1, n + 1))
    assert [e["n"] for e in events] == list(range(n))  # in the order they were appended
    assert [r[0] for r in raw_rows(path)] == list(range(1, n + 1))


def test_events_keep_every_field_and_filter_by_pack(tmp_path: Path) -> None:
    nvm = NonVolatileMemory(tmp_path / "nvm.db")
    fields = {"fault": "short_circuit", "class": "load-removal", "value": np.float64(7.5), "cells": [3]}
    nvm.append([Event(1.25, 0, "fault_set", fields), Event(2.0, 1, "reset", {"method": "hard"})])
    nvm.append([Event(3.0, 1, "wake", {"by": "button", "count": np.int64(2), "ok": np.bool_(True)})])
    assert nvm.events(0) == [
        {"id": 1, "pack": 0, "t_s": 1.25, "kind": "fault_set", "run": 1, **fields, "value": 7.5},
    ]
    assert nvm.events(1) == [
        {"id": 2, "pack": 1, "t_s": 2.0, "kind": "reset", "run": 1, "method": "hard"},
        {"id": 3, "pack": 1, "t_s": 3.0, "kind": "wake", "run": 1, "by": "button", "count": 2, "ok": True},
    ]
    assert [e["id"] for e in nvm.events()] == [1, 2, 3]
    assert nvm.events(5) == []
    assert nvm.append([]) == []  # nothing to write takes no id
    assert nvm.append([warning(4.0, 0)]) == [4]
    nvm.close()


def test_a_failing_append_writes_nothing_and_the_ids_continue(tmp_path: Path) -> None:
    """A row that SQLite refuses in the middle of a batch (kind NULL) rolls the whole batch back."""
    path = tmp_path / "nvm.db"
    nvm = NonVolatileMemory(path)
    assert nvm.append([warning(0.0, 0), warning(1.0, 1)]) == [1, 2]
    batch = [warning(2.0, 2), warning(3.0, 3), Event(4.0, 0, None, {}), warning(5.0, 5)]  # type: ignore[arg-type]
    with pytest.raises(NvmError, match=re.escape(str(path))):
        nvm.append(batch)
    assert [e["id"] for e in nvm.events()] == [1, 2]
    assert nvm.append([warning(6.0, 6)]) == [3]  # no id was burnt, the connection still works
    nvm.close()
    assert [(r[0], json.loads(r[6])["n"]) for r in raw_rows(path)] == [(1, 0), (2, 1), (3, 6)]


@pytest.mark.parametrize("what", ["append_nan", "append_inf", "append_object", "save_nan"])
def test_fields_that_cannot_be_stored_raise_nvm_error_and_write_nothing(tmp_path: Path, what: str) -> None:
    path = tmp_path / "nvm.db"
    nvm = NonVolatileMemory(path)
    assert nvm.append([warning(0.0, 0)]) == [1]
    nvm.save({0: {"soc": [0.5], "counters": {"charge_ah": 1.0}}}, 1.0)
    bad: Any = {
        "append_nan": math.nan,
        "append_inf": math.inf,
        "append_object": object(),
        "save_nan": math.nan,
    }[what]
    with pytest.raises(NvmError, match=re.escape(str(path))):
        if what.startswith("append"):
            nvm.append([warning(2.0, 2), Event(3.0, 0, "warning", {"warning": "x", "value": bad})])
        else:
            nvm.save({0: {"soc": [bad], "counters": {"charge_ah": 2.0}}}, 3.0)
    assert [e["id"] for e in nvm.events()] == [1]
    assert nvm.load(0) == {"soc": [0.5], "counters": {"charge_ah": 1.0}}
    assert nvm.append([warning(4.0, 4)]) == [2]
    nvm.close()


@pytest.mark.parametrize("pack, t_s", [(np.int64(1), 2.5), (1, np.float32(2.5))], ids=["pack", "t_s"])
def test_numpy_pack_numbers_and_times_are_stored_as_numbers(tmp_path: Path, pack: Any, t_s: Any) -> None:
    path = tmp_path / "nvm.db"
    nvm = NonVolatileMemory(path)
    nvm.append([Event(t_s, pack, "warning", {"warning": "x"})])
    found = nvm.events(1)
    nvm.close()
    assert [(e["id"], e["pack"], e["t_s"]) for e in found] == [(1, 1, 2.5)]
    assert raw_rows(path)[0][2:5:2] == ("integer", "real")


def test_a_file_database_is_wal_with_synchronous_full(tmp_path: Path) -> None:
    path = tmp_path / "nvm.db"
    nvm = NonVolatileMemory(path)
    db = nvm._db  # synchronous is a per-connection setting: only the module's own connection shows it
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    nvm.append([warning(0.0, 0)])
    assert (tmp_path / "nvm.db-wal").exists()
    nvm.close()
    nvm = NonVolatileMemory(path)  # reopened: still WAL and FULL
    assert nvm._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert nvm._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    nvm.close()
    con = sqlite3.connect(path)  # WAL is a property of the file, whoever opens it
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_snapshots_round_trip_replace_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nvm.db"
    nvm = NonVolatileMemory(path)
    assert nvm.load(0) is None
    first = {
        "persistent_faults": ["deep_discharge"],
        "soc": [0.5, None, 0.25],
        "soc_uncertain": True,
        "capacity_ah": 98.5,
        "counters": {"charge_ah": 1.5, "cycles": 0.25},
        "reset_counts": {"soft": 1, "hard": np.int64(2)},
        "afe_damaged": np.bool_(False),
    }
    nvm.save({0: first, 3: {"soc": [0.1]}}, 10.0)
    plain = {**first, "reset_counts": {"soft": 1, "hard": 2}, "afe_damaged": False}
    assert nvm.load(0) == plain
    assert nvm.load(3) == {"soc": [0.1]}
    nvm.save({3: {"soc": [0.2]}}, 70.0)  # replaces pack 3's snapshot, leaves pack 0's alone
    nvm.save({}, 80.0)
    assert nvm.load(3) == {"soc": [0.2]}
    assert nvm.load(0) == plain
    assert nvm.load(1) is None and nvm.load(4) is None
    nvm.close()
    nvm = NonVolatileMemory(path)
    assert nvm.load(0) == plain and nvm.load(3) == {"soc": [0.2]} and nvm.load(7) is None
    nvm.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT pack, t_s FROM persistent ORDER BY pack").fetchall() == [(0, 10.0), (3, 70.0)]
    con.close()


@pytest.mark.parametrize("where", ["directory", "missing_parent"])
def test_an_unopenable_path_raises_nvm_error_naming_it(tmp_path: Path, where: str) -> None:
    path = tmp_path / "a directory" if where == "directory" else tmp_path / "no such dir" / "nvm.db"
    if where == "directory":
        path.mkdir()
    with pytest.raises(NvmError, match=re.escape(str(path))):
        NonVolatileMemory(path)


# ---------------------------------------------------------------------------------- kill -9

CHAINS = 2  # concurrent chains of writers, one per core
FILES_PER_CHAIN = 8
KILLS_PER_FILE = 4  # 2 x 8 x 4 = 64 kills; 48 of them on a file a killed writer left behind
DELAY_S = (0.05, 1.0)  # from the writer's first committed append to SIGKILL
AUTOCHECKPOINT_PAGES = (8, 64, 1000)  # small ones make WAL checkpoints (and kills inside them) common


@dataclass
class Kill:
    db: Path
    seed: int
    delay_s: float
    ready: tuple[int, int]  # (rows, max id) the writer found when it opened the file
    reported: int  # the last id the writer reported committed
    wal_bytes: int  # size of the WAL the killed writer left behind
    db_bytes: int  # size of the database file itself (what checkpoints wrote)


class WriterServer:
    """``nvm_child.py serve``: forks fresh writer processes on demand (see that file)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), "serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            )

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().split()
        assert answer and answer[0] != "error", f"{command!r}: {answer} {self.log.read_text()}"
        return answer[1]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def complete_lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1]  # a line cut by the kill has no newline yet


def kill_once(server: WriterServer, db: Path, seed: int, delay_s: float, autocheckpoint: int) -> Kill:
    out = db.with_name(f"{db.stem}-{seed}.out")
    pid = int(server.ask(f"run {db} {seed} {autocheckpoint} {out}"))
    try:
        deadline = time.monotonic() + 60
        while not out.exists() or len(complete_lines(out)) < 2:  # "ready ..." and a first id
            assert server.log.stat().st_size == 0, f"writer {seed} failed: {server.log.read_text()}"
            assert time.monotonic() < deadline, f"writer {seed} wrote nothing in 60 s: {server.log.read_text()}"
            time.sleep(0.005)
        time.sleep(delay_s)
    finally:
        os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid cannot have been reused
        status = int(server.ask(f"wait {pid}"))
    assert status == -signal.SIGKILL, f"writer {seed} ended by itself ({status}): {server.log.read_text()}"
    lines = complete_lines(out)
    word, rows, max_id = lines[0].split()
    assert word == "ready"
    wal_bytes = db.with_name(db.name + "-wal").stat().st_size
    ready = (int(rows), int(max_id))
    return Kill(db, seed, delay_s, ready, int(lines[-1]), wal_bytes, db.stat().st_size)


def check_after_kill(kill: Kill) -> tuple[int, int]:
    """Everything issue 3 item 7 asks of a database whose writer was just killed; returns (rows,
    max id). Read-only, so the WAL the writer left stays for the next writer to recover."""
    where = f"{kill.db.name} after a kill {kill.delay_s:.3f} s into writer seed {kill.seed}"
    con = sqlite3.connect(f"{kill.db.as_uri()}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)], where
        rows = con.execute("SELECT id, pack, typeof(pack), t_s, kind, fields FROM events ORDER BY id").fetchall()
        snapshots = con.execute("SELECT pack, t_s, snapshot FROM persistent").fetchall()
    finally:
        con.close()
    ids = [r[0] for r in rows]
    assert ids == list(range(1, len(ids) + 1)), f"{where}: ids are not gap-free"
    max_id = len(ids)
    assert max_id >= kill.reported, f"{where}: id {kill.reported} was reported committed, only {max_id} kept"
    batches: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
    for id_, pack, pack_type, t_s, kind, text in rows:
        fields = json.loads(text)
        assert isinstance(fields, dict), f"{where}: event {id_}"
        assert (pack, pack_type) == (0, "integer") and math.isfinite(t_s), f"{where}: event {id_}"
        assert kind in EVENT_KINDS, f"{where}: event {id_} has kind {kind!r}"
        if fields.get("warning") == MARKER:
            batches[fields["seed"], fields["batch"]].append((id_, fields["k"], fields["size"]))
    for key, members in batches.items():  # one transaction: all of its rows, in one run of ids
        size = members[0][2]
        assert [k for _, k, _ in members] == list(range(size)), f"{where}: batch {key} is torn"
        assert [i for i, _, _ in members] == list(range(members[0][0], members[0][0] + size)), where
    for pack, t_s, text in snapshots:
        snapshot = json.loads(text)
        assert pack == 0 and math.isfinite(t_s), where
        assert set(snapshot) >= SNAPSHOT_KEYS, f"{where}: snapshot keys {sorted(snapshot)}"
        assert isinstance(snapshot["reset_counts"]["button"], int), where
    return len(rows), max_id


def kill_chain(tmp_path: Path, chain: int) -> list[Kill]:
    rng = random.Random(7100 + chain)
    server = WriterServer(tmp_path / f"chain{chain}-server.err")
    kills = []
    try:
        for f in range(FILES_PER_CHAIN):
            db = tmp_path / f"chain{chain}-file{f}.db"
            seen = (0, 0)
            for _ in range(KILLS_PER_FILE):
                seed, delay_s = rng.randrange(1_000_000), rng.uniform(*DELAY_S)
                kill = kill_once(server, db, seed, delay_s, rng.choice(AUTOCHECKPOINT_PAGES))
                # The reopening writer found every event the last kill left, before it wrote more.
                assert kill.ready == seen, f"{db.name}: writer found {kill.ready}, expected {seen}"
                seen = check_after_kill(kill)
                kills.append(kill)
            # At last a normal open and close through the module: the log is whole, and stays so.
            nvm = NonVolatileMemory(db)
            events = nvm.events()
            nvm.close()
            assert [e["id"] for e in events] == list(range(1, seen[1] + 1))
            assert [r[0] for r in raw_rows(db)] == list(range(1, seen[1] + 1))
    finally:
        server.close()
    return kills


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the writers are forked and killed with SIGKILL")
def test_kill_9_at_random_points_loses_no_committed_event(tmp_path: Path) -> None:
    start = time.monotonic()
    with ThreadPoolExecutor(CHAINS) as pool:
        futures = [pool.submit(kill_chain, tmp_path, chain) for chain in range(CHAINS)]
        kills = [kill for future in futures for kill in future.result()]
    assert len(kills) >= 50
    assert sum(k.ready[1] > 0 for k in kills) >= 40  # writers that recovered a killed writer's log
    # The writers were killed mid-stream: they had committed work and left WALs behind, and
    # checkpoints had moved part of the log into the database file itself.
    assert all(k.reported > k.ready[1] for k in kills)
    assert sum(k.reported - k.ready[1] for k in kills) > 5000
    assert sum(k.wal_bytes > 0 for k in kills) >= len(kills) // 2
    assert sum(k.db_bytes > 64 * 1024 for k in kills) >= len(kills) // 4
    print(f"{len(kills)} kills in {time.monotonic() - start:.1f} s")


# ---------------------------------------------------------------------------------- resets

RESETS_SCENARIO = """
name: the event log and the persistent values survive every kind of reset
pack: {chemistry: lfp, series: 16, parallel: 1, capacity_ah: 20, soc: 0.3, temperature_c: 25}
bms: {profile: lfp}
dt: 1s
timeline:
  - load: {current_a: 10}
  - run: 5min
  - disconnect: load
  - run: 1min
  - expect: {state: normal}
  - note: checkpoint before the soft resets
  - press: reset_button
  - run: 10s
  - expect: {state: normal, events: [{kind: reset, method: button, result: ok}]}
  - command: soft_reset
  - run: 10s
  - expect: {state: normal, events: [{kind: reset, method: soft, result: ok}]}
  - note: checkpoint after the soft resets
  - inject: {fault: cell_internal_short, cell: 3, resistance_ohm: 0.2}
  - run_until: {faults: [deep_discharge], timeout: 2h}
  - expect: {state: locked, events: [{kind: fault_set, fault: deep_discharge, class: persistent}]}
  - run: 2min
  - note: checkpoint before the incomplete hard reset
  - disconnect: main_leads
  - disconnect: balance_connector
  - run: 2min
  - connect: balance_connector
  - connect: main_leads
  - run: 10s
  - expect: {state: locked, faults: [deep_discharge],
             events: [hard_reset_incomplete, {kind: reset, method: hard, result: incomplete}]}
  - note: checkpoint before the full hard reset
  - disconnect: main_leads
  - disconnect: balance_connector
  - run: 15min
  - connect: balance_connector
  - connect: main_leads
  - run: 10s
  - expect: {state: locked, faults: [deep_discharge],
             events: [{kind: reset, method: hard, result: ok},
                      {kind: fault_persisted_after_reset, fault: deep_discharge}]}
"""


def persistent_row(path: Path) -> dict[str, Any]:
    con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        (text,) = con.execute("SELECT snapshot FROM persistent WHERE pack = 0").fetchone()
    finally:
        con.close()
    return dict(json.loads(text))


def test_the_log_and_the_persistent_values_survive_every_kind_of_reset(tmp_path: Path) -> None:
    scenario_path = tmp_path / "resets.yaml"
    scenario_path.write_text(RESETS_SCENARIO)
    db = tmp_path / "nvm.db"
    scenario, steps = load_scenario(scenario_path)
    runner = ScenarioRunner(scenario, steps, nvm=NonVolatileMemory(db))
    # Play the timeline in pieces split at the checkpoints; at each, read the file as stored.
    cuts = [i for i, s in enumerate(steps) if s.kind == "note" and str(s.value).startswith("checkpoint")]
    assert len(cuts) == 4
    logs: list[list[tuple[Any, ...]]] = []
    snapshots: list[dict[str, Any]] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(steps)], strict=True):
        runner.steps = steps[lo:hi]
        result = runner.run()
        assert result.error is None and result.passed, result.expectations
        logs.append(raw_rows(db))
        snapshots.append(persistent_row(db))
    final = logs[-1]

    # Every event written before each reset is still there afterwards, with the same id.
    for before in logs[:-1]:
        assert before and final[: len(before)] == before
    assert [r[0] for r in final] == list(range(1, len(final) + 1))
    # The log holds every event the twin produced, in order, exactly as it produced them.
    produced = [(e.t_s, e.pack, e.kind, json.loads(json.dumps(e.fields))) for e in runner.twin.events]
    assert [(r[3], r[1], r[5], json.loads(r[6])) for r in final] == produced
    assert {(r[2], r[4]) for r in final} == {("integer", "real")}

    # The resets are logged with their method and result.
    resets = [(r[0], json.loads(r[6])) for r in final if r[5] == "reset"]
    assert [(f["method"], f["result"]) for _, f in resets] == [
        ("button", "ok"),
        ("soft", "ok"),
        ("hard", "incomplete"),
        ("hard", "ok"),
    ]
    (incomplete_id,) = [r[0] for r in final if r[5] == "hard_reset_incomplete"]
    assert incomplete_id == resets[2][0] - 1  # logged with its reset
    persisted = [json.loads(r[6]) for r in final if r[5] == "fault_persisted_after_reset"]
    assert {"fault": "deep_discharge", "method": "hard"} in persisted

    # Persistent values: saved before the power loss, restored by the boot, saved again.
    before_hard, after_hard = snapshots[3], snapshots[4]
    assert before_hard["counters"]["discharge_ah"] > 0.8  # 10 A for 5 min
    assert "deep_discharge" in before_hard["persistent_faults"]
    assert before_hard["soc_uncertain"] is False
    assert before_hard["reset_counts"] == {"soft": 1, "button": 1, "charger": 0, "hard": 0, "service": 0}
    assert after_hard["reset_counts"] == {**before_hard["reset_counts"], "hard": 1}
    assert 0 <= after_hard["counters"]["discharge_ah"] - before_hard["counters"]["discharge_ah"] < 0.01
    assert after_hard["counters"]["charge_ah"] >= before_hard["counters"]["charge_ah"]
    assert after_hard["capacity_ah"] == before_hard["capacity_ah"]
    assert after_hard["soh"] == before_hard["soh"]
    assert "deep_discharge" in after_hard["persistent_faults"]
    assert "deep_discharge" in after_hard["active_faults"]
    assert after_hard["soc_uncertain"] is True  # last known SOC, uncertain until recalibrated
    # ... and the BMS that booted from them runs on them.
    state = runner.final_state()
    assert state["state"] == "locked" and "deep_discharge" in state["faults"]
    assert state["soc_uncertain"] is True
    assert state["reset_counts"] == after_hard["reset_counts"]
    assert state["counters"]["discharge_ah"] >= before_hard["counters"]["discharge_ah"]

    # Closed and reopened, the log and the snapshot read back the same.
    runner.nvm.close()
    nvm = NonVolatileMemory(db)
    assert [(e["id"], e["kind"], e["t_s"]) for e in nvm.events()] == [(r[0], r[5], r[3]) for r in final]
    assert nvm.load(0) == after_hard
    nvm.close()
