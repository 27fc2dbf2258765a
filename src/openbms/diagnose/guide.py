"""The guide: a diagnosis without a connection, from what a person can observe.

First the battery (chemistry, cells in series: the limits the advice quotes come from that
chemistry's profile scaled to the cell count), then one question at a time — does the BMS or its
app respond, the terminal and cell voltages from a multimeter, the temperature, what happened just
before, whether a charger was tried and what it did — turned into a ``Snapshot`` the one engine
reasons about. Answers are read the way people give them ("y", "yes it blinks", "ran flat",
"25C", "3.1V"); an answer that cannot be read is asked again (at most ``MAX_TRIES`` times), never
silently taken as "don't know". Every "don't know" — typed, Enter alone, or unreadable — becomes
an assumption the advice states.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from openbms.diagnose.engine import Diagnosis, Reason, diagnose
from openbms.diagnose.procedures import ProcedureStep
from openbms.diagnose.snapshot import ActiveFault, Snapshot, Thresholds

Ask = Callable[["Question"], str]
DONT_KNOW = ("", "?", "don't know", "dont know", "unknown", "n/a", "skip", "idk", "not sure", "no idea", "dunno")
UNKNOWN = "don't know"  # the canonical answer for every form of "don't know"
MAX_TRIES = 3
CHEMISTRY_NAMES = {"lfp": "LiFePO4", "nmc": "NMC (li-ion)", "lto": "LTO"}
NOMINAL_CELL_V = {"lfp": 3.2, "nmc": 3.65, "lto": 2.4}
# Pack voltages sold under a nominal name, by chemistry: "48 V" LFP is 16S (51.2 V), not 15S.
NOMINAL_PACKS: dict[str, dict[float, int]] = {
    "lfp": {12: 4, 12.8: 4, 24: 8, 25.6: 8, 36: 12, 38.4: 12, 48: 16, 51.2: 16},
    "nmc": {12: 3, 24: 7, 36: 10, 48: 13, 52: 14, 60: 16, 72: 20},
    "lto": {12: 5, 24: 10, 48: 20},
}
MAX_SERIES = 32

_YES = ("y", "yes", "yeah", "yep", "yup", "ya", "sure", "true", "correct", "it does", "ok", "okay")
_NO = ("n", "no", "nope", "nah", "false", "not", "never", "doesn't", "doesnt", "does not", "nothing", "dead")


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    choices: tuple[str, ...] = ()  # empty: a free answer (a number, a list of numbers)
    hint: str = ""  # what an answer looks like, shown when one could not be read
    label: str = ""  # a few words naming the question in the report's assumptions

    @property
    def name(self) -> str:
        return self.label or self.key.replace("_", " ")


def _norm(answer: str) -> str:
    text = answer.strip().lower().replace("’", "'")
    return re.sub(r"\s+", " ", text)


def is_dont_know(answer: str) -> bool:
    text = _norm(answer).strip(" .!")
    return text in DONT_KNOW or any(
        re.search(rf"(?<![\w']){re.escape(p)}(?![\w'])", text) for p in DONT_KNOW if len(p) > 3
    )


def _has(text: str, phrase: str) -> int:
    """Where ``phrase`` occurs in ``text`` as whole words (-1: not at all)."""
    found = re.search(rf"(?<![\w']){re.escape(phrase)}(?![\w'])", text)
    return found.start() if found else -1


def yes_no(answer: str) -> str | None:
    """ "yes", "no", or None when the answer says neither (or both, unordered)."""
    text = _norm(answer)
    hits = [
        (pos, word) for word, phrases in (("yes", _YES), ("no", _NO)) for p in phrases if (pos := _has(text, p)) >= 0
    ]
    if not hits:
        return None
    return min(hits)[1]  # the first word decides: "yes, not since yesterday" is a yes


def number(answer: str) -> float | None:
    """The first number in the answer ("25C", "25 °C", "3,1 V", "about 13.2 volts")."""
    found = re.search(r"[-−]?\d+(?:[.,]\d+)?", answer)
    if not found:
        return None
    return float(found.group().replace(",", ".").replace("−", "-"))


def numbers(answer: str) -> list[float]:
    return [float(x.replace(",", ".")) for x in re.findall(r"\d+(?:[.,]\d+)?", answer.replace(", ", " "))]


# Synonyms of each multiple-choice option, as owners put it. Matched as whole words inside the answer.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "app_state": {
        "normal": ("normal", "fine", "ok", "okay", "working", "good", "all good"),
        "protection": ("protection", "protect", "protected", "protecting", "cut off", "cut-off", "cutoff", "tripped"),
        "sleep": ("sleep", "sleeping", "asleep", "standby", "off", "dark", "blank"),
        "fault code": ("fault code", "fault", "error", "alarm", "code", "warning"),
        "none": ("none", "nothing", "no app", "no display", "can't see", "cannot see", "no state"),
    },
    "fault_code": {
        "under-voltage": (
            "under-voltage",
            "undervoltage",
            "under voltage",
            "low voltage",
            "uv",
            "cuv",
            "low volt",
            "ran flat",
            "run flat",
            "flat",
            "empty",
            "discharged",
            "low cell",
            "cell low",
            "lvp",
            "lvc",
        ),
        "over-voltage": (
            "over-voltage",
            "overvoltage",
            "over voltage",
            "high voltage",
            "ov",
            "cov",
            "overcharge",
            "overcharged",
            "full",
            "cell high",
            "high cell",
            "hvp",
        ),
        "over-current": (
            "over-current",
            "overcurrent",
            "over current",
            "oc",
            "ocd",
            "occ",
            "too much current",
            "overload",
            "overloaded",
            "current",
            "too much load",
        ),
        "short circuit": ("short circuit", "short", "shorted", "scd", "sc"),
        "temperature": (
            "temperature",
            "temp",
            "too hot",
            "hot",
            "overheat",
            "overheated",
            "overheating",
            "over temperature",
            "over-temperature",
            "otp",
            "ot",
            "ut",
            "too cold",
            "cold",
            "freezing",
            "under temperature",
        ),
        "communication": ("communication", "comm", "comms", "com error", "link", "bluetooth", "connection", "can bus"),
        "sensor": ("sensor", "ntc", "probe", "thermistor", "reading"),
        "other": ("other", "something else", "different"),
    },
    "before": {
        "ran flat": (
            "ran flat",
            "run flat",
            "went flat",
            "flat",
            "empty",
            "ran out",
            "ran down",
            "drained",
            "discharged",
            "low voltage",
            "undervoltage",
            "under-voltage",
            "under voltage",
            "dead battery",
            "ran it down",
            "used it up",
            "died",
        ),
        "heavy load": (
            "heavy load",
            "big load",
            "high load",
            "heavy",
            "load",
            "inverter",
            "kettle",
            "microwave",
            "motor",
            "compressor",
            "overload",
            "overloaded",
            "over-current",
            "overcurrent",
            "too much current",
        ),
        "short": ("short", "shorted", "short circuit", "sparks", "spark", "bang", "dropped a spanner"),
        "charging": ("charging", "on charge", "charger", "was charging", "solar", "charge"),
        "cold": ("cold", "too cold", "freezing", "frost", "below zero", "winter", "snow"),
        "hot": ("hot", "too hot", "heat", "overheated", "overheating", "overheat", "sun", "summer", "warm"),
        "nothing": ("nothing", "nothing special", "no reason", "out of the blue", "just stopped", "idle", "normal"),
        "cell replaced": (
            "cell replaced",
            "replaced a cell",
            "new cell",
            "changed a cell",
            "swapped a cell",
            "replaced cell",
            "replaced the cell",
            "cell swap",
            "cell change",
            "replaced cells",
            "new cells",
        ),
        "reset tried": ("reset tried", "reset", "tried a reset", "rebooted", "reboot", "power cycled"),
    },
    "charger_result": {
        "charged": ("charged", "charges", "charging", "took charge", "it charged", "worked", "fine", "yes", "full"),
        "nothing": ("nothing", "no change", "did nothing", "no current", "didn't", "did not", "no", "0 a", "zero"),
        "charged then stopped": (
            "charged then stopped",
            "then stopped",
            "stopped",
            "cut out",
            "cuts out",
            "started then",
            "for a while",
            "briefly",
            "a few seconds",
            "then nothing",
        ),
    },
}


def choice(key: str, answer: str) -> str | None:
    """The option of question ``key`` the answer names (its words or a synonym), or None."""
    text = _norm(answer).strip(" .!")
    options = SYNONYMS[key]
    if text in options:
        return text
    best: tuple[int, int, str] | None = None
    for option, phrases in options.items():
        for phrase in (option, *phrases):
            pos = _has(text, phrase)
            if pos >= 0 and (best is None or (len(phrase), -pos) > (best[0], best[1])):
                best = (len(phrase), -pos, option)
    return best[2] if best else None


def chemistry(answer: str) -> str | None:
    text = _norm(answer)
    if re.search(r"lfp|lifepo|life?po4|lfe|iron|phosphate|lipo4", text):
        return "lfp"
    if re.search(r"lto|titanate", text):
        return "lto"
    if re.search(r"nmc|ncm|nca|li-?ion|lithium[- ]ion|18650|21700|lico|lmo", text):
        return "nmc"
    return None


def series(answer: str, chem: str | None) -> int | None:
    """Cells in series: "4S", "16s", "13S4P", "4 cells", or a nominal pack voltage ("48V") for a known chemistry."""
    text = _norm(answer)
    found = re.search(r"(\d+)\s*s(?![a-z])|(\d+)\s*s\d+p", text)
    n: int | None = None
    if found:
        n = int(found.group(1) or found.group(2))
    elif (volts := re.search(r"(\d+(?:[.,]\d+)?)\s*(?:v|volt)", text)) is not None:
        v = float(volts.group(1).replace(",", "."))
        if chem is None:
            return None
        n = NOMINAL_PACKS[chem].get(v)
        if n is None:
            guess = round(v / NOMINAL_CELL_V[chem])
            n = guess if guess and abs(v - guess * NOMINAL_CELL_V[chem]) <= 0.1 * guess * NOMINAL_CELL_V[chem] else None
    elif re.fullmatch(r"\d+(?: cells?(?: in series)?)?", text):
        n = int(text.split()[0])
    return n if n is not None and 1 <= n <= MAX_SERIES else None


def soft_reset(answer: str) -> str | None:
    text = _norm(answer)
    failed = (
        "no change",
        "no luck",
        "no difference",
        "no effect",
        "didn't help",
        "did not help",
        "didn't work",
        "did not work",
        "nothing changed",
        "nothing happened",
        "still",
        "failed",
        "same",
        "no good",
    )
    worked = ("worked", "fixed", "woke", "came back", "helped", "it works", "back on", "solved", "cleared")
    if any(_has(text, p) >= 0 for p in failed):
        return "yes, no change"
    if any(_has(text, p) >= 0 for p in worked):
        return "yes, it worked"
    if yes_no(text) == "no" or any(_has(text, p) >= 0 for p in ("not tried", "haven't", "have not", "never")):
        return "no"
    return None  # a bare "yes": did it work? asked again


def minutes(answer: str) -> str | None:
    """How long a hard reset lasted, in minutes ("20", "20 min", "1 h", "30 s"), or "no", or "yes"."""
    text = _norm(answer)
    value = number(text)
    if value is not None:
        if re.search(r"\d\s*(h|hour|hr)", text):
            value *= 60
        elif re.search(r"\d\s*(s|sec|second)", text):
            value /= 60
        return f"{value:g}"
    return yes_no(text)


def _parser(q: Question) -> Callable[[str, dict[str, str]], str | None]:
    """How the answer to ``q`` is read into its canonical form (None: unreadable)."""
    if q.key == "chemistry":
        return lambda a, _ctx: chemistry(a)
    if q.key == "series":
        return lambda a, ctx: (lambda n: None if n is None else str(n))(series(a, ctx.get("chemistry")))
    if q.key in SYNONYMS:
        return lambda a, _ctx: choice(q.key, a)
    if q.key == "soft_reset_tried":
        return lambda a, _ctx: soft_reset(a)
    if q.key == "hard_reset_tried":
        return lambda a, _ctx: minutes(a)
    if q.key == "cell_v":
        return lambda a, _ctx: " ".join(f"{v:g}" for v in numbers(a)) or None
    if q.key in ("terminal_v", "temperature_c"):

        def read(a: str, _ctx: dict[str, str]) -> str | None:
            value = number(a)
            if value is not None and q.key == "temperature_c" and re.search(r"\d\s*°?\s*f\b", _norm(a)):
                value = (value - 32) * 5 / 9
            return None if value is None else f"{value:g}"

        return read
    return lambda a, _ctx: yes_no(a)


def read_answer(q: Question, answer: str, ctx: dict[str, str] | None = None) -> str | None:
    """The canonical answer (``UNKNOWN`` for every form of "don't know"), or None when unreadable."""
    if is_dont_know(answer):
        return UNKNOWN
    return _parser(q)(answer, ctx or {})


QUESTIONS = (
    Question(
        "chemistry",
        "What kind of cells does the battery have?",
        ("lfp (LiFePO4)", "nmc (li-ion)", "lto"),
        hint="LiFePO4 (lfp), NMC / li-ion, or LTO",
        label="the cell chemistry",
    ),
    Question(
        "series",
        "How many cells in series (e.g. 4S, 16S) — or the pack's nominal voltage (12V, 24V, 48V)?",
        hint="a cell count such as 4S, 8S, 13S, 16S, or a nominal voltage such as 12V",
        label="the number of cells in series",
    ),
    Question(
        "responds",
        "Does the BMS or its app respond at all (lights, app connection, display)?",
        ("yes", "no"),
        label="whether the BMS responds",
    ),
    Question(
        "app_state",
        "If the app shows a state or fault, which one is closest?",
        ("normal", "protection", "sleep", "fault code", "none"),
        label="the state the app shows",
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
        hint="e.g. low voltage, over-current, too hot",
        label="the fault code",
    ),
    Question(
        "terminal_v",
        "Voltage at the battery's terminals with a multimeter (V)?",
        hint="a number of volts, e.g. 13.1 or 13.1V",
        label="the terminal voltage",
    ),
    Question(
        "cell_v",
        "Cell voltages at the balance leads, separated by spaces (V)?",
        hint="numbers of volts, e.g. 3.30 3.31 3.29 3.30",
        label="the cell voltages",
    ),
    Question(
        "temperature_c", "Battery temperature (°C)?", hint="a temperature, e.g. 25 or 25C", label="the temperature"
    ),
    Question(
        "before",
        "What happened just before it stopped?",
        ("ran flat", "heavy load", "short", "charging", "cold", "hot", "nothing", "cell replaced", "reset tried"),
        hint="e.g. it ran flat, a heavy load, it got too hot",
        label="what happened before",
    ),
    Question(
        "load_connected",
        "Is a load (inverter, appliance) still connected?",
        ("yes", "no"),
        label="whether a load is connected",
    ),
    Question("charger_tried", "Was a charger connected to it?", ("yes", "no"), label="whether a charger was tried"),
    Question(
        "charger_result",
        "What did the charger do?",
        ("charged", "nothing", "charged then stopped"),
        label="what the charger did",
    ),
    Question(
        "soft_reset_tried",
        "Was a soft reset (charger reconnect after a rest, or the reset button) tried?",
        ("yes, it worked", "yes, no change", "no"),
        hint="did it work? e.g. yes it worked / yes but no change / no",
        label="whether a soft reset was tried",
    ),
    Question(
        "hard_reset_tried",
        "Was a hard reset (BMS fully unplugged) tried, and how long was it unplugged (min)?",
        hint="no, or how many minutes, e.g. 20 min",
        label="whether a hard reset was tried",
    ),
)
BY_KEY = {q.key: q for q in QUESTIONS}


def _relevant(key: str, a: dict[str, str]) -> bool:
    """Whether an unknown answer to ``key`` matters (no assumption is stated for one that does not)."""
    if key in ("app_state", "fault_code") and a.get("responds") == "no":
        return False  # a silent BMS shows nothing
    if key == "fault_code":
        return a.get("app_state") not in ("normal", "none", "sleep")
    if key == "charger_result":
        return a.get("charger_tried") != "no"
    return True


def guide_thresholds(chem: str | None, n: int | None) -> tuple[Thresholds, list[str]]:
    """The limits of the chosen chemistry's profile scaled to the cell count; none quoted that are not known."""
    from openbms.profiles import load_profile
    from openbms.twin.board import default_board

    board = default_board()  # a person's board's hold-up time is not asked: the default board's is assumed

    notes: list[str] = []
    if chem is None:
        notes.append(
            "chemistry unknown: cell voltages judged against LiFePO4 limits; no charge voltage quoted — "
            "use the one on the battery's label"
        )
        # The cell-level limits of the LiFePO4 profile; no pack voltage, since the chemistry is unknown.
        return Thresholds.from_profile(load_profile("lfp"), None, None, board, board_known=False), notes
    if n is None:
        notes.append("number of cells in series unknown: no pack charge voltage quoted — use the one on the label")
    return Thresholds.from_profile(
        load_profile(chem), n, None, board, board_known=False
    ), notes  # the capacity is not asked


