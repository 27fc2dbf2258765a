"""The house rules that a machine can check: lint, types, the layer map and the brain's isolation.

The layer map (each layer imports only layers below it, and the neutral helpers)::

    chemistry → bms → profiles → twin → fast → scenario → devices → diagnose → apps → cli

- the neutral helpers (``openbms``, ``openbms.inputs``, ``openbms.units``, ``openbms.files``)
  import nothing of openbms but each other, so every layer may use them;
- the brain (``bms``) sees only the interface to hardware: no twin, scenario, device, diagnosis
  or CLI, and no I/O;
- ``profiles`` (one module) reads the shipped profile files for the brain, which reads no file:
  the brain validates a profile, the layer above it finds and merges the YAML;
- ``fast`` (compiled numba kernels for the per-cycle work, an optional extra) sits above the
  ``twin`` and ``bms`` whose Python code it reproduces and is checked against; nothing below it
  may depend on numba;
- ``devices`` sits above ``scenario`` because the emulator plays a scenario on the twin (it is
  the twin's serving end, beside the protocol servers it answers with);
- ``diagnose`` sits above ``devices``: ``diagnose.from_device`` turns a device's reading into a
  snapshot as ``diagnose.from_twin`` turns the twin's. Devices never import diagnose, so the two
  cannot form a cycle;
- the scenario runner checks a ``diagnosis`` expectation with a diagnoser its caller (the CLI)
  passes in, so the scenario imports no diagnosis.

The import graph is built from every module's ``ast`` (imports inside functions included: the
CLI imports lazily) and must also have no cycle at all, within a layer too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src" / "openbms"

NEUTRAL = frozenset({"openbms", "openbms.inputs", "openbms.units", "openbms.files"})
LAYERS = (
    "openbms.chemistry",
    "openbms.bms",
    "openbms.profiles",
    "openbms.twin",
    "openbms.fast",
    "openbms.scenario",
    "openbms.devices",
    "openbms.diagnose",
    "openbms.apps",
    "openbms.cli",
)
LAYER_ALIASES = {"openbms.__main__": "openbms.cli"}  # ``python -m openbms`` is the CLI


def test_ruff_is_clean() -> None:
    # Run as a module of this interpreter: a missing ruff fails here instead of skipping silently.
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "src", "tests", "bench", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# What a brain module may import that the rest of the brain may not, and why.
BRAIN_EXCEPTIONS: dict[str, set[str] | None] = {
    "nvm.py": None,  # the non-volatile memory is the brain's one storage adapter: anything
}


def test_the_brain_imports_no_twin_cli_or_io() -> None:
    forbidden = (
        "openbms.twin",
        "openbms.cli",
        "openbms.scenario",
        "openbms.devices",
        "openbms.diagnose",
        "yaml",
        "importlib",
        "json",
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
        if path.name in BRAIN_EXCEPTIONS and BRAIN_EXCEPTIONS[path.name] is None:
            continue
        excused = BRAIN_EXCEPTIONS.get(path.name) or set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in excused:
                    continue
                assert not any(name == f or name.startswith(f + ".") for f in forbidden), f"{path.name} imports {name}"


def test_every_profile_speaks_the_spec_fault_vocabulary() -> None:
    from openbms.bms.events import FAULT_NAMES
    from openbms.profiles import builtin_profiles, load_profile

    for name in builtin_profiles():
        assert tuple(load_profile(name).protections) == FAULT_NAMES, name


# ----------------------------------------------------------------------------- the layer map
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imported(node: ast.AST, module: str, path: Path, known: set[str]) -> list[str]:
    """The openbms modules one import statement names (``from pkg import submodule`` included)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "openbms"]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    if base.split(".")[0] != "openbms":
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Every openbms module and the openbms modules it imports, anywhere in its body."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            edges.update(_imported(node, module, path, known))
        graph[module] = edges - {module}
    return graph


def layer_of(module: str) -> int | None:
    """The module's rank in ``LAYERS`` (None: a neutral helper)."""
    if module in NEUTRAL:
        return None
    module = LAYER_ALIASES.get(module, module)
    for rank, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS or NEUTRAL in {Path(__file__).name}")


def _allowed(source: str, target: str) -> bool:
    low, high = layer_of(target), layer_of(source)
    if low is None:
        return True  # anyone may use a neutral helper
    if high is None:
        return False  # a neutral helper uses no layer
    return low <= high  # within a layer, or down the map


def test_every_import_points_down_the_layer_map() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "openbms.bms.brain" in graph, "the graph misses modules"
    assert "openbms.diagnose.from_device" in graph["openbms.cli"], "lazy imports must count"
    wrong = sorted(f"{a} imports {b}" for a, targets in graph.items() for b in targets if not _allowed(a, b))
    assert not wrong, "imports against the layer map:\n" + "\n".join(wrong)


def test_the_import_graph_has_no_cycle() -> None:
    try:
        tuple(TopologicalSorter(import_graph()).static_order())
    except CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_the_layer_check_catches_an_upward_import() -> None:
    """The checker itself: an upward edge and a neutral helper importing a layer are refused."""
    assert not _allowed("openbms.devices.reader", "openbms.diagnose.snapshot")
    assert not _allowed("openbms.scenario.runner", "openbms.diagnose.engine")
    assert not _allowed("openbms.files", "openbms.scenario.output")
    assert _allowed("openbms.diagnose.from_device", "openbms.devices.reader")
    assert _allowed("openbms.chemistry.cells", "openbms.inputs")
    assert _allowed("openbms.__main__", "openbms.cli")
