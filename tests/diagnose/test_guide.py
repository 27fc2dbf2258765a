"""Issue 4, item 4: the guide (a diagnosis from a person's answers, no connection needed).

Scripted answers (a dict per question key, read through a fake ``ask``) cover every
recommendation; "don't know" answers become assumptions the advice states; and the same answers
typed at ``openbms diagnose --guide`` (one line per question, in ``QUESTIONS`` order) give the
same advice.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from openbms.cli import app
from openbms.diagnose.engine import RECOMMENDATIONS, Diagnosis
from openbms.diagnose.guide import BY_KEY, DONT_KNOW, QUESTIONS, Question, build_snapshot, read_answer, run_guide
from openbms.diagnose.guide import UNKNOWN as UNKNOWN_ANSWER

runner = CliRunner()
KEYS = [q.key for q in QUESTIONS]
HEALTHY_CELLS = "3.30 3.31 3.29 3.30"

# Everything known, nothing wrong: the base the cases below change.
KNOWN = {
    "chemistry": "lfp",
    "series": "4S",
    "responds": "yes",
    "app_state": "normal",
    "fault_code": "",
    "terminal_v": "13.2",
    "cell_v": HEALTHY_CELLS,
    "temperature_c": "22",
    "before": "nothing",
    "load_connected": "no",
    "charger_tried": "no",
    "charger_result": "",
    "soft_reset_tried": "no",
    "hard_reset_tried": "no",
}

# (case id, changed answers, expected recommendation): what the seed text advises for each.
CASES = [
    ("working normally", {}, "none"),
    (
        "over-current with the load still connected",
        {"app_state": "protection", "fault_code": "over-current", "before": "heavy load", "load_connected": "yes"},
        "fix_root_cause",
    ),
    (
        "short circuit still connected",
        {"app_state": "fault code", "fault_code": "short circuit", "before": "short", "load_connected": "yes"},
        "fix_root_cause",
    ),
    (
        "charging blocked on a cold day",
        {"app_state": "fault code", "fault_code": "temperature", "temperature_c": "-5", "before": "cold"},
        "fix_root_cause",
    ),
    (
        "too hot to discharge",
        {"app_state": "fault code", "fault_code": "temperature", "temperature_c": "58", "before": "hot"},
        "fix_root_cause",
    ),
    (
        "flat and silent: asleep after a low-voltage cut-off",
        {"responds": "no", "app_state": "", "before": "ran flat", "cell_v": "2.60 2.62 2.61 2.58", "terminal_v": ""},
        "soft_reset",
    ),
    (
        "a communication error",
        {"app_state": "fault code", "fault_code": "communication"},
        "soft_reset",
    ),
    (
        "over-current, the load since removed",
        {"app_state": "protection", "fault_code": "over-current", "before": "heavy load", "load_connected": "no"},
        "soft_reset",
    ),
    (
        "a short circuit that is gone",
        {"app_state": "protection", "fault_code": "short circuit", "before": "short", "load_connected": "no"},
        "soft_reset",
    ),
    (
        "silent for no visible reason",
        {"responds": "no", "app_state": "", "before": "nothing"},
        # nothing tried yet: the soft reset "should always be your first troubleshooting step"
        "soft_reset",
    ),
    (
        "silent, a charger and a soft reset changed nothing",
        {
            "responds": "no",
            "app_state": "",
            "before": "ran flat",
            "charger_tried": "yes",
            "charger_result": "nothing",
            "soft_reset_tried": "yes, no change",
        },
        "hard_reset",
    ),
    (
        "a protection that a soft reset did not clear",
        {"app_state": "protection", "fault_code": "over-current", "soft_reset_tried": "yes, no change"},
        "hard_reset",
    ),
    (
        "sensor fault code",
        {"app_state": "fault code", "fault_code": "sensor"},
        "hard_reset",
    ),
    (
        "just after a cell was replaced",
        {"before": "cell replaced"},
        "hard_reset",
    ),
    (
        "one cell far below the others",
        {"app_state": "protection", "fault_code": "under-voltage", "cell_v": "3.30 3.29 1.80 3.31"},
        "replace_cells",
    ),
    (
        "one cell collapsed to nearly nothing",
        {"app_state": "protection", "cell_v": "3.28 0.40 3.29 3.30", "before": "ran flat"},
        "replace_cells",
    ),
    (
        "every cell below the deep-discharge limit",
        {
            "app_state": "protection",
            "fault_code": "under-voltage",
            "cell_v": "1.90 1.85 1.92 1.90",
            "before": "ran flat",
        },
        "service",
    ),
]


def _params(names: set[str] | None = None) -> list[object]:
    return [
        pytest.param(changes, expected, id=name) for name, changes, expected in CASES if names is None or name in names
    ]


def scripted(answers: dict[str, str]) -> tuple[Diagnosis, list[str]]:
    """Run the guide with a fake ``ask``; returns the diagnosis and the questions asked."""
    asked: list[str] = []

    def ask(q: Question) -> str:
        asked.append(q.key)
        return answers.get(q.key, "")

    return run_guide(ask), asked


def typed(answers: dict[str, str]) -> str:
    """The same answers as a person types them at ``openbms diagnose --guide``."""
    return "".join(answers.get(key, "") + "\n" for key in KEYS)


def test_the_cases_cover_every_recommendation() -> None:
    assert {expected for _, _, expected in CASES} == set(RECOMMENDATIONS)


@pytest.mark.parametrize("changes, expected", _params())
def test_scripted_answers_give_the_seed_advice(changes: dict[str, str], expected: str) -> None:
    d, asked = scripted(KNOWN | changes)
    assert asked == KEYS, "every question is asked once, in order"
    assert d.recommendation == expected, [r.text for r in d.reasons]
    assert d.reasons and all(r.text for r in d.reasons)
    if expected != "none":
        assert d.steps, "a procedure comes with its steps"
    # everything known was answered: only what was left blank (Enter) is assumed
    assert all(a.startswith("no answer (Enter)") for a in d.assumptions), d.assumptions


def test_the_damaged_cell_is_named() -> None:
    d, _ = scripted(KNOWN | {"app_state": "protection", "cell_v": "3.30 3.29 1.80 3.31"})
    assert d.damaged_cells == [3]
    assert any("cell 3" in r.text for r in d.reasons)


def test_a_hard_reset_that_was_too_short_is_pointed_out() -> None:
    silent_after_soft_reset = {"responds": "no", "app_state": "", "soft_reset_tried": "yes, no change"}
    d, _ = scripted(KNOWN | silent_after_soft_reset | {"hard_reset_tried": "2"})
    assert d.recommendation == "hard_reset"
    assert any("too short" in r.text for r in d.reasons)
    assert any("Wait at least 15 minutes" in s.text for s in d.steps)
    assert any(s.safety and "balance connector" in s.safety for s in d.steps)


def test_a_long_enough_hard_reset_is_not_called_too_short() -> None:
    silent_after_soft_reset = {"responds": "no", "app_state": "", "soft_reset_tried": "yes, no change"}
    d, _ = scripted(KNOWN | silent_after_soft_reset | {"hard_reset_tried": "20"})
    assert d.recommendation == "hard_reset"
    assert not any("too short" in r.text for r in d.reasons)


def test_silent_with_only_a_too_short_hard_reset_tried_gets_the_soft_reset_first_and_a_longer_wait() -> None:
    d, _ = scripted(KNOWN | {"responds": "no", "app_state": "", "hard_reset_tried": "2"})
    assert d.recommendation == "soft_reset"
    assert any("too short" in r.text and r.source == "user" for r in d.reasons)
    texts = [s.text for s in d.steps]
    charger = next(i for i, t in enumerate(texts) if "Connect a compatible charger" in t)
    wait = next(i for i, t in enumerate(texts) if "Wait at least 15 minutes" in t)
    assert charger < wait, texts


def test_silent_after_a_complete_hard_reset_is_not_sent_round_the_resets_again() -> None:
    d, _ = scripted(KNOWN | {"responds": "no", "app_state": "", "hard_reset_tried": "20"})
    assert d.recommendation == "fix_root_cause"
    assert any("balance connector" in s.text for s in d.steps)


# ----------------------------------------------------------------------------- don't know
EXPECTED_ASSUMPTIONS = {
    "responds": "assumed the BMS responds",
    "cell_v": "cell voltages unknown",
    "temperature_c": "temperature unknown",
    "load_connected": "assumed the loads are disconnected",
}


@pytest.mark.parametrize("key", sorted(EXPECTED_ASSUMPTIONS))
def test_each_dont_know_becomes_a_stated_assumption(key: str) -> None:
    d, _ = scripted(KNOWN | {key: "don't know"})
    assert any(EXPECTED_ASSUMPTIONS[key] in a for a in d.assumptions), d.assumptions
    others = [k for k in EXPECTED_ASSUMPTIONS if k != key]
    assert not any(EXPECTED_ASSUMPTIONS[k] in a for k in others for a in d.assumptions), d.assumptions


def test_all_dont_know_states_every_assumption() -> None:
    d, _ = scripted({})
    for wanted in EXPECTED_ASSUMPTIONS.values():
        assert any(wanted in a for a in d.assumptions), (wanted, d.assumptions)
    assert d.recommendation in RECOMMENDATIONS


def test_build_snapshot_leaves_unknowns_unknown() -> None:
    snapshot, assumed = build_snapshot({})
    assert snapshot.cell_v is None and snapshot.temperature_c is None and snapshot.load_connected is None
    assert snapshot.source == "guide"
    assert len(assumed) == 5  # the four unknowns and the unknown chemistry


@pytest.mark.parametrize("dont_know", [a for a in DONT_KNOW if a])
def test_every_form_of_dont_know_reads_the_same(dont_know: str) -> None:
    empty, _ = scripted(KNOWN | {"fault_code": ""})
    other, _ = scripted(KNOWN | {"fault_code": dont_know})
    assert empty.recommendation == "none"
    assert other.recommendation == empty.recommendation, [r.text for r in other.reasons]


def test_dont_know_forms_other_than_the_fault_code_read_the_same() -> None:
    keys = [k for k in KEYS if k != "fault_code"]
    base, _ = scripted(KNOWN | dict.fromkeys(keys, ""))
    for form in DONT_KNOW:
        d, _ = scripted(KNOWN | dict.fromkeys(keys, form))
        assert d.recommendation == base.recommendation, form

        def rest(assumptions: list[str]) -> list[str]:
            return [a for a in assumptions if "taken as don't know" not in a and "you did not know" not in a]

        assert rest(d.assumptions) == rest(base.assumptions), form
        assert len(d.assumptions) == len(base.assumptions), form


# ----------------------------------------------------------------------------- the command
CLI_CASES = {
    "working normally",
    "over-current with the load still connected",
    "a communication error",
    "silent for no visible reason",
    "one cell far below the others",
    "every cell below the deep-discharge limit",
}


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON document at the end of stdout (see the xfail below about the prompts before it)."""
    doc: dict[str, Any] = json.loads(stdout[stdout.index("{") :])
    return doc


