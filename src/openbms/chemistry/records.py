"""Named, unit-bearing chemistry records with their provenance beside every number.

The built-in cells used to be positional numbers in code, with their sources in comments or
nowhere. Here each chemistry is a frozen record read from package data (``data/chemistries.yaml``),
in the manner of PyBaMM's parameter sets: every quantity has its unit in its name and a ``source``
beside its value, either a citation or "openbms estimate: <reasoning>". Whoever doubts a number
can find out where it came from without reading code, and a test can check that none lacks one.

``openbms.chemistry.cells`` turns a record into the ``CellParams`` the twin uses; this module only
reads and checks the records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Generic, TypeVar

T = TypeVar("T", float, str)

RECORDS_FILE = "chemistries.yaml"


class ChemistryRecordError(ValueError):
    """The package's chemistry records are malformed: a packaging bug, named by record and key."""


@dataclass(frozen=True)
class Sourced(Generic[T]):
    """One value and where it came from, so the two can never be separated."""

    value: T
    source: str


@dataclass(frozen=True)
class RcPairRecord:
    """One RC pair as a share of the cell's DC resistance and a time constant (C = tau / R)."""

    fraction_of_dc: Sourced[float]
    tau_s: Sourced[float]


@dataclass(frozen=True)
class ChemistryRecord:
    """A built-in cell: its OCV table, resistances, thermal figures and their sources.

    The DC resistance comes either from a measured table (``resistance_csv``: it also gives the
    charge/discharge SOC shape and the Arrhenius temperature) or from one figure
    (``dc_resistance_ohm`` with ``arrhenius_temperature_k``); exactly one of the two is set.
    Thermal figures are per Ah so that ``CellParams.scaled_to`` keeps them consistent.
    """

    name: str
    description: str
    ocv_csv: Sourced[str]
    capacity_ah: Sourced[float]
    r0_fraction_of_dc: Sourced[float]
    rc_pairs: tuple[RcPairRecord, ...]
    heat_capacity_j_per_k_per_ah: Sourced[float]
    cooling_w_per_k_per_ah: Sourced[float]
    coulombic_efficiency: Sourced[float]
    self_discharge_fraction_per_day: Sourced[float]
    resistance_csv: Sourced[str] | None = None
    dc_resistance_ohm: Sourced[float] | None = None
    arrhenius_temperature_k: Sourced[float] | None = None

    def sourced_values(self) -> dict[str, Sourced[float] | Sourced[str]]:
        """Every quantity of the record by a dotted name: what a provenance check walks."""
        out: dict[str, Sourced[float] | Sourced[str]] = {}
        for key in (
            "ocv_csv",
            "resistance_csv",
            "capacity_ah",
            "dc_resistance_ohm",
            "arrhenius_temperature_k",
            "r0_fraction_of_dc",
            "heat_capacity_j_per_k_per_ah",
            "cooling_w_per_k_per_ah",
            "coulombic_efficiency",
            "self_discharge_fraction_per_day",
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        for index, pair in enumerate(self.rc_pairs, start=1):
            out[f"rc_pairs.{index}.fraction_of_dc"] = pair.fraction_of_dc
            out[f"rc_pairs.{index}.tau_s"] = pair.tau_s
        return out


_NUMBER_KEYS = (
    "capacity_ah",
    "r0_fraction_of_dc",
    "heat_capacity_j_per_k_per_ah",
    "cooling_w_per_k_per_ah",
    "coulombic_efficiency",
    "self_discharge_fraction_per_day",
)
_OPTIONAL_NUMBER_KEYS = ("dc_resistance_ohm", "arrhenius_temperature_k")
_TEXT_KEYS = ("ocv_csv",)
_OPTIONAL_TEXT_KEYS = ("resistance_csv",)
_KNOWN_KEYS = frozenset(
    ("description", "rc_pairs", "based_on", *_NUMBER_KEYS, *_OPTIONAL_NUMBER_KEYS, *_TEXT_KEYS, *_OPTIONAL_TEXT_KEYS)
)


def _sourced_number(raw: Any, where: str) -> Sourced[float]:
    if not isinstance(raw, dict) or set(raw) != {"value", "source"}:
        raise ChemistryRecordError(f"{where}: expected {{value, source}}")
    value, source = raw["value"], raw["source"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ChemistryRecordError(f"{where}.value: expected a finite number, got {value!r}")
    if not isinstance(source, str) or not source.strip():
        raise ChemistryRecordError(f"{where}.source: every number needs its source")
    return Sourced(float(value), source.strip())


def _sourced_text(raw: Any, where: str) -> Sourced[str]:
    if not isinstance(raw, dict) or set(raw) != {"value", "source"}:
        raise ChemistryRecordError(f"{where}: expected {{value, source}}")
    value, source = raw["value"], raw["source"]
    if not isinstance(value, str) or not value.strip():
        raise ChemistryRecordError(f"{where}.value: expected a file name")
    if not isinstance(source, str) or not source.strip():
        raise ChemistryRecordError(f"{where}.source: every table needs its source")
    return Sourced(value.strip(), source.strip())


def _record(name: str, raw: dict[str, Any]) -> ChemistryRecord:
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise ChemistryRecordError(f"{name}: unknown keys {sorted(unknown)}")
    missing = [k for k in ("description", "rc_pairs", *_NUMBER_KEYS, *_TEXT_KEYS) if k not in raw]
    if missing:
        raise ChemistryRecordError(f"{name}: missing keys {missing}")
    has_table = "resistance_csv" in raw
    has_figure = "dc_resistance_ohm" in raw
    if has_table == has_figure:
        raise ChemistryRecordError(f"{name}: give exactly one of resistance_csv and dc_resistance_ohm")
    if has_figure != ("arrhenius_temperature_k" in raw):
        raise ChemistryRecordError(f"{name}: arrhenius_temperature_k goes with dc_resistance_ohm")
    pairs_raw = raw["rc_pairs"]
    if not isinstance(pairs_raw, list) or len(pairs_raw) > 2:
        raise ChemistryRecordError(f"{name}.rc_pairs: expected a list of at most two pairs")
    pairs = []
    for index, pair in enumerate(pairs_raw, start=1):
        if not isinstance(pair, dict) or set(pair) != {"fraction_of_dc", "tau_s"}:
            raise ChemistryRecordError(f"{name}.rc_pairs.{index}: expected fraction_of_dc and tau_s")
        where = f"{name}.rc_pairs.{index}"
        pairs.append(
            RcPairRecord(
                fraction_of_dc=_sourced_number(pair["fraction_of_dc"], f"{where}.fraction_of_dc"),
                tau_s=_sourced_number(pair["tau_s"], f"{where}.tau_s"),
            )
        )
    description = raw["description"]
    if not isinstance(description, str) or not description.strip():
        raise ChemistryRecordError(f"{name}.description: expected a sentence")
    numbers = {k: _sourced_number(raw[k], f"{name}.{k}") for k in _NUMBER_KEYS}
    optional_numbers = {k: _sourced_number(raw[k], f"{name}.{k}") for k in _OPTIONAL_NUMBER_KEYS if k in raw}
    return ChemistryRecord(
        name=name,
        description=description.strip(),
        ocv_csv=_sourced_text(raw["ocv_csv"], f"{name}.ocv_csv"),
        resistance_csv=_sourced_text(raw["resistance_csv"], f"{name}.resistance_csv") if has_table else None,
        rc_pairs=tuple(pairs),
        **numbers,
        **optional_numbers,
    )


@lru_cache(maxsize=1)
def chemistry_records() -> Mapping[str, ChemistryRecord]:
    """All built-in records by name, read once from package data (records are immutable)."""
    import yaml  # only here: the brain imports this package for OcvTable and needs no YAML

    text = resources.files("openbms.chemistry").joinpath("data", RECORDS_FILE).read_text("utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise ChemistryRecordError(f"{RECORDS_FILE}: expected a mapping of chemistry names")
    records: dict[str, ChemistryRecord] = {}
    for name, raw in document.items():
        if not isinstance(raw, dict):
            raise ChemistryRecordError(f"{name}: expected a mapping")
        base_name = raw.get("based_on")
        if base_name is not None:
            base = document.get(base_name)
            if not isinstance(base, dict) or "based_on" in base:
                raise ChemistryRecordError(f"{name}.based_on: {base_name!r} is not a complete record")
            raw = {**base, **{k: v for k, v in raw.items() if k != "based_on"}}
        records[str(name)] = _record(str(name), raw)
    return MappingProxyType(records)
