"""Every reason of a diagnosis says where its evidence comes from (issue 10): measured now, from
the recorded history, from the person's answers, or assumed; and a diagnosis never states a
measurement it did not make.

The expected sources are derived by hand from what each path can know: the twin and a device
read the BMS now; a board's history is recorded events; the guide measures nothing; a field that
is unknown can only be assumed.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from openbms.devices.model import DeviceReading
from openbms.diagnose.engine import Diagnosis, diagnose
from openbms.diagnose.from_device import snapshot_from_reading
from openbms.diagnose.from_twin import snapshot_of
from openbms.diagnose.report import print_diagnosis
from openbms.diagnose.snapshot import ActiveFault, Snapshot
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario

ROOT = Path(__file__).parent.parent.parent
TROUBLED = sorted((ROOT / "scenarios" / "troubled").glob("*.yaml"))
SOURCES = {"measured", "history", "user", "assumed"}


def _reading(**values: object) -> DeviceReading:
    base: dict[str, object] = {
        "protocol": "jbd",
        "pack_v": 13.2,
        "current_a": 0.0,
        "soc": 0.5,
        "charge_fet": True,
        "discharge_fet": True,
        "cell_v": [3.30, 3.30, 3.31, 3.30],
        "temperature_c": [25.0],
        "faults": [],
    }
    return DeviceReading(**(base | values))  # type: ignore[arg-type]


def _report(d: Diagnosis) -> str:
    console = Console(file=io.StringIO(), width=300, record=True)
    print_diagnosis(console, d)
    return console.export_text()


@pytest.mark.parametrize("path", TROUBLED, ids=[p.stem for p in TROUBLED])
def test_a_twin_diagnosis_cites_only_what_it_read_or_recorded(path: Path) -> None:
    scenario, steps = load_scenario(path)
    runner = ScenarioRunner(scenario, steps)
    runner.run()
    d = diagnose(snapshot_of(runner.twin))
    assert d.reasons
    for reason in d.reasons:
        assert reason.source in SOURCES
        if reason.value is not None:
            assert reason.source == "measured", reason
    text = _report(d)
    for reason in d.reasons:
        word = {"measured": "measured now", "history": "from the history", "assumed": "assumed"}[reason.source]
        assert f"{reason.text} ({word})" in text, text


def test_a_hot_board_read_now_is_measured_with_its_value() -> None:
    hot = _reading(faults=["discharge_overtemperature"], temperature_c=[64.0], discharge_fet=False)
    d = diagnose(snapshot_from_reading(hot))
    assert d.recommendation == "fix_root_cause"
    (reason,) = d.reasons
    assert (reason.source, reason.measurement, reason.value) == ("measured", "max_cell_t", 64.0)


def test_a_passed_overcurrent_with_no_current_reading_is_an_assumption() -> None:
    # The board reports the trip but no current: whether the load is gone is not known.
    tripped = _reading(faults=["discharge_overcurrent"], current_a=None, discharge_fet=False)
    d = diagnose(snapshot_from_reading(tripped))
    assert d.recommendation == "soft_reset"
    assert [r.source for r in d.reasons] == ["assumed"]
    assert "unknown whether a load is connected" in " ".join(d.assumptions)


def test_the_same_trip_with_no_current_flowing_is_measured() -> None:
    tripped = _reading(faults=["discharge_overcurrent"], current_a=0.0, discharge_fet=False)
    d = diagnose(snapshot_from_reading(tripped))
    assert d.recommendation == "soft_reset"
    assert [r.source for r in d.reasons] == ["measured"]


def test_silence_is_observed_and_the_missing_history_is_said_to_be_missing() -> None:
    d = diagnose(snapshot_from_reading(None, "comm_error: no answer", {"protocol": "jbd", "port": "/dev/ttyUSB0"}))
    assert d.recommendation == "fix_root_cause"
    assert [r.source for r in d.reasons] == ["measured", "assumed"]
    assert "nothing was measured" in d.reasons[0].text
    assert "no history" in d.reasons[1].text and "--record" in d.reasons[1].text
    assert all(r.value is None and r.limit is None for r in d.reasons)


def test_a_cut_off_in_the_history_is_cited_as_history_with_its_time() -> None:
    history = [
        {"kind": "fault_set", "fault": "cell_undervoltage", "t_s": 12.0, "time": "2026-11-29T21:14:03"},
        {"kind": "warning", "warning": "no_answer", "detail": "no answer"},
    ]
    d = diagnose(snapshot_from_reading(None, "no answer", None, history))
    assert d.recommendation == "soft_reset"
    assert [r.source for r in d.reasons] == ["measured", "history"]
    assert "2026-11-29T21:14:03" in d.reasons[1].text


def test_a_history_without_a_cut_off_is_cited_as_history() -> None:
    history = [{"kind": "fault_set", "fault": "charge_overtemperature", "t_s": 3.0}]
    d = diagnose(snapshot_from_reading(None, "no answer", None, history))
    assert d.recommendation == "fix_root_cause"
    assert [r.source for r in d.reasons] == ["measured", "history"]
    assert "no low-voltage cut-off" in d.reasons[1].text


def test_a_refused_reset_in_the_history_is_history() -> None:
    s = Snapshot(
        source="device",
        state="latched",
        faults=[ActiveFault.model_validate({"fault": "sensor_fault", "class": "latched"})],
        cell_v=[3.3, 3.3, 3.3, 3.3],
        events=[{"kind": "reset", "method": "soft", "result": "refused", "reason": "latched"}],
    )
    d = diagnose(s)
    assert d.recommendation == "hard_reset"
    assert [r.source for r in d.reasons] == ["measured", "history"]


# ----------------------------------------------------------------------------- never a made-up figure
FAULTS = [
    ("cell_undervoltage", "charger"),
    ("discharge_overcurrent", "load-removal"),
    ("short_circuit", "load-removal"),
    ("charge_overtemperature", "auto"),
    ("discharge_undertemperature", "auto"),
    ("fet_overtemperature", "auto"),
    ("sensor_fault", "latched"),
    ("deep_discharge", "persistent"),
    ("comm_error", "soft"),
    ("cell_overvoltage_latched", "latched"),
]
# A number with a unit of a reading (a limit is quoted too, but only beside a reading).
READING = re.compile(r"\d+\.\d+ V|\d+(\.\d+)? °C")


@settings(max_examples=300, deadline=None)
@given(
    source=st.sampled_from(["twin", "device", "guide"]),
    state=st.sampled_from(["normal", "protected", "latched", "sleep", "locked"]),
    faults=st.lists(st.sampled_from(FAULTS), max_size=3, unique=True),
    cells=st.none() | st.lists(st.floats(0.5, 3.9), min_size=4, max_size=4),
    temp=st.none() | st.floats(-30, 80),
    fet_t=st.none() | st.floats(20, 110),
    load=st.none() | st.booleans(),
    current=st.none() | st.floats(-100, 100),
)
def test_no_reason_states_a_reading_that_was_not_made(
    source: str,
    state: str,
    faults: list[tuple[str, str]],
    cells: list[float] | None,
    temp: float | None,
    fet_t: float | None,
    load: bool | None,
    current: float | None,
) -> None:
    s = Snapshot(
        source=source,
        state=state,
        faults=[ActiveFault.model_validate({"fault": f, "class": k}) for f, k in faults],
        cell_v=cells,  # type: ignore[arg-type]
        temperature_c=None if temp is None else [temp],
        fet_temperature_c=fet_t,
        load_connected=load,
        current_a=current,
        link_ok=True,
    )
    d = diagnose(s)
    measured_word = "user" if source == "guide" else "measured"
    for reason in d.reasons:
        assert reason.source in SOURCES
        if reason.value is not None:
            # a figure is quoted only when it was read (or told), never when assumed
            assert reason.source == measured_word, reason
        if READING.search(reason.text):
            assert reason.source == measured_word, reason
        if source == "guide":
            assert reason.source != "measured", reason
        if cells is None and temp is None and fet_t is None:
            assert not READING.search(reason.text) or reason.limit is None, reason


def test_an_answering_board_diagnosed_with_its_history_reads_the_history_too() -> None:
    # A board that answers with a latched sensor fault, whose history shows a soft reset refused:
    # the hard reset is advised, and the refusal is cited from the history.
    latched = _reading(faults=["sensor_fault"], charge_fet=False, discharge_fet=False)
    history = [{"kind": "reset", "method": "soft", "result": "refused", "reason": "latched", "t_s": 40.0}]
    d = diagnose(snapshot_from_reading(latched, history=history))
    assert d.recommendation == "hard_reset"
    assert [r.source for r in d.reasons] == ["measured", "history"]


def test_a_board_nobody_measured_is_not_told_its_own_hold_up_time() -> None:
    """The guide and a real board do not know the board's hold-up time: the hard reset waits the
    full time without claiming "this BMS keeps its memory for 10 minutes"; the twin's board is known."""
    latched = _reading(faults=["sensor_fault"], charge_fet=False, discharge_fet=False)
    device = diagnose(snapshot_from_reading(latched))
    assert device.recommendation == "hard_reset"
    waits = [s.text for s in device.steps if s.text.startswith("Wait at least")]
    assert waits and "this BMS keeps its memory" not in waits[0], waits
    scenario, steps = load_scenario(ROOT / "scenarios" / "troubled" / "hard-reset-firmware-hang.yaml")
    runner = ScenarioRunner(scenario, steps)
    runner.run()
    twin = diagnose(snapshot_of(runner.twin))
    assert any("this BMS keeps its memory for" in s.text for s in twin.steps)
