"""The house rules that a machine can check: lint, types, and the brain's isolation."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src" / "openbms"


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_is_clean() -> None:
    proc = subprocess.run(["ruff", "check", "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_brain_imports_no_twin_cli_or_io() -> None:
    forbidden = (
        "openbms.twin",
        "openbms.cli",
        "openbms.scenario",
        "openbms.devices",
        "sqlite3",
        "os",
        "time",
        "random",
        "pathlib",
        "io",
        "socket",
        "serial",
    )
    for path in (SRC / "bms").glob("*.py"):
        if path.name == "nvm.py":  # the non-volatile memory is the brain's one storage adapter
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in forbidden), f"{path.name} imports {name}"


def test_every_profile_speaks_the_spec_fault_vocabulary() -> None:
    from openbms.bms.events import FAULT_NAMES
    from openbms.bms.profile import builtin_profiles, load_profile

    for name in builtin_profiles():
        assert tuple(load_profile(name).protections) == FAULT_NAMES, name
