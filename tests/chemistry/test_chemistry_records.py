"""The built-in chemistries are named records whose every number has a unit and a source.

Why: a parameter without provenance cannot be checked or improved, and a positional number in
code hides which quantity it is. These tests keep the records complete and the cited files real.
"""

from __future__ import annotations

import re
from importlib import resources

import pytest

from openbms.chemistry import CHEMISTRIES, load_chemistry
from openbms.chemistry.records import ChemistryRecord, chemistry_records

DATA = resources.files("openbms.chemistry").joinpath("data")
UNIT_SUFFIXES = ("_ah", "_ohm", "_k", "_s", "_j_per_k_per_ah", "_w_per_k_per_ah", "_per_day", "_csv")
FRACTIONS = ("coulombic_efficiency", "r0_fraction_of_dc", "fraction_of_dc")


def test_every_builtin_chemistry_has_a_record() -> None:
    assert set(chemistry_records()) == set(CHEMISTRIES)


@pytest.mark.parametrize("name", sorted(CHEMISTRIES))
def test_every_number_has_a_unit_in_its_name_and_a_source(name: str) -> None:
    record: ChemistryRecord = chemistry_records()[name]
    for key, quantity in record.sourced_values().items():
        leaf = key.rsplit(".", 1)[-1]
        assert leaf.endswith(UNIT_SUFFIXES) or leaf in FRACTIONS, f"{name}.{key} names no unit"
        assert len(quantity.source) > 10, f"{name}.{key} has no real source"
        if quantity.source.startswith("openbms estimate"):
            assert len(quantity.source) > len("openbms estimate: ") + 10, f"{name}.{key}: say why"


@pytest.mark.parametrize("name", sorted(CHEMISTRIES))
def test_the_tables_a_record_names_exist(name: str) -> None:
    record = chemistry_records()[name]
    for table in (record.ocv_csv, record.resistance_csv):
        if table is not None:
            assert DATA.joinpath(table.value).is_file(), table.value


def test_every_provenance_file_cited_in_the_package_exists() -> None:
    package = resources.files("openbms.chemistry")
    texts = [package.joinpath(f).read_text("utf-8") for f in ("cells.py", "records.py")]
    texts += [DATA.joinpath(f).read_text("utf-8") for f in ("chemistries.yaml",)]
    cited = {m for text in texts for m in re.findall(r"PROVENANCE[\w-]*\.md", text)}
    assert "PROVENANCE.md" in cited
    for name in cited:
        assert DATA.joinpath(name).is_file(), f"{name} is cited but missing"


def test_every_data_file_is_accounted_for_in_a_provenance_note() -> None:
    notes = DATA.joinpath("PROVENANCE.md").read_text("utf-8") + DATA.joinpath("PROVENANCE-nmc-lto.md").read_text(
        "utf-8"
    )
    for entry in DATA.iterdir():
        if entry.name.endswith((".csv", ".yaml", ".txt")):
            assert f"`{entry.name}`" in notes, f"{entry.name} has no provenance"


def test_records_turn_into_the_parameters_they_describe() -> None:
    for name, record in chemistry_records().items():
        params = load_chemistry(name)
        assert params.capacity_ah == record.capacity_ah.value
        assert params.coulombic_efficiency == record.coulombic_efficiency.value
        assert params.self_discharge_per_day == record.self_discharge_fraction_per_day.value
        assert params.thermal_mass_j_per_k == pytest.approx(
            record.capacity_ah.value * record.heat_capacity_j_per_k_per_ah.value
        )
        for (r_ohm, c_f), pair in zip(params.rc, record.rc_pairs, strict=True):
            assert r_ohm * c_f == pytest.approx(pair.tau_s.value)
        if record.dc_resistance_ohm is not None:
            assert params.r0_ohm == pytest.approx(record.r0_fraction_of_dc.value * record.dc_resistance_ohm.value)


def test_the_records_are_immutable() -> None:
    records = chemistry_records()
    with pytest.raises(TypeError):
        records["lfp"] = records["nmc"]  # type: ignore[index]
