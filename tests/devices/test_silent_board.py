"""A board that does not answer (issue 10): the report says what was observed — no reply — lists
the causes in order with how to tell them apart, and advises a reset only when the board's history
shows a cut-off before the silence. `--baud` reaches the serial port and `openbms probe` finds the
protocol that answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from openbms.cli import app
from openbms.devices import reader as reader_module
from openbms.devices.reader import DEFAULT_BAUD, DeviceReader
from openbms.diagnose.engine import diagnose
from openbms.diagnose.from_device import snapshot_from_reading
from tests.devices.emulated import HUNG, emulated_port

IDLE = """\
name: an idle pack
pack: {series: 4, capacity_ah: 50, soc: 0.7}
timeline:
  - run: 1h
"""


@pytest.fixture
def daly_port(tmp_path: Path) -> Iterator[str]:
    yield from emulated_port(tmp_path, IDLE, "daly")


@pytest.fixture
def jk_port(tmp_path: Path) -> Iterator[str]:
    yield from emulated_port(tmp_path, IDLE, "jk")


@pytest.fixture
def hung_port(tmp_path: Path) -> Iterator[str]:
    yield from emulated_port(tmp_path, HUNG, "jbd")


def _diagnose_json(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["diagnose", *args, "--json"])
    assert result.exit_code == 0, result.output
    doc: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return doc


def _assert_silent_report(doc: dict[str, object], port: str) -> None:
    assert doc["recommendation"] == "fix_root_cause"
    reasons = doc["reasons"]
    assert isinstance(reasons, list)
    texts = " ".join(r["text"] for r in reasons)
    assert "did not reply" in texts and "nothing was measured" in texts
    assert "asleep after" not in texts
    # a diagnosis never states a measurement it did not make
    assert not any("measurement" in r or "limit" in r or "value" in r for r in reasons)
    steps = doc["steps"]
    assert isinstance(steps, list)
    text = " ".join(s["text"] for s in steps).lower()
    for word in ("probe", "baud", "tx led", "swap tx and rx", "power", "hard reset"):
        assert word in text, word
    # in order of likelihood: protocol and baud, port, wiring, the BMS's power, a hang last
    order = [text.index(w) for w in ("probe", "tx led", "swap tx and rx", "meter", "firmware hung")]
    assert order == sorted(order)
    assert f"openbms probe {port}" in " ".join(s["text"] for s in steps)


def test_a_jbd_reader_on_a_daly_board_gets_the_silent_report_not_a_reset(daly_port: str) -> None:
    doc = _diagnose_json("--device", f"jbd:{daly_port}")
    _assert_silent_report(doc, daly_port)
    assert "as JBD" in doc["reasons"][0]["text"]  # type: ignore[index]
    assert "9600 baud" in doc["reasons"][0]["text"]  # type: ignore[index]


def test_a_board_hung_from_the_start_is_not_called_asleep(hung_port: str) -> None:
    doc = _diagnose_json("--device", f"jbd:{hung_port}")
    _assert_silent_report(doc, hung_port)


def test_the_rich_report_of_a_silent_board_says_no_reply(hung_port: str) -> None:
    result = CliRunner().invoke(app, ["diagnose", "--device", f"jbd:{hung_port}"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "did not reply" in text and "asleep after" not in text


def test_a_cut_off_in_the_history_before_the_silence_supports_a_soft_reset() -> None:
    history = [
        {"t_s": 10.0, "kind": "fault_set", "fault": "cell_undervoltage", "class": "charger"},
        {"t_s": 12.0, "kind": "sleep", "reason": "cell_undervoltage"},
    ]
    link: dict[str, str | int] = {"protocol": "jbd", "port": "/dev/ttyUSB0", "baud": 9600}
    verdict = diagnose(snapshot_from_reading(None, "comm_error: no answer", link, history))
    assert verdict.recommendation == "soft_reset"
    assert "history" in verdict.summary
    assert any("t=12.0 s" in r.text for r in verdict.reasons)
    assert all(r.limit is None and r.value is None for r in verdict.reasons)
    # ... and the link checks follow in case the charger does not wake it
    assert any("probe" in s.text for s in verdict.steps)


def test_a_wake_after_the_cut_off_leaves_the_silence_unexplained() -> None:
    history = [
        {"t_s": 12.0, "kind": "sleep", "reason": "cell_undervoltage"},
        {"t_s": 40.0, "kind": "wake"},
    ]
    verdict = diagnose(snapshot_from_reading(None, "no answer", None, history))
    assert verdict.recommendation == "fix_root_cause"


def test_a_sleep_without_cell_readings_cites_no_limit() -> None:
    from openbms.diagnose.snapshot import Snapshot

    verdict = diagnose(Snapshot(source="guide", state="sleep"))
    sleep = next(r for r in verdict.reasons if "asleep" in r.text)
    assert sleep.limit is None and sleep.measurement is None


# ----------------------------------------------------------------------------- baud rates
@pytest.mark.parametrize("protocol", ["jbd", "daly", "jk"])
def test_each_protocol_opens_its_port_at_its_usual_rate(daly_port: str, protocol: str) -> None:
    reader = DeviceReader(f"{protocol}:{daly_port}")
    try:
        assert reader.transport.port.baudrate == DEFAULT_BAUD[protocol]  # type: ignore[attr-defined]
    finally:
        reader.close()
    assert DEFAULT_BAUD == {"jbd": 9600, "daly": 9600, "jk": 115200}


def test_baud_is_passed_to_the_serial_port(daly_port: str) -> None:
    reader = DeviceReader(f"daly:{daly_port}", baud=115200)
    try:
        assert reader.transport.port.baudrate == 115200  # type: ignore[attr-defined]
    finally:
        reader.close()


def _spy_on_open_port(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    rates: list[int] = []
    real = reader_module.open_port

    def spy(url: str, baudrate: int = 9600, timeout_s: float = 0.05):  # type: ignore[no-untyped-def]
        rates.append(baudrate)
        return real(url, baudrate, timeout_s)

    monkeypatch.setattr(reader_module, "open_port", spy)
    return rates


def test_monitor_and_diagnose_pass_baud_to_the_port(daly_port: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rates = _spy_on_open_port(monkeypatch)
    result = CliRunner().invoke(
        app, ["monitor", "--device", f"daly:{daly_port}", "--baud", "19200", "--count", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["ok"] is True
    doc = _diagnose_json("--device", f"daly:{daly_port}", "--baud", "38400")
    assert doc["recommendation"] != "fix_root_cause" or "did not reply" not in str(doc["reasons"])
    assert rates == [19200, 38400]


@pytest.mark.parametrize(
    "args, words",
    [
        (["monitor", "--device", "jbd:/dev/x", "--baud", "0"], ("--baud 0 is not a baud rate",)),
        (["monitor", "--device", "ble:AA:BB:CC:DD:EE:FF", "--baud", "9600"], ("--baud applies to serial ports",)),
        (["diagnose", "--device", "jbd:/dev/x", "--baud", "-5"], ("--baud -5 is not a baud rate",)),
        (["diagnose", "--state", "x.json", "--baud", "9600"], ("--baud goes with --device",)),
        (["diagnose", "--device", "ble:AA:BB:CC:DD:EE:FF", "--baud", "9600"], ("--baud applies to serial ports",)),
    ],
    ids=["monitor-zero", "monitor-ble", "diagnose-negative", "diagnose-state", "diagnose-ble"],
)
def test_a_baud_that_cannot_apply_is_refused_in_one_sentence(args: list[str], words: tuple[str, ...]) -> None:
    from tests.devices.test_cli_devices import assert_refused, run

    assert_refused(run(*args), *words)


# ----------------------------------------------------------------------------- probe
def _probe(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["probe", *args, "--json"])
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def test_probe_finds_an_emulated_jk(jk_port: str) -> None:
    code, doc = _probe(jk_port)
    assert code == 0
    found = doc["found"]
    assert (found["protocol"], found["baud"]) == ("jk", 115200)
    assert found["device"] == f"jk:{jk_port}"


def test_probe_names_the_protocol_that_answers_after_the_ones_that_did_not(daly_port: str) -> None:
    code, doc = _probe(daly_port)
    assert code == 0
    assert doc["tried"] == [
        {"protocol": "jbd", "baud": 9600, "answered": False},
        {"protocol": "daly", "baud": 9600, "answered": True},
    ]
    assert doc["found"]["device_name"]


def test_probe_says_plainly_when_nothing_answered(hung_port: str) -> None:
    result = CliRunner().invoke(app, ["probe", hung_port, "--timeout", "0.1s"])
    assert result.exit_code == 1, result.output
    assert "nothing answered" in " ".join(result.stdout.split())
    code, doc = _probe(hung_port, "--timeout", "0.1s", "--baud", "9600")
    assert code == 1 and doc["found"] is None
    assert [t["baud"] for t in doc["tried"]] == [9600, 9600, 9600]


def test_probe_refuses_a_missing_port_in_one_sentence() -> None:
    from tests.devices.test_cli_devices import assert_refused, run

    assert_refused(run("probe", "/dev/openbms-no-such-port"), "cannot open /dev/openbms-no-such-port")


def test_monitor_of_a_board_that_never_answered_points_at_probe(hung_port: str) -> None:
    result = CliRunner().invoke(app, ["monitor", "--device", f"jbd:{hung_port}", "--count", "1"])
    assert result.exit_code == 1, result.output
    text = " ".join(result.stdout.split())
    assert "comm_error" in text and "no values shown" in text
    assert f"openbms probe {hung_port}" in text
