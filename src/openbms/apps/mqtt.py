"""MQTT with Home Assistant discovery (``--mqtt mqtt://[user:password@]host:1883`` on serve,
monitor and emulate).

Topics, for a node id ``NODE`` (``openbms`` unless ``--mqtt-node`` says otherwise):

- ``openbms/NODE/availability``: ``online`` (retained), ``offline`` as the last will, so Home
  Assistant greys the entities out when the process dies or the link drops.
- ``openbms/NODE/state``: the reading as JSON (QoS 1), at most every ``every_s``: the API's
  reading document plus ``n`` (a counter, so a reader can tell nothing was lost), ``min_cell_v``,
  ``max_cell_v``, ``max_temperature_c``, ``problem`` (any active fault) and the diagnosis's
  ``recommendation`` when the source has one.
- ``homeassistant/<component>/NODE/<object>/config``: the discovery documents (retained): sensors
  for pack voltage, current, SOC, each cell, the temperature extremes, the state, the active
  faults and the recommendation; binary sensors for both FETs and the problem flag; and only when
  control is allowed *and* the broker was given a user name: switches for the FETs
  (``openbms/NODE/set/charge_fet``, ``…/discharge_fet``: ``ON``/``OFF``) and a soft-reset button
  (``openbms/NODE/cmd/soft_reset``).

paho-mqtt keeps QoS 1 messages published while the broker is away and sends them when it is
back (the client reconnects by itself, 1 to 10 s apart), so a broker restart loses nothing that
was queued.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger("openbms.mqtt")

DISCOVERY_PREFIX = "homeassistant"
EXPIRE_AFTER_S = 120  # Home Assistant marks a value unavailable when no state came this long


class MqttError(ValueError):
    """An MQTT URL or option that cannot be used; one sentence."""


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    username: str | None
    password: str | None


def parse_broker(url: str) -> Broker:
    """``mqtt://[user[:password]@]host[:port]`` (port 1883 by default)."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise MqttError(f"{url!r} is not an MQTT URL; use mqtt://host:1883 or mqtt://user:password@host:1883")
    try:
        port = parts.port or 1883
    except ValueError:
        raise MqttError(f"{url!r}: the port is not a number from 1 to 65535") from None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return Broker(parts.hostname, port, username, password)


# The sensors every node announces: (key, name, unit, device class, value template).
SENSORS: tuple[tuple[str, str, str | None, str | None, str], ...] = (
    ("pack_voltage", "Pack voltage", "V", "voltage", "{{ value_json.pack_v }}"),
    ("current", "Current", "A", "current", "{{ value_json.current_a }}"),
    ("soc", "State of charge", "%", "battery", "{{ (value_json.soc * 100) | round(1) }}"),
    ("max_temperature", "Hottest sensor", "°C", "temperature", "{{ value_json.max_temperature_c }}"),
    ("min_cell", "Lowest cell", "V", "voltage", "{{ value_json.min_cell_v }}"),
    ("state", "BMS state", None, None, "{{ value_json.state }}"),
    ("faults", "Active faults", None, None, "{{ value_json.faults | join(', ') }}"),
    ("recommendation", "Recommendation", None, None, "{{ value_json.recommendation }}"),
)
# Binary sensors: (key, name, device class, template of True/False).
BINARY_SENSORS: tuple[tuple[str, str, str | None, str], ...] = (
    ("charge_fet", "Charge FET", None, "{{ value_json.charge_fet }}"),
    ("discharge_fet", "Discharge FET", None, "{{ value_json.discharge_fet }}"),
    ("problem", "BMS fault", "problem", "{{ value_json.problem }}"),
)


def _entity(node: str, key: str, name: str, template: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "unique_id": f"{node}_{key}",
        "object_id": f"{node}_{key}",
        "availability_topic": f"openbms/{node}/availability",
        "device": {"identifiers": [node], "name": f"openbms {node}", "manufacturer": "openbms", "model": "BMS"},
    }
    if template is not None:
        doc.update(state_topic=f"openbms/{node}/state", value_template=template, expire_after=EXPIRE_AFTER_S)
    return doc