def build_snapshot(answers: dict[str, str], thresholds: Thresholds | None = None) -> tuple[Snapshot, list[str]]:
    """The engine's input from a person's answers, and what had to be assumed.

    Answers are read as ``run_guide`` reads them; one that cannot be read counts as unknown here
    (``run_guide`` asks again and states it)."""
    a: dict[str, str] = {}
    for q in QUESTIONS:
        a[q.key] = read_answer(q, answers.get(q.key, ""), a) or UNKNOWN
    known = {k: v for k, v in a.items() if v != UNKNOWN}
    chem = known.get("chemistry")
    n = int(known["series"]) if "series" in known else None
    assumed: list[str] = []
    if thresholds is None:
        thresholds, notes = guide_thresholds(chem, n)
        assumed += notes
    t = thresholds
    faults: list[ActiveFault] = []
    events: list[dict[str, object]] = []

    def fault(name: str, klass: str) -> None:
        faults.append(ActiveFault.model_validate({"fault": name, "class": klass}))

    guessed: list[str] = []  # snapshot fields filled in by an assumption
    responds = {"yes": True, "no": False}.get(known.get("responds", ""))
    if responds is None:
        assumed.append("assumed the BMS responds (you did not know)")
        responds = True
        guessed.append("responds")
    cells: list[float | None] | None = None
    if "cell_v" in known:
        cells = [float(x) for x in known["cell_v"].split()]
    if cells is None:
        assumed.append("cell voltages unknown: a damaged cell cannot be ruled out; measure them if you can")
    terminal = float(known["terminal_v"]) if "terminal_v" in known else None
    temperature = float(known["temperature_c"]) if "temperature_c" in known else None
    if temperature is None:
        assumed.append("temperature unknown: assumed normal (10–35 °C)")
    before = known.get("before", "")
    if not before and cells is None and terminal is not None and n and terminal / n < t.cell_undervoltage_v:
        before = "ran flat"
        assumed.append(
            f"the terminal voltage ({terminal:g} V, {terminal / n:.2f} V a cell) is below the cut-off "
            f"({t.cell_undervoltage_v:.2f} V a cell): taken as run flat"
        )
    code = known.get("fault_code", "")
    app_state = known.get("app_state", "")

    state = "normal"
    if not responds:
        # Silence: asleep after a cut-off or a protection, or hung. Only a soft reset that changed
        # nothing tells them apart; until one was tried the BMS is just "silent" (soft reset first).
        tried_charger = known.get("charger_tried") == "yes"
        soft_failed = known.get("soft_reset_tried") == "yes, no change"
        if before == "ran flat" and not (tried_charger and soft_failed):
            state = "sleep"
            fault("cell_undervoltage", "charger")
            guessed.append("state")  # inferred from silence after running flat, not seen
        elif soft_failed:
            state = "unresponsive"
        else:
            state = "silent"
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
            hot = temperature is None and before != "cold" or temperature is not None and temperature >= 30
            fault("discharge_overtemperature" if hot else "charge_undertemperature", "auto")
        elif code in mapping:
            fault(*mapping[code])
        elif before == "ran flat":
            fault("cell_undervoltage", "charger")
        elif before == "heavy load":
            fault("discharge_overcurrent", "load-removal")
        elif before == "short":
            fault("short_circuit", "load-removal")
        elif before == "hot":
            fault("discharge_overtemperature", "auto")
        elif before == "cold":
            fault("charge_undertemperature", "auto")
        else:
            assumed.append("the fault is unknown: assumed a protection whose cause has passed")
            fault("discharge_overcurrent", "load-removal")
            guessed.append("faults")
    if state == "normal" and "app_state" not in known and not code:
        guessed.append("state")  # nobody said the BMS shows normal operation
    known_cells = [v for v in cells or [] if v is not None]
    if known_cells and max(known_cells) < t.deep_discharge_v:
        fault("deep_discharge", "persistent")
        state = "locked"
    soft = known.get("soft_reset_tried", "")
    if soft == "yes, no change":
        events.append({"kind": "reset", "method": "charger", "result": "refused", "reason": "no change seen"})
        if state in ("protected", "sleep") and not any(f.klass == "latched" for f in faults):
            # A soft reset that changed nothing on a protection whose cause is gone: it is latched.
            faults = [ActiveFault.model_validate({"fault": f.fault, "class": "latched"}) for f in faults] or [
                ActiveFault.model_validate({"fault": "sensor_fault", "class": "latched"})
            ]
            if state == "sleep":
                state = "unresponsive"
    hard = known.get("hard_reset_tried")
    hard_min = None if hard in (None, "yes", "no") else float(hard)
    if hard_min is not None and hard_min * 60 < t.hold_up_s:
        events.append({"kind": "reset", "method": "hard", "result": "incomplete"})
    elif hard_min is not None or hard == "yes":
        events.append({"kind": "reset", "method": "hard", "result": "ok"})
        if soft == "yes, no change" and state in ("protected", "unresponsive", "sleep"):
            # It came back after the hard reset: the engine reads a fault set again after a complete one.
            events.append({"kind": "fault_set", "fault": faults[0].fault if faults else "sensor_fault"})
    snapshot = Snapshot(
        source="guide",
        state=state,
        faults=faults,
        cell_v=cells,
        temperature_c=None if temperature is None else [temperature],
        pack_v=terminal,
        load_connected={"yes": True, "no": False}.get(known.get("load_connected", "")),
        charger_connected=known.get("charger_tried") == "yes" and known.get("charger_result") == "charged",
        current_a=1.0 if known.get("charger_result") == "charged" else 0.0,
        responds=responds,
        cell_replaced=before == "cell replaced",
        events=events,
        thresholds=t,
        assumed_fields=guessed,
    )
    if snapshot.load_connected is None:
        assumed.append("assumed the loads are disconnected")
    return snapshot, assumed