@pytest.mark.parametrize("changes, expected", _params(CLI_CASES))
def test_the_guide_on_the_command_line_gives_the_same_advice(changes: dict[str, str], expected: str) -> None:
    answers = KNOWN | changes
    result = runner.invoke(app, ["diagnose", "--guide", "--json"], input=typed(answers))
    assert result.exit_code == 0, result.output
    doc = last_json(result.stdout)
    assert doc["recommendation"] == expected
    assert doc["reasons"] and all(r["text"] for r in doc["reasons"])
    assert doc["recommendation"] == scripted(answers)[0].recommendation
    # the questions went to the person (stderr with --json), in order
    positions = [result.stderr.find(q.text[:40]) for q in QUESTIONS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), positions


def test_the_guide_prints_a_report_a_person_reads() -> None:
    answers = KNOWN | {"responds": "no", "app_state": "", "before": "nothing", "cell_v": "", "temperature_c": ""}
    result = runner.invoke(app, ["diagnose", "--guide"], input=typed(answers), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert QUESTIONS[0].text in out
    # silent and nothing tried: the soft reset first, the hard reset (with its safety notes) if it fails
    assert "Soft reset" in out and "(soft_reset)" in out
    assert "Connect a compatible charger" in out and "do a hard reset" in out
    assert "Never connect the main leads before the balance connector" in out  # a safety note
    assert "Assumed" in out and "cell voltages unknown" in out and "temperature unknown" in out
    assert "Traceback" not in result.output


def test_the_guide_with_no_answers_at_all_assumes_and_still_advises() -> None:
    result = runner.invoke(app, ["diagnose", "--guide", "--json"], input="")
    assert result.exit_code == 0, result.output
    doc = last_json(result.stdout)
    assert doc["recommendation"] in RECOMMENDATIONS
    for wanted in EXPECTED_ASSUMPTIONS.values():
        assert any(wanted in a for a in doc["assumptions"]), (wanted, doc["assumptions"])


def test_the_guide_json_output_is_one_json_document() -> None:
    result = runner.invoke(app, ["diagnose", "--guide", "--json"], input=typed(KNOWN))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["recommendation"] == "none"


@pytest.mark.parametrize(
    "args",
    [["diagnose", "--guide", "--apply"], ["diagnose", "--guide", "--state", "x.json"]],
    ids=["apply", "two-sources"],
)
def test_the_guide_refuses_what_it_cannot_do(args: list[str]) -> None:
    result = runner.invoke(app, args, input="", env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "error:" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- conversations (issue 10, items 1–2)
# Whole conversations as owners type them: the battery first (chemistry, cells in series), then
# the seed's cases in everyday words. Each expects the recommendation the seed's guide logic
# gives, the pack's own charge-voltage limit (profile cell limit × series) where a soft reset
# quotes it, and none of another pack's limits.
PACK_LIMITS = {
    ("lfp", 4): 4 * 3.45,
    ("lfp", 8): 8 * 3.45,
    ("lfp", 16): 16 * 3.45,
    ("nmc", 13): 13 * 4.15,
    ("nmc", 14): 14 * 4.15,
}
ALL_LIMITS = {f"{v:.1f} V" for v in PACK_LIMITS.values()} | {"55.2", "27.6", "13.8"}
NORMAL = {
    "responds": "yep",
    "app_state": "looks normal",
    "load_connected": "no",
    "charger_tried": "nope",
    "soft_reset_tried": "no",
    "hard_reset_tried": "no",
}

# A healthy-looking 4S pack whose BMS shows no sign of life, nothing having happened before.
SILENT_4S = NORMAL | {
    "chemistry": "lfp",
    "series": "4S",
    "responds": "no",
    "app_state": "",
    "before": "nothing, it just stopped",
    "cell_v": "3.30 3.30 3.31 3.30",
    "temperature_c": "22",
}

CONVERSATIONS: list[tuple[str, tuple[str, int], dict[str, str], str]] = [
    # --- 4S LiFePO4 (a "12 V" battery)
    (
        "4S 12V ran flat and went silent",
        ("lfp", 4),
        {
            "chemistry": "LiFePO4",
            "series": "12V",
            "responds": "no, nothing at all",
            "terminal_v": "9.6V",
            "cell_v": "2.41 2.43 2.40 2.42",
            "temperature_c": "20C",
            "before": "it ran flat overnight",
            "load_connected": "nope",
            "charger_tried": "no",
            "soft_reset_tried": "no",
            "hard_reset_tried": "no",
        },
        "soft_reset",
    ),
    (
        "4S ran flat, only the terminal voltage known",
        ("lfp", 4),
        {
            "chemistry": "lfp",
            "series": "4s",
            "responds": "n",
            "terminal_v": "9,4 V",
            "before": "",
            "load_connected": "no",
            "charger_tried": "no",
            "soft_reset_tried": "no",
            "hard_reset_tried": "no",
        },
        "soft_reset",
    ),
    (
        "4S app shows low voltage protection",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lifepo4",
            "series": "4S",
            "responds": "yes it blinks",
            "app_state": "protection",
            "fault_code": "low voltage",
            "cell_v": "2.62 2.63 2.61 2.64",
            "temperature_c": "18 °C",
            "before": "the pack ran flat at low voltage",
        },
        "fix_root_cause",
    ),  # awake, cells still below the release voltage: charge first
    (
        "4S sleeping in the app after running empty",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "LFP",
            "series": "12 V",
            "app_state": "it says sleep",
            "before": "empty",
            "cell_v": "2.6 2.6 2.6 2.6",
            "temperature_c": "21",
        },
        "soft_reset",
    ),
    (
        "4S overload with the inverter still on",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "fault",
            "fault_code": "overload",
            "before": "kettle on the inverter",
            "load_connected": "yes, the inverter",
            "temperature_c": "25C",
            "cell_v": "3.28 3.27 3.29 3.28",
        },
        "fix_root_cause",
    ),
    (
        "4S over-current, load since removed",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "protection",
            "fault_code": "over current",
            "before": "heavy load",
            "load_connected": "no I unplugged it",
            "temperature_c": "25C",
            "cell_v": "3.28 3.27 3.29 3.28",
        },
        "soft_reset",
    ),
    (
        "4S too hot in the sun",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "error",
            "fault_code": "too hot",
            "temperature_c": "58 °C",
            "before": "it sat in the sun all day",
            "cell_v": "3.30 3.31 3.30 3.29",
        },
        "fix_root_cause",
    ),
    (
        "4S will not charge on a freezing morning",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "protection",
            "fault_code": "temp",
            "temperature_c": "-5C",
            "before": "freezing night",
            "cell_v": "3.25 3.26 3.25 3.24",
        },
        "fix_root_cause",
    ),
    (
        "4S short that is gone",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "protection",
            "fault_code": "short",
            "before": "dropped a spanner, sparks",
            "load_connected": "no",
            "temperature_c": "22",
            "cell_v": "3.30 3.30 3.31 3.30",
        },
        "soft_reset",
    ),
    (
        "4S one cell far below the others",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "protection",
            "fault_code": "under voltage",
            "cell_v": "3.30V 3.29V 1.80V 3.31V",
            "temperature_c": "20",
        },
        "replace_cells",
    ),
    (
        "4S every cell below the deep-discharge limit",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "protection",
            "fault_code": "undervoltage",
            "cell_v": "1.90 1.85 1.92 1.90",
            "before": "left it flat all winter",
            "temperature_c": "15",
        },
        "service",
    ),
    (
        "4S just after a cell was replaced",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "before": "I replaced a cell",
            "cell_v": "3.30 3.30 3.31 3.30",
            "temperature_c": "22",
        },
        "hard_reset",
    ),
    (
        "4S silent for no reason",
        ("lfp", 4),
        SILENT_4S,
        # seed: the soft reset "should always be your first troubleshooting step"; the hard reset
        # "only ... after a soft reset has failed" ("does not wake up after connecting a charger")
        "soft_reset",
    ),
    (
        "4S silent, the charger and a rest-and-reconnect changed nothing",
        ("lfp", 4),
        SILENT_4S
        | {
            "charger_tried": "yes",
            "charger_result": "nothing",
            "soft_reset_tried": "tried it, no change",
        },
        "hard_reset",
    ),
    (
        "8S silent even after a 20-minute hard reset",
        ("lfp", 8),
        NORMAL
        | {
            "chemistry": "LiFePO4",
            "series": "24V",
            "responds": "no",
            "app_state": "",
            "before": "nothing",
            "cell_v": "3.29 3.30 3.30 3.31 3.30 3.30 3.29 3.30",
            "temperature_c": "20",
            "hard_reset_tried": "yes, 20 min",
        },
        "fix_root_cause",
    ),
    (
        "4S bluetooth error",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "error code",
            "fault_code": "bluetooth",
            "cell_v": "3.30 3.30 3.31 3.30",
            "temperature_c": "22",
        },
        "soft_reset",
    ),
    (
        "4S NTC sensor fault",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "fault code",
            "fault_code": "NTC fault",
            "cell_v": "3.30 3.30 3.31 3.30",
            "temperature_c": "22",
        },
        "hard_reset",
    ),
    (
        "4S keeps tripping with a weak cell after soft and hard reset",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "protection",
            "fault_code": "low voltage",
            "cell_v": "3.20 3.21 2.10 3.20",
            "soft_reset_tried": "yes but no change",
            "hard_reset_tried": "yes, 30 min",
            "temperature_c": "20",
        },
        "replace_cells",
    ),
    (
        "4S keeps tripping after soft and hard reset",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "app_state": "protection",
            "fault_code": "over-current",
            "before": "nothing",
            "cell_v": "3.30 3.30 3.31 3.30",
            "soft_reset_tried": "tried it, didn't help",
            "hard_reset_tried": "1 hour",
            "temperature_c": "22",
        },
        "fix_root_cause",
    ),
    (
        "4S working normally, short answers",
        ("lfp", 4),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "4S",
            "responds": "y",
            "app_state": "normal",
            "cell_v": "3.30 3.31 3.29 3.30",
            "terminal_v": "13.2V",
            "temperature_c": "25C",
            "before": "nothing",
        },
        "none",
    ),
    # --- 8S LiFePO4 (24 V)
    (
        "8S 24V ran flat and went silent",
        ("lfp", 8),
        NORMAL
        | {
            "chemistry": "LiFePO4",
            "series": "24V",
            "responds": "nope",
            "app_state": "",
            "before": "ran it down",
            "cell_v": "2.5 2.5 2.5 2.5 2.5 2.5 2.5 2.5",
            "temperature_c": "19",
        },
        "soft_reset",
    ),
    (
        "8S over-current, load removed",
        ("lfp", 8),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "8s",
            "app_state": "protection",
            "fault_code": "OC",
            "before": "the microwave",
            "temperature_c": "24",
            "cell_v": "3.3 3.3 3.3 3.3 3.3 3.3 3.3 3.3",
        },
        "soft_reset",
    ),
    (
        "8S short still connected",
        ("lfp", 8),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "8S",
            "app_state": "fault",
            "fault_code": "short circuit",
            "before": "shorted the leads",
            "load_connected": "yeah",
            "temperature_c": "24",
            "cell_v": "3.3 3.3 3.3 3.3 3.3 3.3 3.3 3.3",
        },
        "fix_root_cause",
    ),
    # --- 16S LiFePO4 (48 V)
    (
        "16S 48V low voltage protection",
        ("lfp", 16),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "48V",
            "app_state": "protect",
            "fault_code": "low volt",
            "before": "ran flat",
            "temperature_c": "20",
            "cell_v": " ".join(["2.7"] * 16),
        },
        "fix_root_cause",
    ),  # awake, cells still below the release voltage: charge first
    (
        "16S silent, charger and soft reset changed nothing",
        ("lfp", 16),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "16S",
            "responds": "no",
            "app_state": "",
            "before": "ran flat",
            "charger_tried": "yes",
            "charger_result": "did nothing",
            "soft_reset_tried": "yes, no change",
            "temperature_c": "20",
        },
        "hard_reset",
    ),
    (
        "16S overheating",
        ("lfp", 16),
        NORMAL
        | {
            "chemistry": "lfp",
            "series": "16 cells",
            "app_state": "alarm",
            "fault_code": "overheating",
            "temperature_c": "140F",
            "before": "too hot",
            "cell_v": " ".join(["3.3"] * 16),
        },
        "fix_root_cause",
    ),
    # --- 13S NMC (48 V e-bike)
    (
        "13S li-ion ran flat and went silent",
        ("nmc", 13),
        NORMAL
        | {
            "chemistry": "li-ion",
            "series": "13S",
            "responds": "no",
            "app_state": "",
            "before": "ran out on a ride",
            "cell_v": " ".join(["2.9"] * 13),
            "temperature_c": "18",
        },
        "soft_reset",
    ),
    (
        "13S NMC 48V over-current, load removed",
        ("nmc", 13),
        NORMAL
        | {
            "chemistry": "NMC",
            "series": "48V",
            "app_state": "protection",
            "fault_code": "over-current",
            "before": "motor on a steep hill",
            "temperature_c": "26",
            "cell_v": " ".join(["3.7"] * 13),
        },
        "soft_reset",
    ),
    (
        "13S NMC one collapsed cell",
        ("nmc", 13),
        NORMAL
        | {
            "chemistry": "nmc",
            "series": "13s",
            "app_state": "protection",
            "fault_code": "low voltage",
            "cell_v": " ".join(["3.7"] * 6 + ["0.9"] + ["3.7"] * 6),
            "temperature_c": "20",
        },
        "replace_cells",
    ),
    # --- 14S NMC (52 V)
    (
        "14S NMC communication error",
        ("nmc", 14),
        NORMAL
        | {
            "chemistry": "lithium ion",
            "series": "14S",
            "app_state": "fault code",
            "fault_code": "comms",
            "cell_v": " ".join(["3.8"] * 14),
            "temperature_c": "22",
        },
        "soft_reset",
    ),
    (
        "14S NMC deeply discharged",
        ("nmc", 14),
        NORMAL
        | {
            "chemistry": "nmc",
            "series": "14S",
            "app_state": "protection",
            "fault_code": "under-voltage",
            "cell_v": " ".join(["2.0"] * 14),
            "before": "flat for months",
            "temperature_c": "15",
        },
        "service",
    ),
    (
        "14S NMC 52V too hot",
        ("nmc", 14),
        NORMAL
        | {
            "chemistry": "nmc",
            "series": "52V",
            "app_state": "error",
            "fault_code": "over temperature",
            "temperature_c": "65 °C",
            "before": "hot",
            "cell_v": " ".join(["3.8"] * 14),
        },
        "fix_root_cause",
    ),
    (
        "14S NMC sleeping after running flat",
        ("nmc", 14),
        NORMAL
        | {
            "chemistry": "nmc",
            "series": "14S",
            "app_state": "asleep",
            "before": "it ran flat",
            "cell_v": " ".join(["3.0"] * 14),
            "temperature_c": "20",
        },
        "soft_reset",
    ),
]


