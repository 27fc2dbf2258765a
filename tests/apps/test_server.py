"""``openbms serve``'s API, driven the way the page and a script drive it (httpx, through
FastAPI's TestClient), on a running twin. Expectations are derived by hand: the profile's limits
as its YAML states them, a 30 A load read back as about −30 A, the seed's hard-reset order.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from openbms.apps.auth import FAILURES_ALLOWED, FailureBrake, TokenError, load_or_create_token  # noqa: E402
from openbms.apps.live import TwinSource  # noqa: E402
from openbms.apps.server import create_app  # noqa: E402
from openbms.diagnose.from_twin import diagnosis_of  # noqa: E402
from openbms.scenario.runner import ScenarioRunner  # noqa: E402
from openbms.scenario.schema import load_scenario  # noqa: E402
from tests.apps.waiting import until  # noqa: E402

TOKEN = "a-test-token-that-is-long-enough-0123456789"
SERVE_SCENARIO = Path(str(resources.files("openbms.scenario").joinpath("library", "serve.yaml")))


def _source(speed: float) -> TwinSource:
    scenario, steps = load_scenario(SERVE_SCENARIO)
    runner = ScenarioRunner(scenario, steps, diagnoser=diagnosis_of, engine="fast")
    runner.max_chunk_cycles = max(1, int(speed * 0.02 / scenario.dt))
    return TwinSource(runner, speed)


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, TwinSource]]:
    speed = getattr(request, "param", 20.0)
    source = _source(speed)
    source.start()
    try:
        with TestClient(create_app(source, TOKEN)) as client:
            yield client, source
    finally:
        source.stop()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _reading(client: TestClient) -> dict[str, Any]:
    return dict(client.get("/api/reading").json()["reading"])


# ---------------------------------------------------------------------------- the token
def test_the_token_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "config" / "openbms" / "serve-token"
    first = load_or_create_token(path)
    assert first.created and len(first.value) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_or_create_token(path)
    assert not again.created and again.value == first.value


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("x" * 43 + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(TokenError, match="chmod 600"):
        load_or_create_token(path)
    os.chmod(path, 0o600)
    path.write_text("short\n")
    with pytest.raises(TokenError, match="does not hold a token"):
        load_or_create_token(path)


def test_the_brake_refuses_an_origin_after_repeated_failures_then_forgives() -> None:
    brake = FailureBrake(allowed=3, window_s=60.0)
    for k in range(3):
        assert brake.retry_after_s("10.0.0.9", now=100.0 + k) == 0.0
        brake.failed("10.0.0.9", now=100.0 + k)
    assert brake.retry_after_s("10.0.0.9", now=103.0) == pytest.approx(57.0)
    assert brake.retry_after_s("10.0.0.8", now=103.0) == 0.0  # another origin is not punished
    assert brake.retry_after_s("10.0.0.9", now=160.5) == 0.0


# ---------------------------------------------------------------------------- reading
def test_reading_needs_no_token_and_reports_the_pack(served: tuple[TestClient, TwinSource]) -> None:
    client, _ = served
    info = client.get("/api/info").json()
    assert info["source"] == "twin" and info["control"] is True
    r = _reading(client)
    assert r["ok"] and r["state"] == "normal" and len(r["cell_v"]) == 16
    assert r["soc"] == pytest.approx(0.6, abs=0.03)  # the scenario's pack starts at 60 %
    assert 16 * 3.2 < r["pack_v"] < 16 * 3.4  # LiFePO4 at 60 % rests near 3.3 V a cell
    limits = client.get("/api/limits").json()
    # bms/profiles/lfp.yaml: cell_overvoltage trips at 3.65 V (warns at 3.60), cell_undervoltage at 2.50 (2.80)
    assert limits["cell_v_max_v"] == 3.65 and limits["cell_v_warn_high_v"] == 3.60
    assert limits["cell_v_min_v"] == 2.50 and limits["cell_v_warn_low_v"] == 2.80
    assert client.get("/").text.startswith("<!doctype html>")
    assert "recommendation" in client.get("/api/diagnosis").json()


def test_the_websocket_streams_new_readings(served: tuple[TestClient, TwinSource]) -> None:
    client, _ = served
    seqs, times = [], []
    with client.websocket_connect("/ws") as ws:
        for _ in range(6):
            doc = ws.receive_json()
            seqs.append(doc["seq"])
            times.append(doc["reading"]["t_s"])
    assert seqs == sorted(set(seqs)), "each message is a new reading"
    assert times[-1] > times[0], "the twin's clock moves between them"


# ---------------------------------------------------------------------------- control
def test_control_without_or_with_a_wrong_token_is_refused_and_logged(served: tuple[TestClient, TwinSource]) -> None:
    client, _ = served
    step = {"load": {"current_a": 30}}
    assert client.post("/api/actions", json=step).status_code == 401
    assert client.post("/api/actions", json=step, headers=_auth("wrong" * 9)).status_code == 403
    assert _reading(client)["load_present"] is False, "a refused control changes nothing"
    logged = client.get("/api/events", params={"kind": "control_write"}).json()["events"]
    assert [(e["accepted"], e["reason"], e["protocol"]) for e in logged] == [
        (False, "no token", "http"),
        (False, "wrong token", "http"),
    ]
    assert all(e["origin"] == "testclient" and e["what"] == "load" for e in logged)


def test_guessing_the_token_is_braked_before_the_token_is_compared(served: tuple[TestClient, TwinSource]) -> None:
    client, _ = served
    step = {"disconnect": "load"}
    for _ in range(FAILURES_ALLOWED):
        assert client.post("/api/actions", json=step, headers=_auth("guess" * 9)).status_code == 403
    refused = client.post("/api/actions", json=step, headers=_auth())
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    reasons = [e["reason"] for e in client.get("/api/events", params={"kind": "control_write"}).json()["events"]]
    assert reasons[-1] == "too many wrong tokens"


def test_a_load_connected_from_the_api_draws_its_current(served: tuple[TestClient, TwinSource]) -> None:
    client, _ = served
    done = client.post("/api/actions", json={"load": {"current_a": 30}}, headers=_auth())
    assert done.status_code == 200 and done.json()["ok"]
    r = until(lambda: (x := _reading(client)) and x["current_a"] is not None and x["current_a"] < -25 and x)
    assert r["current_a"] == pytest.approx(-30.0, abs=1.0)  # discharge is negative; the AFE adds noise
    assert r["load_present"] is True
    client.post("/api/actions", json={"disconnect": "load"}, headers=_auth())
    until(lambda: abs(_reading(client)["current_a"]) < 1.0)
    writes = client.get("/api/events", params={"kind": "control_write"}).json()["events"]
    accepted = [e for e in writes if e["accepted"]]
    assert [e["what"] for e in accepted] == ["load", "disconnect"]


@pytest.mark.parametrize(
    ("step", "says"),
    [
        ({"load": {"current_a": "lots"}}, "action: load.current_a"),
        ({"run": "1h"}, "'run' is a timeline step, not an action"),
        ({"levitate": True}, "unknown step"),
        ({"load": {"current_a": 3}, "charger": {"voltage_v": 54, "current_a": 5}}, "exactly one key"),
        ([1, 2, 3], "exactly one key"),
    ],
)
def test_a_bad_action_gets_one_sentence_and_changes_nothing(
    served: tuple[TestClient, TwinSource], step: Any, says: str
) -> None:
    client, _ = served
    answer = client.post("/api/actions", json=step, headers=_auth())
    assert answer.status_code == 400 and says in answer.json()["detail"]
    assert "Traceback" not in answer.text
    assert _reading(client)["load_present"] is False


def test_events_are_paged_and_filtered(served: tuple[TestClient, TwinSource]) -> None:
    client, _ = served
    for amps in (10, 20, 30):
        client.post("/api/actions", json={"load": {"current_a": amps}}, headers=_auth())
    client.post("/api/actions", json={"load": {"current_a": 5}})  # refused: no token
    everything = client.get("/api/events").json()
    writes = client.get("/api/events", params={"kind": "control_write"}).json()
    assert writes["total"] == 4 and everything["total"] >= 4
    page = client.get("/api/events", params={"kind": "control_write", "offset": 1, "limit": 2}).json()
    assert [e["step"] for e in page["events"]] == [w["step"] for w in writes["events"][1:3]]
    t_last = writes["events"][-1]["t_s"]
    later = client.get("/api/events", params={"kind": "control_write", "since_s": t_last}).json()
    assert all(e["t_s"] >= t_last for e in later["events"]) and later["total"] >= 1
    assert client.get("/api/events", params={"limit": 0}).status_code == 422


# ---------------------------------------------------------------------------- the guided hard reset
@pytest.mark.parametrize("served", [200.0], indirect=True)
def test_the_hard_reset_wizard_checks_every_step_in_the_twin(served: tuple[TestClient, TwinSource]) -> None:
    """The seed's hard reset, one checked step at a time: refused while current flows, refused
    before the hold-up has passed, and the balance connector must come back before the main leads."""
    client, source = served
    client.post("/api/actions", json={"load": {"current_a": 20}}, headers=_auth())
    until(lambda: _reading(client)["current_a"] < -15)
    walk = client.post("/api/procedures/hard_reset/start", headers=_auth()).json()
    assert walk["index"] == 0 and "disconnect all chargers and loads" in walk["current"]["text"]

    def next_step() -> Any:
        return client.post("/api/procedures/hard_reset/next", headers=_auth())

    refused = next_step()
    assert refused.status_code == 409 and "load is still connected" in refused.json()["refused"]
    for action in walk["current"]["actions"]:  # the twin's hands: disconnect charger, then load
        assert client.post("/api/actions", json=action, headers=_auth()).status_code == 200
    until(lambda: abs(_reading(client)["current_a"]) < 0.5 and not _reading(client)["load_present"])
    assert next_step().status_code == 200  # 1 → 2: access the BMS (a person's step, no check)
    assert next_step().status_code == 200  # 2 → 3: disconnect the main leads
    assert next_step().status_code == 409  # they are still connected
    client.post("/api/actions", json={"disconnect": "main_leads"}, headers=_auth())
    until(lambda: _reading(client)["main_leads"] is False)
    assert next_step().status_code == 200  # → disconnect the balance connector
    assert "still has power" in next_step().json()["refused"]
    client.post("/api/actions", json={"disconnect": "balance_connector"}, headers=_auth())
    until(lambda: _reading(client)["state"] == "off")
    assert next_step().status_code == 200  # → the wait
    waiting = next_step().json()
    assert waiting["refused"].startswith("wait") and waiting["current"]["wait_left_s"] > 0
    # Plugging the main leads first is what the wizard must never let through.
    client.post("/api/actions", json={"connect": "main_leads"}, headers=_auth())
    board = source.twin.hold_up_s
    until(lambda: _reading(client)["t_s"] > walk_started_s(client) + board + 61, timeout_s=60)
    assert next_step().status_code == 200  # the wait is over → reconnect the balance connector
    wrong_order = next_step().json()
    assert "main leads are connected" in wrong_order["refused"]
    client.post("/api/actions", json={"disconnect": "main_leads"}, headers=_auth())
    client.post("/api/actions", json={"connect": "balance_connector"}, headers=_auth())
    until(lambda: _reading(client)["state"] not in ("off", None))
    assert next_step().status_code == 200  # → the main leads
    client.post("/api/actions", json={"connect": "main_leads"}, headers=_auth())
    until(lambda: _reading(client)["main_leads"] is True)
    assert next_step().status_code == 200  # → the test
    until(lambda: _reading(client)["state"] == "normal")
    final = next_step().json()
    assert final["finished"] is True and final["refused"] is None
    results = [e for e in client.get("/api/events", params={"kind": "control_write"}).json()["events"]]
    assert results[-1]["what"] == "procedure" and results[-1]["reason"] == "finished: the test passed"
    assert any(e["kind"] == "reconnect_order_violation" for e in client.get("/api/events").json()["events"])


def walk_started_s(client: TestClient) -> float:
    """When the wait step was offered (the log line of the step before it)."""
    log = client.get("/api/procedures/hard_reset").json()["log"]
    return float(log[-1].split("t=")[1].split(" ")[0])


def test_a_fault_on_the_page_says_its_class_and_what_clears_it(served: tuple[TestClient, TwinSource]) -> None:
    """docs/behaviour.md §4: a short circuit is a load-removal fault; it clears by its own release
    once the load (the short) is gone, and a soft reset, a hard reset and a service clear clear it."""
    client, _ = served
    client.post("/api/actions", json={"short": {"resistance_ohm": 0.005}}, headers=_auth())
    r = until(lambda: (x := _reading(client)) and "short_circuit" in x["faults"] and x)
    (detail,) = [d for d in r["fault_details"] if d["fault"] == "short_circuit"]
    assert detail["class"] == "load-removal"
    assert detail["cleared_by"] == [
        "its own release (load_removal)",
        "a soft reset",
        "a hard reset",
        "a service clear",
    ]
    assert r["charge_fet"] is False and r["discharge_fet"] is False


def test_the_soft_reset_walk_ends_with_the_pack_normal(served: tuple[TestClient, TwinSource]) -> None:
    """The seed's soft reset: loads off, a charger, the reset button (the twin's hands press it),
    then loads back once the BMS is normal; its last step is refused while a fault is active."""
    client, _ = served
    client.post("/api/actions", json={"short": {"resistance_ohm": 0.005}}, headers=_auth())
    until(lambda: "short_circuit" in _reading(client)["faults"])
    walk = client.post("/api/procedures/soft_reset/start", headers=_auth()).json()
    assert walk["current"]["actions"] == [{"disconnect": "load"}]
    client.post("/api/actions", json={"disconnect": "short"}, headers=_auth())
    for _ in range(3):  # loads off, the charger, the rest: steps a person confirms
        assert client.post("/api/procedures/soft_reset/next", headers=_auth()).status_code == 200
    press = client.get("/api/procedures/soft_reset").json()["current"]
    assert press["actions"] == [{"press": "reset_button"}]
    client.post("/api/actions", json=press["actions"][0], headers=_auth())
    assert client.post("/api/procedures/soft_reset/next", headers=_auth()).status_code == 200
    until(lambda: _reading(client)["state"] == "normal" and not _reading(client)["faults"])
    done = client.post("/api/procedures/soft_reset/next", headers=_auth()).json()
    assert done["finished"] is True
    assert client.get("/api/procedures/nonsense").status_code == 404


def test_the_twin_s_fets_switch_like_a_monitor_s_write(served: tuple[TestClient, TwinSource]) -> None:
    """The same action as on a real board: the BMS logs the write (as the emulator's boards do) and
    opens the discharge FET; the charge FET, not named, stays on."""
    client, _ = served
    assert client.post("/api/actions", json={"fets": {"discharge_on": False}}, headers=_auth()).status_code == 200
    r = until(lambda: (x := _reading(client)) and x["discharge_fet"] is False and x)
    assert r["charge_fet"] is True
    writes = client.get("/api/events", params={"kind": "control_write"}).json()["events"]
    assert any(e["what"] == "fet" and e["accepted"] and e["discharge_on"] is False for e in writes)
    client.post("/api/actions", json={"fets": {"discharge_on": True}}, headers=_auth())
    until(lambda: _reading(client)["discharge_fet"] is True)


def test_prometheus_reads_what_the_page_shows(served: tuple[TestClient, TwinSource]) -> None:
    """Parsed by prometheus-client's own text parser (what a Prometheus server accepts)."""
    from prometheus_client.parser import text_string_to_metric_families

    client, _ = served
    client.post("/api/actions", json={"short": {"resistance_ohm": 0.005}}, headers=_auth())
    until(lambda: "short_circuit" in _reading(client)["faults"])
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    r = _reading(client)
    cells = {k[1][0][1]: v for k, v in samples.items() if k[0] == "openbms_cell_voltage_volts"}
    assert sorted(cells, key=int) == [str(i) for i in range(1, 17)]
    assert all(3.2 < v < 3.4 for v in cells.values())
    assert samples[("openbms_up", ())] == 1
    assert samples[("openbms_state", (("state", r["state"]),))] == 1
    assert samples[("openbms_fault_active", (("fault", "short_circuit"),))] == 1
    assert samples[("openbms_faults_total", (("fault", "short_circuit"),))] == 1
    assert samples[("openbms_fet_on", (("fet", "discharge"),))] == 0
    assert abs(samples[("openbms_soc_ratio", ())] - r["soc"]) < 0.01


def test_the_last_events_are_a_negative_offset(served: tuple[TestClient, TwinSource]) -> None:
    client, _ = served
    for amps in (11, 12, 13, 14):
        client.post("/api/actions", json={"load": {"current_a": amps}}, headers=_auth())
    writes = client.get("/api/events", params={"kind": "control_write"}).json()["events"]
    last_two = client.get("/api/events", params={"kind": "control_write", "offset": -2, "limit": 50}).json()
    assert last_two["total"] == 4 and [e["id"] for e in last_two["events"]] == [e["id"] for e in writes[-2:]]
