"""MQTT and Home Assistant discovery against a real broker (Debian's mosquitto, which ``.ci/run``
installs; skipped where it is missing): the discovery documents Home Assistant reads, the state,
availability with its last will when the process dies, controls only with an authenticated
broker, and a broker restart that loses nothing queued.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

mqtt = pytest.importorskip("paho.mqtt.client")

from openbms.apps.live import TwinSource  # noqa: E402
from openbms.apps.mqtt import MqttError, MqttPublisher  # noqa: E402
from openbms.scenario.runner import ScenarioRunner  # noqa: E402
from openbms.scenario.schema import load_scenario  # noqa: E402
from tests.apps.waiting import until  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="no mosquitto on this machine (.ci/run installs it)")
SERVE_SCENARIO = Path(str(resources.files("openbms.scenario").joinpath("library", "serve.yaml")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A mosquitto on a free port, with persistence so a restart keeps sessions and queues."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        (folder / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\n" + ("user root\n" if os.geteuid() == 0 else "")
            # Started as root, mosquitto would drop to its own user and could not save its state here.
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")], stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)  # mosquitto saves its persistence file on SIGTERM
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    yield b
    b.stop()


class Listener:
    """A subscriber that keeps every message by topic."""

    def __init__(self, port: int, topics: list[str], client_id: str | None = None) -> None:
        self.messages: dict[str, list[bytes]] = {}
        self.retained: dict[str, bytes] = {}
        self._lock = threading.Lock()
        persistent = client_id is not None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=not persistent
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)

        def on_connect(client: Any, *_: Any) -> None:
            client.subscribe([(t, 1) for t in topics])

        def on_message(client: Any, userdata: Any, message: Any) -> None:
            with self._lock:
                self.messages.setdefault(message.topic, []).append(bytes(message.payload))
                if message.retain:
                    self.retained[message.topic] = bytes(message.payload)

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return list(self.messages.get(topic, []))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def twin() -> Iterator[TwinSource]:
    scenario, steps = load_scenario(SERVE_SCENARIO)
    runner = ScenarioRunner(scenario, steps, engine="fast")
    runner.max_chunk_cycles = 20
    source = TwinSource(runner, 10.0)
    source.start()
    yield source
    source.stop()


def test_home_assistant_finds_the_battery_and_its_state(broker: Broker, twin: TwinSource) -> None:
    listener = Listener(broker.port, ["homeassistant/#", "openbms/#"])
    publisher = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}", lambda: twin.latest().doc, node="bank1", every_s=0.2)
    publisher.start()
    try:
        config_topic = "homeassistant/sensor/bank1/pack_voltage/config"
        config = json.loads(until(lambda: listener.on(config_topic))[0])
        assert config["unit_of_measurement"] == "V" and config["device_class"] == "voltage"
        assert config["state_class"] == "measurement" and config["expire_after"] > 0
        assert config["state_topic"] == "openbms/bank1/state"
        assert config["availability_topic"] == "openbms/bank1/availability"
        soc = json.loads(until(lambda: listener.on("homeassistant/sensor/bank1/soc/config"))[0])
        assert soc["device_class"] == "battery" and soc["unit_of_measurement"] == "%"

        # The sixteen cell sensors' configs may still be on their way (a busy CI machine): wait for
        # them, then check there are exactly sixteen.
        def cell_configs() -> list[str]:
            found = [t for t in list(listener.messages) if t.startswith("homeassistant/sensor/bank1/cell_")]
            return found if len(found) >= 16 else []

        cells = until(cell_configs)
        assert len(cells) == 16
        fets = json.loads(until(lambda: listener.on("homeassistant/binary_sensor/bank1/discharge_fet/config"))[0])
        assert fets["payload_on"] == "True"
        assert not [t for t in listener.messages if t.startswith(("homeassistant/switch", "homeassistant/button"))]
        assert until(lambda: listener.on("openbms/bank1/availability"))[-1] == b"online"
        state = json.loads(until(lambda: listener.on("openbms/bank1/state"))[-1])
        assert 50 < state["pack_v"] < 55 and len(state["cell_v"]) == 16 and state["problem"] is False
        assert state["state"] == "normal"
    finally:
        publisher.stop()
        listener.close()
    assert listener.on("openbms/bank1/availability")[-1] == b"offline"


def test_controls_need_an_authenticating_broker_and_then_switch_the_twin(broker: Broker, twin: TwinSource) -> None:
    with pytest.raises(MqttError, match="authenticates"):
        MqttPublisher(f"mqtt://127.0.0.1:{broker.port}", lambda: twin.latest().doc, act=twin.act)
    listener = Listener(broker.port, ["homeassistant/#"])
    url = f"mqtt://owner:secret@127.0.0.1:{broker.port}"
    publisher = MqttPublisher(url, lambda: twin.latest().doc, node="bank2", every_s=0.2, act=twin.act)
    publisher.start()
    try:
        switch = json.loads(until(lambda: listener.on("homeassistant/switch/bank2/discharge_fet/config"))[0])
        assert switch["command_topic"] == "openbms/bank2/set/discharge_fet"
        until(lambda: listener.on("homeassistant/button/bank2/soft_reset/config"))
        until(publisher.connected.is_set)
        time.sleep(0.5)  # the publisher's subscription is in place once it has announced
        sender = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sender.connect("127.0.0.1", broker.port)
        sender.loop_start()
        sender.publish("openbms/bank2/set/discharge_fet", "OFF", qos=1).wait_for_publish(5)
        until(lambda: twin.latest().doc["discharge_fet"] is False)
        sender.publish("openbms/bank2/set/discharge_fet", "ON", qos=1).wait_for_publish(5)
        until(lambda: twin.latest().doc["discharge_fet"] is True)
        sender.disconnect()
        sender.loop_stop()
    finally:
        publisher.stop()
        listener.close()


def test_a_broker_restart_loses_nothing_that_was_queued(broker: Broker, twin: TwinSource) -> None:
    topic = "openbms/bank3/state"
    listener = Listener(broker.port, [topic], client_id="openbms-test-listener")
    publisher = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}", lambda: twin.latest().doc, node="bank3", every_s=0.1)
    publisher.start()
    try:
        until(lambda: len(listener.on(topic)) >= 5)
        broker.stop()
        time.sleep(2.0)  # about 20 states are queued by the publisher meanwhile
        broker.start()
        until(lambda: max(json.loads(m)["n"] for m in listener.on(topic)) > 40, timeout_s=30)
    finally:
        publisher.stop()
        listener.close()
    seen = sorted({json.loads(m)["n"] for m in listener.on(topic)})
    assert seen == list(range(seen[0], seen[-1] + 1)), "every state published across the restart arrives"


def test_the_last_will_says_offline_when_the_process_dies(broker: Broker, tmp_path: Path) -> None:
    listener = Listener(broker.port, ["openbms/bank4/availability"])
    port = _free_port()
    command = [sys.executable, "-m", "openbms.cli", "serve", "--port", str(port), "--token-file", str(tmp_path / "t")]
    command += ["--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--mqtt-node", "bank4"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        until(lambda: listener.on("openbms/bank4/availability")[-1:] == [b"online"], timeout_s=60)
        child.kill()  # no goodbye: the broker publishes the last will
        child.wait(10)
        until(lambda: listener.on("openbms/bank4/availability")[-1:] == [b"offline"], timeout_s=20)
    finally:
        if child.poll() is None:
            child.kill()
        listener.close()


def test_emulate_and_monitor_publish_too(broker: Broker, tmp_path: Path) -> None:
    """The emulated board (a child process, as a user starts it) and a monitor reading it both
    publish their readings; the monitor reads the emulator over its TCP port."""
    from typer.testing import CliRunner

    from openbms.cli import app

    listener = Listener(broker.port, ["openbms/#"])
    scenario = tmp_path / "pack.yaml"
    scenario.write_text("name: pack\npack: {series: 4, capacity_ah: 50, soc: 0.6}\ntimeline:\n  - run: 1h\n")
    tcp = _free_port()
    command = [sys.executable, "-m", "openbms.cli", "emulate", str(scenario), "--protocol", "jbd", "--tcp", str(tcp)]
    command += ["--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--mqtt-node", "em1"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        state = json.loads(until(lambda: listener.on("openbms/em1/state"), timeout_s=60)[-1])
        assert len(state["cell_v"]) == 4 and state["ok"] is True and state["recommendation"] == "none"
        url = f"mqtt://127.0.0.1:{broker.port}"
        result = CliRunner().invoke(
            app,
            ["monitor", "--device", f"jbd:socket://127.0.0.1:{tcp}", "--count", "3", "--interval", "300ms",
             "--json", "--mqtt", url, "--mqtt-node", "mon1"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        read = json.loads(until(lambda: listener.on("openbms/mon1/state"))[-1])
        assert read["protocol"] == "jbd" and len(read["cell_v"]) == 4 and read["recommendation"] == "none"
    finally:
        child.kill()
        child.wait(10)
        listener.close()