def converse(lines: list[str]) -> tuple[Diagnosis, str, list[str]]:
    """Run the guide on typed lines (one per ask, re-asks included); the diagnosis, the report as a
    person reads it, and the questions as shown."""
    import io

    from rich.console import Console

    from openbms.diagnose.report import print_diagnosis

    shown: list[str] = []
    queue = list(lines)

    def ask(q: Question) -> str:
        shown.append(q.text)
        return queue.pop(0) if queue else ""

    d = run_guide(ask)
    console = Console(file=io.StringIO(), width=300, record=True)
    print_diagnosis(console, d)
    return d, console.export_text(), shown


def conversation_lines(answers: dict[str, str]) -> list[str]:
    return [answers.get(key, "") for key in KEYS]


def test_there_are_at_least_thirty_conversations_covering_every_recommendation() -> None:
    assert len(CONVERSATIONS) >= 30
    assert {c[3] for c in CONVERSATIONS} == set(RECOMMENDATIONS)


@pytest.mark.parametrize("pack, answers, expected", [pytest.param(p, a, e, id=name) for name, p, a, e in CONVERSATIONS])
def test_a_conversation_gives_the_seed_advice_with_the_packs_own_limits(
    pack: tuple[str, int], answers: dict[str, str], expected: str
) -> None:
    d, text, shown = converse(conversation_lines(answers))
    assert len(shown) == len(QUESTIONS), "every answer was read at the first try"
    assert d.recommendation == expected, [r.text for r in d.reasons]
    own = f"{PACK_LIMITS[pack]:.1f} V"
    if expected == "soft_reset":
        assert f"no higher than {own}" in text
    for wrong in ALL_LIMITS - {own, own.removesuffix(" V")}:
        assert wrong not in text, (wrong, text)
    assert not any("could not read" in a for a in d.assumptions), d.assumptions
    # The guide measures nothing: every reason is the person's account or an assumption, and says so.
    assert {r.source for r in d.reasons} <= {"user", "assumed"}, [(r.text, r.source) for r in d.reasons]
    assert all(("(from your answers)" in line or "(assumed)" in line) for line in text.splitlines() if "•" in line)


