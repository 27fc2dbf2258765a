"""The twin's BMS board: its AFE, supply, FETs and resistors, as validated data.

A board profile is a YAML file in ``boards/`` (``default.yaml``); a scenario overrides any value
with dotted keys under ``board: {set: {...}}`` (``afe.current_noise_a: 0.0``,
``supply.hold_up_s: 900``). It belongs to the twin: the brain never reads it. What the brain's
firmware assumes of its board (its own draw, the bleed resistor) lives in the brain's profile
under its own names, and by default the two agree.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_HOLD_UP_S = 6 * 3600.0  # a BMS supply's capacitor or cell bridges hours at most
MAX_CURRENT_A = 10_000.0  # AFE noise, offset and leak currents of the largest packs
MAX_NAME_CHARS = 200


class BoardError(ValueError):
    """A board profile or an override is invalid; the message names the key."""


def _in(low: float, high: float, *, above: bool = False) -> Any:
    """A number within [low, high] (or (low, high] when ``above``), finite by the model config."""
    return Field(gt=low, le=high) if above else Field(ge=low, le=high)


class _Strict(BaseModel):
    """No unknown keys, no NaN or infinity anywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Afe(_Strict):
    cell_v_noise_v: float = _in(0.0, 0.1)
    cell_v_offset_v: float = _in(-0.1, 0.1)
    cell_v_resolution_v: float = _in(0.0, 0.1)
    stack_v_resolution_v: float = _in(0.0, 10.0)
    current_noise_a: float = _in(0.0, MAX_CURRENT_A)
    current_offset_a: float = _in(-MAX_CURRENT_A, MAX_CURRENT_A)
    current_resolution_a: float = _in(0.0, MAX_CURRENT_A)
    temperature_noise_c: float = _in(0.0, 10.0)
    temperature_resolution_c: float = _in(0.0, 10.0)
    watchdog_s: float = _in(0.0, 3600.0, above=True)


class Supply(_Strict):
    hold_up_s: float = _in(0.0, MAX_HOLD_UP_S)
    quiescent_a: float = _in(0.0, 10.0)
    sleep_a: float = _in(0.0, 10.0)


class Fet(_Strict):
    on_resistance_ohm: float = _in(0.0, 1.0)
    thermal_mass_j_per_k: float = _in(0.0, 1e6, above=True)
    cooling_w_per_k: float = _in(0.0, 1e4, above=True)


class BoardProfile(_Strict):
    """The whole board."""

    name: str = Field(max_length=MAX_NAME_CHARS)
    afe: Afe
    supply: Supply
    fet: Fet
    reconnect_order_damages_afe: bool
    bleed_resistance_ohm: float = _in(0.0, 1e6, above=True)
    unsafe_disconnect_a: float = _in(0.0, MAX_CURRENT_A)


def builtin_boards() -> list[str]:
    folder = resources.files("openbms.twin").joinpath("boards")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


@functools.cache
def _raw_board(name: str) -> dict[str, Any]:
    if name not in builtin_boards():  # never a path: a name is looked up, not opened
        raise BoardError(f"unknown board profile {name!r}; built in: {', '.join(builtin_boards())}")
    text = resources.files("openbms.twin").joinpath("boards", f"{name}.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise BoardError(f"board profile {name!r} is not a mapping")
    return raw


def _apply(raw: dict[str, Any], overrides: dict[str, Any]) -> None:
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        node: Any = raw
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or parts[-1] not in node or parts[-1] == "name":
            raise BoardError(f"unknown board setting {dotted!r}")
        node[parts[-1]] = value


def load_board(name: str = "default", overrides: dict[str, Any] | None = None) -> BoardProfile:
    """The built-in board ``name`` with dotted-key ``overrides`` applied and validated."""
    raw = copy.deepcopy(_raw_board(name))
    _apply(raw, overrides or {})
    try:
        return BoardProfile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BoardError(f"board setting {where!r}: {str(first['msg']).removeprefix('Value error, ')}") from None


@functools.cache
def default_board() -> BoardProfile:
    """The default board, unchanged."""
    return load_board()
