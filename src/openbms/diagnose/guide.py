"""The guide: a diagnosis without a connection, from what a person can observe.

One question at a time — does the BMS or its app respond, the terminal and cell voltages from a
multimeter, the temperature, what happened just before, whether a charger was tried and what it
did — turned into a ``Snapshot`` the one engine reasons about. Every "don't know" becomes an
assumption the advice states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from openbms.diagnose.engine import Diagnosis, diagnose
from openbms.diagnose.snapshot import ActiveFault, Snapshot, Thresholds

Ask = Callable[["Question"], str]
DONT_KNOW = ("", "?", "don't know", "dont know", "unknown", "n/a", "skip")


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    choices: tuple[str, ...] = ()  # empty: a free answer (a number, a list of numbers)


QUESTIONS = (
    Question("responds", "Does the BMS or its app respond at all (lights, app connection, display)?", ("yes", "no")),
    Question(
        "app_state",
        "If the app shows a state or fault, which one is closest?",
        ("normal", "protection", "sleep", "fault code", "none"),
    ),
    Question(
        "fault_code",
        "If it shows a fault code, what does it name?",
        (
            "under-voltage",
            "over-voltage",
            "over-current",
            "short circuit",
            "temperature",
            "communication",
            "sensor",
            "other",
        ),
    ),
    Question("terminal_v", "Voltage at the battery's terminals with a multimeter (V)?"),
    Question("cell_v", "Cell voltages at the balance leads, separated by spaces (V)?"),
    Question("temperature_c", "Battery temperature (°C)?"),
    Question(
        "before",
        "What happened just before it stopped?",
        ("ran flat", "heavy load", "short", "charging", "cold", "hot", "nothing", "cell replaced", "reset tried"),
    ),
    Question("load_connected", "Is a load (inverter, appliance) still connected?", ("yes", "no")),
    Question("charger_tried", "Was a charger connected to it?", ("yes", "no")),
    Question("charger_result", "What did the charger do?", ("charged", "nothing", "charged then stopped")),
    Question(
        "soft_reset_tried",
        "Was a soft reset (charger reconnect after a rest, or the reset button) tried?",
        ("yes, it worked", "yes, no change", "no"),
    ),
    Question("hard_reset_tried", "Was a hard reset (BMS fully unplugged) tried, and how long was it unplugged (min)?"),
)


def _number(answer: str) -> float | None:
    try:
        return float(answer.replace(",", ".").replace("V", "").replace("°C", "").strip())
    except ValueError:
        return None


def _known(answer: str) -> bool:
    return answer.strip().lower() not in DONT_KNOW


def build_snapshot(answers: dict[str, str], thresholds: Thresholds | None = None) -> tuple[Snapshot, list[str]]:
    """The engine's input from a person's answers, and what had to be assumed."""
    t = thresholds or Thresholds()
    a = {k: v.strip().lower() for k, v in answers.items()}
    assumed: list[str] = []
    faults: list[ActiveFault] = []
    events: list[dict[str, object]] = []

    def fault(name: str, klass: str) -> None:
        faults.append(ActiveFault.model_validate({"fault": name, "class": klass}))

    responds = {"yes": True, "no": False}.get(a.get("responds", ""))
    if responds is None:
        assumed.append("assumed the BMS responds (you did not know)")
        responds = True
    cells: list[float | None] | None = None
    if _known(a.get("cell_v", "")):
        values = [_number(x) for x in a["cell_v"].replace(";", " ").split()]
        cells = [v for v in values] if any(v is not None for v in values) else None
    if cells is None:
        assumed.append("cell voltages unknown: a damaged cell cannot be ruled out; measure them if you can")
    terminal = _number(a.get("terminal_v", "")) if _known(a.get("terminal_v", "")) else None
    temperature = _number(a.get("temperature_c", "")) if _known(a.get("temperature_c", "")) else None
    if temperature is None:
        assumed.append("temperature unknown: assumed normal (10–35 °C)")
    before = a.get("before", "")
    code = a.get("fault_code", "") if _known(a.get("fault_code", "")) else ""
    app_state = a.get("app_state", "") if _known(a.get("app_state", "")) else ""

    state = "normal"
    if not responds:
        # Silence: asleep after a cut-off, or hung. A charger that changed nothing tells them apart.
        tried_charger = a.get("charger_tried") == "yes"
        if before == "ran flat" and not (tried_charger and a.get("soft_reset_tried") == "yes, no change"):
            state = "sleep"
            fault("cell_undervoltage", "charger")
        else:
            state = "unresponsive"
    elif app_state == "sleep":
        state = "sleep"
        fault("cell_undervoltage", "charger")
    elif app_state in ("protection", "fault code") or code:
        state = "protected"
    if state == "protected":
        mapping = {
            "under-voltage": ("cell_undervoltage", "charger"),
            "over-voltage": ("cell_overvoltage", "auto"),
            "over-current": ("discharge_overcurrent", "load-removal"),
            "short circuit": ("short_circuit", "load-removal"),
            "communication": ("comm_error", "soft"),
            "sensor": ("sensor_fault", "latched"),
        }
        if code == "temperature":
            hot = temperature is None or temperature >= 30
            fault("discharge_overtemperature" if hot else "charge_undertemperature", "auto")
        elif code in mapping:
            fault(*mapping[code])
        elif before == "ran flat":
            fault("cell_undervoltage", "charger")
        elif before == "heavy load":
            fault("discharge_overcurrent", "load-removal")
        elif before == "short":
            fault("short_circuit", "load-removal")
        else:
            assumed.append("the fault is unknown: assumed a protection whose cause has passed")
            fault("discharge_overcurrent", "load-removal")
    known_cells = [v for v in cells or [] if v is not None]
    if known_cells and max(known_cells) < t.deep_discharge_v:
        fault("deep_discharge", "persistent")
        state = "locked"
    soft = a.get("soft_reset_tried", "")
    if soft == "yes, no change":
        events.append({"kind": "reset", "method": "charger", "result": "refused", "reason": "no change seen"})
        if state in ("protected", "sleep") and not any(f.klass == "latched" for f in faults):
            # A soft reset that changed nothing on a protection whose cause is gone: it is latched.
            faults = [ActiveFault.model_validate({"fault": f.fault, "class": "latched"}) for f in faults] or [
                ActiveFault.model_validate({"fault": "sensor_fault", "class": "latched"})
            ]
            if state == "sleep":
                state = "unresponsive"
    hard_min = _number(a.get("hard_reset_tried", "")) if _known(a.get("hard_reset_tried", "")) else None
    if hard_min is not None and hard_min * 60 < t.hold_up_s:
        events.append({"kind": "reset", "method": "hard", "result": "incomplete"})
    snapshot = Snapshot(
        source="guide",
        state=state,
        faults=faults,
        cell_v=cells,
        temperature_c=None if temperature is None else [temperature],
        pack_v=terminal,
        load_connected={"yes": True, "no": False}.get(a.get("load_connected", "")),
        charger_connected=a.get("charger_tried") == "yes" and a.get("charger_result") == "charged",
        current_a=1.0 if a.get("charger_result") == "charged" else 0.0,
        responds=responds,
        cell_replaced=before == "cell replaced",
        events=events,
        thresholds=t,
    )
    if snapshot.load_connected is None:
        assumed.append("assumed the loads are disconnected")
    return snapshot, assumed


def run_guide(ask: Ask, thresholds: Thresholds | None = None) -> Diagnosis:
    """Ask every question (``ask`` returns the answer text) and diagnose."""
    answers = {q.key: ask(q) for q in QUESTIONS}
    snapshot, assumed = build_snapshot(answers, thresholds)
    result = diagnose(snapshot)
    return result.model_copy(update={"assumptions": assumed + list(result.assumptions)})
