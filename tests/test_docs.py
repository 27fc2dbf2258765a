"""The behaviour reference (docs/behaviour.md) stays in step with the code that cites it.

Why: code cites the reference by section number, and a reader trusts the page's fault names,
recovery classes, scenario keys and numbers. A renumbered section, a new fault, a new scenario key
or a changed lfp threshold must fail here rather than leave the page quietly wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openbms.bms.events import EVENT_KINDS, FAULT_NAMES
from openbms.profiles import load_profile
from openbms.scenario.schema import Scenario

ROOT = Path(__file__).resolve().parent.parent
BEHAVIOUR = ROOT / "docs" / "behaviour.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# "docs/behaviour.md §4", "… §4.3", "… §3–§5", "… §4, §5": every section named after the path.
CITATION = re.compile(r"docs/behaviour\.md\s+(§\d+(?:\.\d+)*(?:\s*(?:[–-]|,|and)\s*§\d+(?:\.\d+)*)*)")
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)


def _text() -> str:
    return BEHAVIOUR.read_text(encoding="utf-8")


def _sections() -> set[str]:
    return set(HEADING.findall(_text()))


def _citations() -> list[tuple[str, str]]:
    found = []
    for folder in ("src", "tests", "bench", "scripts", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".md", ".yaml", ".yml") or not path.is_file():
                continue
            for group in CITATION.findall(path.read_text(encoding="utf-8", errors="replace")):
                found += [(str(path.relative_to(ROOT)), number) for number in SECTION.findall(group)]
    return found


def test_sections_are_numbered_in_order() -> None:
    numbers = HEADING.findall(_text())
    tops = [int(n) for n in numbers if "." not in n]
    assert tops == list(range(1, len(tops) + 1))
    for number in numbers:
        if "." in number:
            assert number.rsplit(".", 1)[0] in numbers, f"§{number} has no parent section"


def test_every_citation_names_a_section_that_exists() -> None:
    sections = _sections()
    missing = [f"{where}: §{number}" for where, number in _citations() if number not in sections]
    assert not missing, missing


def test_the_citation_pattern_reads_ranges_and_lists() -> None:
    text = "see docs/behaviour.md §3–§5 and docs/behaviour.md §4, §6.2"
    numbers = [n for group in CITATION.findall(text) for n in SECTION.findall(group)]
    assert numbers == ["3", "5", "4", "6.2"]


@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_every_fault_is_documented(fault: str) -> None:
    assert f"`{fault}`" in _text()


def test_every_recovery_class_of_the_lfp_profile_is_documented() -> None:
    classes = {p.recovery for p in load_profile("lfp").protections.values()}
    assert classes
    for klass in classes:
        assert f"`{klass}`" in _text(), klass


def test_every_event_kind_is_documented() -> None:
    for kind in EVENT_KINDS:
        assert f"`{kind}`" in _text(), kind


@pytest.mark.parametrize("key", sorted(Scenario.model_fields))
def test_every_top_level_scenario_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in _text(), f"scenario key {key!r} is missing from the table of §8.1"


def test_the_protection_table_matches_the_lfp_profile() -> None:
    """Each row of §3.2 quotes the lfp profile's paths, class and trip threshold, not invented ones."""
    rows = {
        m.group(1): [cell.strip() for cell in m.group(2).split("|")]
        for m in re.finditer(r"^\| `(\w+)` \|(.*)\|$", _text(), re.MULTILINE)
    }
    for name, protection in load_profile("lfp").protections.items():
        assert name in rows, f"{name} has no row in the protection table"
        _measures, trips, _releases, blocks, recovery, _notes = rows[name]
        assert blocks == protection.blocks, name
        assert recovery == f"`{protection.recovery}`", name
        delay = re.search(r"([\d.]+) (s|µs)$", trips)
        assert delay is not None, name
        delay_s = float(delay.group(1)) * (1e-6 if delay.group(2) == "µs" else 1.0)
        assert delay_s == pytest.approx(protection.trip_delay_s), name
        for threshold in (protection.trip_v, protection.trip_c, protection.trip_c_rate):
            if threshold is not None:
                number = re.search(r"[≥≤] (−?[\d.]+)", trips)
                assert number is not None, name
                assert float(number.group(1).replace("−", "-")) == pytest.approx(threshold), name


def test_the_docs_never_point_outside_the_repository() -> None:
    for page in (BEHAVIOUR, ARCHITECTURE):
        text = page.read_text(encoding="utf-8")
        assert "../shared" not in text and "/work/" not in text, page.name
