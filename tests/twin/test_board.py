"""The twin's board profile (``twin/boards/default.yaml``): valid, range-checked, overridable, and
agreeing with what the built-in brain profiles assume of their board."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openbms.chemistry import load_chemistry
from openbms.profiles import builtin_profiles, load_profile
from openbms.scenario.runner import ScenarioRunner
from openbms.scenario.schema import load_scenario
from openbms.twin.board import BoardError, builtin_boards, default_board, load_board
from openbms.twin.pack import Topology
from openbms.twin.simulator import Twin, TwinConfig


def test_the_default_board_holds_the_figures_the_twin_always_had() -> None:
    board = default_board()
    assert "default" in builtin_boards()
    assert board.supply.hold_up_s == 600
    assert board.afe.watchdog_s == 5.0
    assert board.afe.stack_v_resolution_v == pytest.approx(0.01)
    assert board.unsafe_disconnect_a == pytest.approx(0.5)
    assert board.bleed_resistance_ohm == pytest.approx(33.0)
    assert board.reconnect_order_damages_afe is False


@pytest.mark.parametrize("name", builtin_profiles())
def test_the_builtin_brain_profiles_assume_the_default_board(name: str) -> None:
    """The firmware's assumptions of its board (its own draw, the bleed resistor) are the board's."""
    profile, board = load_profile(name), default_board()
    assert profile.board_draw.awake_a == board.supply.quiescent_a
    assert profile.board_draw.asleep_a == board.supply.sleep_a
    assert profile.balancing.bleed_resistance_ohm == board.bleed_resistance_ohm


def test_overrides_apply_by_dotted_key() -> None:
    board = load_board(overrides={"afe.current_noise_a": 0.0, "supply.hold_up_s": 900, "bleed_resistance_ohm": 10})
    assert board.afe.current_noise_a == 0.0
    assert board.supply.hold_up_s == 900
    assert board.bleed_resistance_ohm == 10
    assert default_board().supply.hold_up_s == 600  # the default is not touched


@pytest.mark.parametrize("key", ["afe.cell_v_noisy_v", "nonsense.key", "supply.hold_up_s.x", "name", "afe.x.y"])
def test_an_unknown_key_is_refused_in_one_sentence(key: str) -> None:
    with pytest.raises(BoardError, match=r"^unknown board setting") as info:
        load_board(overrides={key: 1})
    assert repr(key) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "key, value",
    [
        ("supply.hold_up_s", math.inf),
        ("afe.cell_v_noise_v", math.nan),
        ("supply.hold_up_s", 1e7),
        ("afe.cell_v_noise_v", 1e300),
        ("afe.current_noise_a", 1e300),
        ("afe.stack_v_resolution_v", -0.01),
        ("bleed_resistance_ohm", 0.0),
        ("unsafe_disconnect_a", math.nan),
        ("afe.watchdog_s", "soon"),
        ("reconnect_order_damages_afe", "perhaps"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(BoardError) as info:
        load_board(overrides={key: value})
    assert str(info.value).startswith(f"board setting {key!r}: ")
    assert "\n" not in str(info.value)


def test_a_supply_bridging_three_hours_is_real() -> None:
    assert load_board(overrides={"supply.hold_up_s": 3 * 3600.0}).supply.hold_up_s == 3 * 3600.0


def test_an_unknown_board_name_is_refused() -> None:
    with pytest.raises(BoardError, match="unknown board profile"):
        load_board("../../etc/passwd")


def test_the_afe_reads_the_stack_voltage_with_the_boards_resolution() -> None:
    def stack_v(resolution: float) -> float:
        twin = Twin(
            TwinConfig(
                cell=load_chemistry("lfp").scaled_to(50.0),
                topology=Topology(4, 1),
                profile=load_profile("lfp"),
                board=load_board(overrides={"afe.stack_v_resolution_v": resolution}),
            )
        )
        twin.step()
        return float(twin.last_measurements.stack_v[0])

    coarse = stack_v(0.5)
    assert coarse == pytest.approx(round(coarse / 0.5) * 0.5)
    assert not np.isclose(stack_v(0.0) % 0.01, 0.0, atol=1e-9)  # unquantised: not on the default step


def test_the_twin_warns_of_an_unsafe_disconnect_above_the_boards_current() -> None:
    def unsafe(limit_a: float) -> bool:
        twin = Twin(
            TwinConfig(
                cell=load_chemistry("lfp").scaled_to(50.0),
                topology=Topology(4, 1),
                profile=load_profile("lfp"),
                board=load_board(overrides={"unsafe_disconnect_a": limit_a}),
            )
        )
        twin.connect_load(0, current_a=5.0)
        twin.run(20)
        twin.disconnect_main_leads(0)
        return any(e.kind == "unsafe_disconnect_under_load" for e in twin.events)

    assert unsafe(0.5)
    assert not unsafe(50.0)


OLD_SPELLING = """\
name: old spelling
pack: {chemistry: lfp, series: 4, capacity_ah: 50}
bms: {profile: lfp, set: {sleep.delay_s: 600, hardware.supply.hold_up_s: 60,
                          hardware.supply.quiescent_a: 0.0, hardware.afe.current_noise_a: 0.0}}
timeline:
  - run: 1s
"""


def test_the_old_spelling_bms_set_hardware_still_sets_the_board(tmp_path: Path) -> None:
    """``bms: {set: {hardware.X: v}}`` (the board when it lived in the brain's profile) is read as
    ``board: {set: {X: v}}``; the supply draws, which the brain also counted, set its assumption too."""
    path = tmp_path / "old.yaml"
    path.write_text(OLD_SPELLING)
    scenario, steps = load_scenario(path)
    assert scenario.board.set == {"supply.hold_up_s": 60, "supply.quiescent_a": 0.0, "afe.current_noise_a": 0.0}
    runner = ScenarioRunner(scenario, steps)
    board = runner.twin.config.board
    assert board.supply.hold_up_s == 60
    assert board.supply.quiescent_a == 0.0
    assert board.afe.current_noise_a == 0.0
    assert runner.twin.bms.profile.board_draw.awake_a == 0.0
    assert runner.twin.bms.profile.sleep.delay_s == 600


def test_a_bad_old_spelling_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(OLD_SPELLING.replace("hardware.supply.hold_up_s: 60", "hardware.supply.hold_up: 60"))
    with pytest.raises(ValueError, match=r"line 3: bms\.set: unknown board setting 'supply.hold_up'"):
        load_scenario(path)
