"""``openbms serve --device``: a board read through its port (the emulated JBD board on a
pseudo-terminal, as a reader on a serial port meets it), every poll kept in the history file, the
board's trips in the event log and the diagnosis, controls refused.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from openbms.apps.live import DeviceSource  # noqa: E402
from openbms.apps.server import create_app  # noqa: E402
from tests.apps.waiting import until  # noqa: E402
from tests.devices.emulated import HUNG, emulated_port  # noqa: E402

# A board polled every 0.2 s of a twin at 20x: a trip can take half a minute of wall time.
wait_for = functools.partial(until, timeout_s=30.0, every_s=0.1)

TOKEN = "a-test-token-that-is-long-enough-0123456789"

# A 4S board driven flat: cell_undervoltage trips within a minute or so of twin time.
RUNS_FLAT = """\
name: runs flat
pack: {series: 4, capacity_ah: 10, soc: 0.04}
timeline:
  - load: {current_a: 10}
  - run: 2h
"""


@pytest.fixture
def port_of(tmp_path: Path) -> Iterator[Any]:
    opened: list[Iterator[str]] = []

    def open_port(text: str, protocol: str = "jbd", allow_control: bool = False) -> str:
        ports = emulated_port(tmp_path, text, protocol, speed=20.0, allow_control=allow_control)
        opened.append(ports)
        return next(ports)

    yield open_port
    for ports in opened:
        for _ in ports:  # runs the generator's clean-up
            pass


def test_a_board_is_read_recorded_and_its_trip_logged(tmp_path: Path, port_of: Any) -> None:
    port = port_of(RUNS_FLAT)
    history = tmp_path / "board.sqlite"
    source = DeviceSource(f"jbd:{port}", 0.2, "lfp", history)
    source.start()
    try:
        client = TestClient(create_app(source, TOKEN, allow_control=False))
        first = wait_for(lambda: (r := client.get("/api/reading").json()["reading"])["ok"] and r)
        assert first["protocol"] == "jbd" and len(first["cell_v"]) == 4
        assert first["current_a"] == pytest.approx(-10.0, abs=0.5)
        tripped = wait_for(
            lambda: [e for e in client.get("/api/events").json()["events"] if e.get("fault") == "cell_undervoltage"]
        )
        assert tripped[0]["kind"] == "fault_set"
        assert "cell_undervoltage" in client.get("/api/reading").json()["reading"]["faults"]
        refused = client.post("/api/actions", json={"disconnect": "load"}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 403 and "--allow-control" in refused.json()["detail"]
        assert client.get("/api/diagnosis").json()["recommendation"]
    finally:
        source.stop()
    with sqlite3.connect(history) as db:
        polls = db.execute("SELECT COUNT(*) FROM polls").fetchone()[0]
    assert polls >= 3, "every poll is kept"
    # Served again later: what happened before is still known to the page and the diagnosis.
    again = DeviceSource(f"jbd:{port}", 0.2, "lfp", history)
    try:
        kinds = [(e["kind"], e.get("fault")) for e in again.events([], None, None)[1]]
        assert ("fault_set", "cell_undervoltage") in kinds
    finally:
        again.stop()


def test_a_silent_board_reads_as_no_reply(tmp_path: Path, port_of: Any) -> None:
    port = port_of(HUNG)
    source = DeviceSource(f"jbd:{port}", 0.2, "lfp", tmp_path / "hung.sqlite")
    source.start()
    try:
        client = TestClient(create_app(source, TOKEN, allow_control=True))
        silent = wait_for(lambda: (r := client.get("/api/reading").json()["reading"]) and not r["ok"] and r)
        assert silent["error"]
        assert wait_for(lambda: client.get("/api/events", params={"kind": "warning"}).json()["total"] >= 1)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        answer = client.post("/api/actions", json={"press": "reset_button"}, headers=auth)
        assert answer.status_code == 400 and "with your hands" in answer.json()["detail"]
    finally:
        source.stop()


AT_REST = """\
name: at rest
pack: {series: 4, capacity_ah: 10, soc: 0.6}
timeline:
  - run: 2h
"""


@pytest.mark.parametrize("protocol", ["jbd", "daly"])
def test_a_board_s_fets_switch_from_the_page_only_with_allow_control(
    tmp_path: Path, port_of: Any, protocol: str
) -> None:
    port = port_of(AT_REST, protocol, allow_control=True)  # the board itself takes FET writes
    auth = {"Authorization": f"Bearer {TOKEN}"}
    source = DeviceSource(f"{protocol}:{port}", 0.2, "lfp", tmp_path / "board.sqlite")
    source.start()
    try:
        wait_for(lambda: source.latest().doc["ok"])
        refused = TestClient(create_app(source, TOKEN, allow_control=False))
        answer = refused.post("/api/actions", json={"fets": {"discharge_on": False}}, headers=auth)
        assert answer.status_code == 403
        assert source.latest().doc["discharge_fet"] is True, "a refused control changes nothing"
        client = TestClient(create_app(source, TOKEN, allow_control=True))
        done = client.post("/api/actions", json={"fets": {"discharge_on": False}}, headers=auth)
        assert done.status_code == 200, done.text
        r = wait_for(lambda: (x := client.get("/api/reading").json()["reading"]) and x["discharge_fet"] is False and x)
        assert r["charge_fet"] is True, "the FET it did not name keeps its state"
        client.post("/api/actions", json={"fets": {"discharge_on": True}}, headers=auth)
        wait_for(lambda: client.get("/api/reading").json()["reading"]["discharge_fet"] is True)
        bad = client.post("/api/actions", json={"fets": {"discharge_on": "off"}}, headers=auth)
        assert bad.status_code == 400 and "true or false" in bad.json()["detail"]
        other = client.post("/api/actions", json={"load": {"current_a": 3}}, headers=auth)
        assert other.status_code == 400 and "with your hands" in other.json()["detail"]
    finally:
        source.stop()


def test_a_board_that_refuses_the_write_says_so(tmp_path: Path, port_of: Any) -> None:
    port = port_of(AT_REST, "jbd", allow_control=False)  # the board refuses FET writes
    source = DeviceSource(f"jbd:{port}", 0.2, "lfp", tmp_path / "board.sqlite")
    source.start()
    try:
        wait_for(lambda: source.latest().doc["ok"])
        client = TestClient(create_app(source, TOKEN, allow_control=True))
        answer = client.post(
            "/api/actions", json={"fets": {"charge_on": False}}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert answer.status_code == 400 and "refused the FET write" in answer.json()["detail"]
        assert client.get("/api/reading").json()["reading"]["charge_fet"] is True
    finally:
        source.stop()