def test_run_flat_at_low_voltage_is_not_called_an_over_current() -> None:
    answers = NORMAL | {
        "chemistry": "lfp",
        "series": "4S",
        "app_state": "protection",
        "fault_code": "",
        "before": "it ran flat at low voltage",
        "cell_v": "",
        "temperature_c": "20",
    }
    d, text, _ = converse(conversation_lines(answers))
    assert "overcurrent" not in text and "over-current" not in text, text
    assert d.recommendation == "soft_reset" and "no higher than 13.8 V" in text


@pytest.mark.parametrize(
    "key, answer, read",
    [
        ("responds", "y", "yes"),
        ("responds", "yeah", "yes"),
        ("responds", "yes it blinks", "yes"),
        ("responds", "nope", "no"),
        ("responds", "n", "no"),
        ("responds", "no, it's dead", "no"),
        ("responds", "idk", UNKNOWN_ANSWER),
        ("responds", "?", UNKNOWN_ANSWER),
        ("responds", "not sure", UNKNOWN_ANSWER),
        ("fault_code", "low voltage", "under-voltage"),
        ("fault_code", "ran flat", "under-voltage"),
        ("fault_code", "empty", "under-voltage"),
        ("fault_code", "too hot", "temperature"),
        ("fault_code", "overload", "over-current"),
        ("before", "it ran flat", "ran flat"),
        ("before", "low voltage", "ran flat"),
        ("before", "too hot", "hot"),
        ("before", "empty", "ran flat"),
        ("app_state", "protection mode", "protection"),
        ("temperature_c", "25C", "25"),
        ("temperature_c", "25 °C", "25"),
        ("temperature_c", "77F", "25"),
        ("terminal_v", "3.1V", "3.1"),
        ("terminal_v", "13,2 V", "13.2"),
        ("cell_v", "3.1V, 3.2V, 3.3V", "3.1 3.2 3.3"),
        ("chemistry", "LiFePO4", "lfp"),
        ("chemistry", "li-ion", "nmc"),
        ("chemistry", "NMC", "nmc"),
        ("chemistry", "lto", "lto"),
        ("hard_reset_tried", "yes, 20 min", "20"),
        ("hard_reset_tried", "1 h", "60"),
        ("soft_reset_tried", "yes, no change", "yes, no change"),
        ("soft_reset_tried", "it worked", "yes, it worked"),
    ],
)
def test_answers_are_read_as_people_give_them(key: str, answer: str, read: str) -> None:
    assert read_answer(BY_KEY[key], answer) == read


