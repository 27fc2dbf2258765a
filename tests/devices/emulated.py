"""An emulated board on a pseudo-terminal for a test's duration: the twin playing a scenario,
served by the protocol's emulator in a thread, as a reader on a real serial port meets it."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from openbms.devices.emulator import Emulator, PtyPort, run_emulator
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

# A board whose firmware hangs from the first moment: silent whatever it is asked.
HUNG = """\
name: hung from the start
pack: {series: 4, capacity_ah: 50, soc: 0.7}
timeline:
  - inject: {fault: firmware_hang}
  - run: 1h
"""


def emulated_port(
    tmp_path: Path, text: str, protocol: str = "jbd", speed: float = 20.0, allow_control: bool = False
) -> Iterator[str]:
    """Yield the path of a pseudo-terminal where ``protocol``'s emulator serves the scenario
    ``text`` at ``speed`` times real time (FET writes act when ``allow_control``); stop and close
    it afterwards."""
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    scenario, steps = load_scenario(path)
    emulator = Emulator(ScenarioRunner(scenario, steps), protocol, allow_control=allow_control)
    port = PtyPort()
    stop = threading.Event()
    thread = threading.Thread(
        target=run_emulator, args=(emulator, port), kwargs={"speed": speed, "stop": stop}, daemon=True
    )
    thread.start()
    try:
        yield port.path
    finally:
        stop.set()
        thread.join(5)
        port.close()


def stop_process(proc: subprocess.Popen[str]) -> None:
    """Stop a command started for a test as a user would (Ctrl-C), killing it only if it does not
    stop within 5 s, and close its pipes."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
