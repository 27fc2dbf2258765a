"""`openbms emulate` and `openbms monitor` as separate processes, as a user runs them: the emulator
prints its pseudo-terminal on the first line of stdout, the monitor reads it and prints one JSON
line; bad input exits 2 with one sentence and no traceback."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openbms.cli import app
from tests.devices.emulated import stop_process

OPENBMS = [sys.executable, "-m", "openbms.cli"]
SERIES = 6

SCENARIO = f"""\
name: cli devices
pack: {{chemistry: lfp, series: {SERIES}, capacity_ah: 50, soc: 0.7, temperature_c: 25,
       spread: {{soc: 0.02, seed: 9}}}}
bms: {{profile: lfp}}
dt: 100ms
timeline:
  - load: {{current_a: 10}}
  - run: 2s
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "cli.yaml"
    path.write_text(SCENARIO)
    return path


def _first_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, "the emulator printed nothing"
    return proc.stdout.readline().strip()


@pytest.fixture
def emulator(scenario: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [*OPENBMS, "emulate", "--protocol", "jk", str(scenario), "--linger", "5s", "--speed", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        path = _first_line(proc, 30)
        yield proc, path
    finally:
        stop_process(proc)


def test_emulate_prints_the_pty_and_monitor_reads_it_as_one_json_line(
    emulator: tuple[subprocess.Popen[str], str],
) -> None:
    proc, path = emulator
    assert path.startswith("/dev/pts/") or path.startswith("/dev/tty"), path
    assert os.path.exists(path)
    monitor = subprocess.run(
        [*OPENBMS, "monitor", "--device", f"jk:{path}", "--count", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert monitor.returncode == 0, monitor.stderr
    lines = monitor.stdout.strip().splitlines()
    assert len(lines) == 1, monitor.stdout
    doc = json.loads(lines[0])
    assert doc["ok"] is True
    assert doc["protocol"] == "jk"
    assert len(doc["cell_v"]) == SERIES
    assert all(3.0 < v < 3.6 for v in doc["cell_v"])
    assert doc["charge_fet"] is True and doc["discharge_fet"] is True
    assert doc["faults"] == []
    assert doc["pack_v"] == pytest.approx(sum(doc["cell_v"]), abs=0.05)
    assert "Traceback" not in monitor.stderr
    assert proc.poll() is None  # still serving (it lingers 5 s after the 2 s timeline)


def test_emulate_ends_by_itself_after_its_linger(scenario: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [*OPENBMS, "emulate", "--protocol", "daly", str(scenario), "--linger", "200ms", "--speed", "20"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("/dev/")
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 30


def _one_sentence(stderr: str) -> str:
    """Rich wraps long lines at 80 columns; a sentence is the text with the wrapping undone."""
    return " ".join(stderr.split())


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str) -> Outcome:
    """The command in this process (the refusals happen before anything is started)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return Outcome(result.exit_code, result.stdout, result.stderr)


def run_process(*args: str) -> Outcome:
    proc = subprocess.run([*OPENBMS, *args], capture_output=True, text=True, timeout=60)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def assert_refused(proc: Outcome, *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "internal error" not in proc.stderr
    text = _one_sentence(proc.stderr)
    assert text.startswith("error: ")
    assert text.count("error:") == 1
    for word in words:
        assert word in text, text


@pytest.mark.parametrize(
    "device, words",
    [
        ("foo:/dev/x", ("unknown protocol 'foo'", "jbd, daly, jk, pylontech-can, ble")),
        ("nocolon", ("'nocolon' is not a device URL", "jbd:/dev/ttyUSB0")),
        ("jbd:", ("'jbd:' is not a device URL",)),
        ("jk:/dev/openbms-no-such-port", ("cannot open /dev/openbms-no-such-port",)),
    ],
    ids=["unknown-protocol", "no-colon", "no-port", "missing-port"],
)
def test_monitor_refuses_a_bad_device_in_one_sentence(device: str, words: tuple[str, ...]) -> None:
    proc = run("monitor", "--device", device, "--count", "1", "--json")
    assert_refused(proc, *words)
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "device, words",
    [
        ("foo:/dev/x", ("unknown protocol 'foo'", "jbd, daly, jk, pylontech-can, ble")),
        ("nocolon", ("'nocolon' is not a device URL", "jbd:/dev/ttyUSB0")),
        ("jbd:", ("'jbd:' is not a device URL",)),
        ("jk:/dev/openbms-no-such-port", ("cannot open /dev/openbms-no-such-port: no such port",)),
        ("daly:socket://127.0.0.1", ("needs a host and a port number",)),
    ],
    ids=["unknown-protocol", "no-colon", "no-port", "missing-port", "socket-without-port"],
)
def test_diagnose_refuses_a_bad_device_in_one_sentence(device: str, words: tuple[str, ...]) -> None:
    """The same mistakes, the same one sentence and exit 2 as monitor (issue 10 item 5)."""
    proc = run("diagnose", "--device", device, "--json")
    assert_refused(proc, *words)
    assert proc.stdout == ""


def test_a_missing_port_is_named_once_with_what_to_check() -> None:
    text = _one_sentence(run("monitor", "--device", "jk:/dev/openbms-no-such-port").stderr)
    assert text.count("/dev/openbms-no-such-port") == 1
    assert "Errno" not in text


def test_a_refusal_as_a_separate_process_is_one_sentence_too() -> None:
    proc = run_process("monitor", "--device", "foo:/dev/x", "--count", "1", "--json")
    assert_refused(proc, "unknown protocol 'foo'")
    assert proc.stdout == ""


def test_monitor_without_a_device_is_a_usage_error() -> None:
    proc = run("monitor")
    assert proc.returncode == 2
    assert "--device" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (("--protocol", "foo"), ("--protocol must be one of jbd, daly, jk",)),
        (("--protocol", "jk", "--speed", "0"), ("--speed must be positive",)),
        (("--protocol", "jk", "--speed", "-3"), ("--speed must be positive",)),
        (("--protocol", "jk", "--linger", "soon"), ("'soon' is not a duration",)),
    ],
    ids=["unknown-protocol", "speed-0", "speed-negative", "bad-linger"],
)
def test_emulate_refuses_bad_options_in_one_sentence(
    scenario: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    proc = run("emulate", str(scenario), *args)
    assert_refused(proc, *words)
    assert proc.stdout == ""  # nothing was started, so no port was printed


def test_emulate_refuses_a_missing_scenario(tmp_path: Path) -> None:
    proc = run("emulate", str(tmp_path / "nope.yaml"), "--protocol", "jbd")
    assert_refused(proc, "nope.yaml")


def test_emulate_refuses_an_impossible_tcp_port(scenario: Path) -> None:
    proc = run("emulate", str(scenario), "--protocol", "jbd", "--tcp", "70000", "--linger", "0s")
    assert_refused(proc, "70000")