@pytest.mark.parametrize(
    "chem, answer, n",
    [
        ("lfp", "4S", 4),
        ("lfp", "16s", 16),
        ("lfp", "12V", 4),
        ("lfp", "24V", 8),
        ("lfp", "48V", 16),
        ("nmc", "13S", 13),
        ("nmc", "48V", 13),
        ("nmc", "14s4p", 14),
        ("lfp", "4 cells", 4),
    ],
)
def test_the_cell_count_is_read_from_a_count_or_a_nominal_voltage(chem: str, answer: str, n: int) -> None:
    assert read_answer(BY_KEY["series"], answer, {"chemistry": chem}) == str(n)


def test_an_unreadable_answer_is_asked_again_and_then_read() -> None:
    lines = conversation_lines(KNOWN)
    at = KEYS.index("responds")
    lines[at : at + 1] = ["hmm, the lights?", "yes it blinks"]
    d, _, shown = converse(lines)
    assert len(shown) == len(QUESTIONS) + 1
    assert shown[at + 1].startswith('I could not read "hmm, the lights?"')
    assert d.recommendation == "none" and not any("responds" in a for a in d.assumptions)


def test_an_answer_unreadable_three_times_is_an_assumption_not_a_silent_dont_know() -> None:
    lines = conversation_lines(KNOWN)
    at = KEYS.index("before")
    lines[at : at + 1] = ["blorp", "blorp", "blorp"]
    d, text, shown = converse(lines)
    assert len(shown) == len(QUESTIONS) + 2
    assert any('could not read "blorp" after 3 tries' in a for a in d.assumptions), d.assumptions
    assert "blorp" in text


def test_enter_throughout_does_not_claim_the_battery_works() -> None:
    for lines in ([], ["lfp", "4S"]):
        d, text, _ = converse(lines)
        assert "working normally" not in text
        assert "Nothing is known" in d.summary
        assert any("Measure" in s.text for s in d.steps)
        assert any("(Enter)" in a for a in d.assumptions)
        assert "55.2" not in text
    assert "13.8 V" in text  # the 4S LFP window, from the chosen profile


def test_without_the_chemistry_no_charge_voltage_is_quoted() -> None:
    answers = KNOWN | {"chemistry": "", "series": "", "responds": "no", "app_state": "", "before": "ran flat"}
    d, text, _ = converse(conversation_lines(answers))
    assert d.recommendation == "soft_reset"
    assert "the one on the battery's label" in text and "55.2" not in text


def test_the_choices_are_shown_on_the_command_line() -> None:
    result = runner.invoke(app, ["diagnose", "--guide"], input=typed(KNOWN), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "[yes / no / don't know]" in result.stdout
    assert "[lfp (LiFePO4) / nmc (li-ion) / lto / don't know]" in result.stdout