def discovery(node: str, cells: int, control: bool) -> dict[str, dict[str, Any]]:
    """Every discovery document, by topic."""
    docs: dict[str, dict[str, Any]] = {}

    def add(component: str, key: str, doc: dict[str, Any]) -> None:
        docs[f"{DISCOVERY_PREFIX}/{component}/{node}/{key}/config"] = doc

    cell_rows = tuple(
        (f"cell_{i}", f"Cell {i}", "V", "voltage", f"{{{{ value_json.cell_v[{i - 1}] }}}}") for i in range(1, cells + 1)
    )
    for key, name, unit, device_class, template in SENSORS + cell_rows:
        doc = _entity(node, key, name, template)
        if unit is not None:
            doc.update(unit_of_measurement=unit, state_class="measurement")
        if device_class is not None:
            doc["device_class"] = device_class
        add("sensor", key, doc)
    for key, name, device_class, template in BINARY_SENSORS:
        doc = _entity(node, key, name, template)
        doc.update(payload_on="True", payload_off="False")
        if device_class is not None:
            doc["device_class"] = device_class
        add("binary_sensor", key, doc)
    if control:
        for fet in ("charge", "discharge"):
            doc = _entity(
                node,
                f"{fet}_fet_switch",
                f"{fet.capitalize()} FET",
                f"{{{{ 'ON' if value_json.{fet}_fet else 'OFF' }}}}",
            )
            doc.update(
                command_topic=f"openbms/{node}/set/{fet}_fet", payload_on="ON", payload_off="OFF", device_class="switch"
            )
            add("switch", f"{fet}_fet", doc)
        button = _entity(node, "soft_reset", "Soft reset")
        button.update(command_topic=f"openbms/{node}/cmd/soft_reset", device_class="restart")
        add("button", "soft_reset", button)
    return docs


def state_of(doc: dict[str, Any], n: int, recommendation: str | None) -> dict[str, Any]:
    cells = [v for v in doc.get("cell_v") or [] if v is not None]
    temps = [t for t in doc.get("temperature_c") or [] if t is not None]
    return {
        **doc,
        "n": n,
        "min_cell_v": min(cells) if cells else None,
        "max_cell_v": max(cells) if cells else None,
        "max_temperature_c": max(temps) if temps else None,
        "problem": bool(doc.get("faults")) or not doc.get("ok", True),
        "recommendation": recommendation,
    }