def ask_until_read(ask: Ask, q: Question, ctx: dict[str, str]) -> tuple[str, str | None]:
    """Ask ``q`` until its answer can be read (at most ``MAX_TRIES`` times).

    Returns the canonical answer and, when it is "don't know" for a reason the person may not
    have meant, the assumption to state."""
    shown = q
    answer = ""
    for _ in range(MAX_TRIES):
        answer = ask(shown)
        if not answer.strip():
            return UNKNOWN, f"no answer (Enter) to {q.name}: taken as don't know"
        value = read_answer(q, answer, ctx)
        if value is not None:
            return value, None
        accepted = q.hint or " or ".join(q.choices)
        hint = f" Please answer with {accepted}." if accepted else ""
        shown = replace(q, text=f'I could not read "{answer.strip()}".{hint} {q.text}')
    return UNKNOWN, f'{q.name}: could not read "{answer.strip()}" after {MAX_TRIES} tries: taken as don\'t know'


def _nothing_known(a: dict[str, str], snapshot: Snapshot) -> bool:
    """No answer shows the battery working: "no fault found" would be a claim without evidence."""
    return not (a.get("responds") == "yes" and (a.get("app_state") == "normal" or snapshot.cell_v))


def _what_to_check(a: dict[str, str], t: Thresholds) -> list[ProcedureStep]:
    n = int(a["series"]) if a.get("series", UNKNOWN) != UNKNOWN else None
    chem = a.get("chemistry", UNKNOWN)
    window = ""
    if n is not None and chem != UNKNOWN:
        top = (t.charge_voltage_v or 0.0) / n
        low = t.cell_undervoltage_release_v
        window = (
            f" A rested {n}S {CHEMISTRY_NAMES[chem]} pack reads between {n} × {low:.2f} V = {n * low:.1f} V "
            f"and {n} × {top:.2f} V = {n * top:.1f} V."
        )
    return [
        ProcedureStep(text="Check whether the BMS responds: its lights, its display or the app's connection."),
        ProcedureStep(text="Measure the voltage at the battery's terminals with a multimeter." + window),
        ProcedureStep(text="Measure each cell at the balance leads: one cell far below the others is damaged."),
        ProcedureStep(text="Feel or measure the battery's temperature, and note what happened before it stopped."),
        ProcedureStep(text="Then run `openbms diagnose --guide` again with what you found."),
    ]


def run_guide(ask: Ask, thresholds: Thresholds | None = None) -> Diagnosis:
    """Ask every question (``ask`` returns the answer text), re-asking unreadable answers, and diagnose."""
    answers: dict[str, str] = {}
    unread: list[str] = []
    for q in QUESTIONS:
        answers[q.key], note = ask_until_read(ask, q, answers)
        if answers[q.key] == UNKNOWN and _relevant(q.key, answers):
            unread.append(note or f"{q.name}: you did not know")
    snapshot, assumed = build_snapshot(answers, thresholds)
    result = diagnose(snapshot)
    update: dict[str, Any] = {"assumptions": unread + assumed + list(result.assumptions)}
    if result.recommendation == "none" and _nothing_known(answers, snapshot):
        update |= {
            "summary": "Nothing is known yet: no fault can be named, and nothing shows the battery is working.",
            "reasons": [
                Reason(
                    text="no answer shows the BMS responding normally or gives a measurement: no advice can be "
                    "drawn from that, and no claim that the battery works",
                    source="user",
                )
            ],
            "steps": _what_to_check(answers, snapshot.thresholds),
        }
    return result.model_copy(update=update)