class MqttPublisher:
    """Publishes ``read()`` (an API reading document) every ``every_s`` in a thread, with the
    discovery documents; with ``act`` (control allowed, broker user given) it subscribes to the
    switch and button topics and hands their commands to it as actions."""

    def __init__(
        self,
        url: str,
        read: Callable[[], dict[str, Any]],
        node: str = "openbms",
        every_s: float = 1.0,
        act: Callable[[dict[str, Any]], None] | None = None,
        recommend: Callable[[], str | None] | None = None,
    ) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise MqttError("--mqtt needs paho-mqtt: pip install '.[mqtt]'") from None
        if not node.replace("_", "").replace("-", "").isalnum():
            raise MqttError(f"--mqtt-node {node!r}: use letters, digits, - and _ only")
        self.broker = parse_broker(url)
        if act is not None and self.broker.username is None:
            raise MqttError("controls over MQTT need a broker that authenticates: give mqtt://user:password@host")
        self.node = node
        self.every_s = every_s
        self._read = read
        self._act = act
        self._recommend = recommend
        self._n = 0
        self._announced_cells = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="openbms-mqtt", daemon=True)
        self.topic = f"openbms/{node}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"openbms-{node}", clean_session=True)
        client.max_queued_messages_set(0)  # unbounded: nothing queued while the broker is away is dropped
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.will_set(f"{self.topic}/availability", "offline", qos=1, retain=True)
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        self.client = client
        self.connected = threading.Event()

    def start(self) -> None:
        try:
            self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        except (OSError, ValueError) as err:
            raise MqttError(f"cannot reach the broker {self.broker.host}:{self.broker.port}: {err}") from None
        self.client.loop_start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.connected.is_set():
            self.client.publish(f"{self.topic}/availability", "offline", qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("the broker refused the connection: %s", reason)
            return
        client.publish(f"{self.topic}/availability", "online", qos=1, retain=True)
        self._announced_cells = -1  # announce again: a restarted broker may have lost retained docs
        if self._act is not None:
            client.subscribe([(f"{self.topic}/set/+", 1), (f"{self.topic}/cmd/+", 1)])
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if self._act is None:
            return
        topic, payload = str(message.topic), bytes(message.payload).decode("utf-8", "replace").strip().upper()
        try:
            switches = (f"{self.topic}/set/charge_fet", f"{self.topic}/set/discharge_fet")
            if topic in switches and payload in ("ON", "OFF"):
                fet = topic.rsplit("/", 1)[1].removesuffix("_fet")
                self._act({"fets": {f"{fet}_on": payload == "ON"}})
            elif topic == f"{self.topic}/cmd/soft_reset":
                self._act({"command": "soft_reset"})
            else:
                log.warning("ignored MQTT command %s %r", topic, payload)
        except Exception as err:  # noqa: BLE001 - a bad command must not stop the publisher
            log.warning("MQTT command %s refused: %s", topic, err)

    # ------------------------------------------------------------------ publishing
    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.publish_once()
            except Exception as err:  # noqa: BLE001 - the publisher outlives any one reading
                log.warning("MQTT publish failed: %s", err)
            self._stop.wait(max(self.every_s - (time.monotonic() - started), 0.0))

    def publish_once(self) -> None:
        doc = self._read()
        cells = len(doc.get("cell_v") or [])
        if cells != self._announced_cells and self.connected.is_set():
            for topic, config in discovery(self.node, cells, self._act is not None).items():
                self.client.publish(topic, json.dumps(config), qos=1, retain=True)
            self._announced_cells = cells
        self._n += 1
        recommendation = self._recommend() if self._recommend is not None else None
        state = state_of(doc, self._n, recommendation)
        self.client.publish(f"{self.topic}/state", json.dumps(state, allow_nan=False, default=str), qos=1)


def for_source(url: str, source: Any, node: str, control: bool, every_s: float = 1.0) -> MqttPublisher:
    """A publisher of a ``live`` source (serve): its readings, its diagnosis's recommendation and,
    with ``control``, its actions, each logged like a control from the page (origin ``mqtt``)."""
    from openbms.apps.live import ActionError

    def act(step: dict[str, Any]) -> None:
        what = str(next(iter(step)))
        fields = {"step": json.dumps(step, separators=(",", ":"))}
        try:
            source.act(step)
        except ActionError as err:
            source.log_control(what, False, "mqtt", str(err), fields)
            raise
        source.log_control(what, True, "mqtt", "", fields)

    def recommend() -> str | None:
        value = source.diagnosis().get("recommendation")
        return None if value is None else str(value)

    return MqttPublisher(url, lambda: source.latest().doc, node, every_s, act if control else None, recommend)


def emulator_publisher(url: str, emulator: Any, node: str, control: bool) -> MqttPublisher:
    """A publisher of an emulated board (emulate): the twin's reading; with ``control`` the FET
    switches act as a monitor's write over the link (``mqtt``), the button as a soft reset."""
    from openbms.apps.live import ActionError, fet_request, reading_doc

    def read() -> dict[str, Any]:
        with emulator.lock:
            return reading_doc(emulator.twin.reading(0))

    def act(step: dict[str, Any]) -> None:
        twin = emulator.twin
        if "fets" in step:
            charge, discharge = fet_request(step["fets"], read())
            with emulator.lock:
                if not twin.control_write(0, "mqtt", "fet", True, charge_on=charge, discharge_on=discharge):
                    raise ActionError("the BMS does not listen now")
        elif step == {"command": "soft_reset"}:
            with emulator.lock:
                twin.command_soft_reset(0)

    def recommend() -> str | None:
        from openbms.diagnose.from_twin import diagnosis_of

        with emulator.lock:
            return diagnosis_of(emulator.twin, 0)[0]

    return MqttPublisher(url, read, node, 1.0, act if control else None, recommend)


def poll_publisher(url: str, node: str, every_s: float) -> tuple[MqttPublisher, Callable[[Any], None]]:
    """A publisher for ``monitor``: the returned callback takes each poll (``devices.reader.Poll``);
    the diagnosis of the last one gives the recommendation."""
    from openbms.apps.live import reading_doc
    from openbms.diagnose.engine import diagnose
    from openbms.diagnose.from_device import snapshot_from_reading

    last: list[Any] = [None]

    def keep(poll: Any) -> None:
        last[0] = poll

    def read() -> dict[str, Any]:
        poll = last[0]
        return reading_doc(None, "no reading yet") if poll is None else reading_doc(poll.reading, poll.error)

    def recommend() -> str | None:
        poll = last[0]
        if poll is None:
            return None
        return str(diagnose(snapshot_from_reading(poll.reading, poll.error)).recommendation)

    return MqttPublisher(url, read, node, every_s, None, recommend), keep
