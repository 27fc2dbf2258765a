"""``simulate --out DIR`` replaces an output set as a set (issue 8 item 8): a ``kill -9`` at any
moment leaves DIR with the old complete set, the new complete set, or a set marked
``INCOMPLETE`` — never an unmarked mix of files from two runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from openbms.cli import app
from openbms.scenario.output import INCOMPLETE, OUTPUT_NAMES

ROOT = Path(__file__).parent.parent.parent
FILES = Path(__file__).parent / "files"
CHILD = Path(__file__).with_name("output_kill_child.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OPENBLAS_NUM_THREADS": "1"}
# Kill points of the commit, in order: 1 = before the INCOMPLETE marker is written, 2..5 = before
# each of the four renames, 6 = before the marker is removed; 0 = no kill.
EXPECTED = {1: "old", 2: "marked", 3: "marked", 4: "marked", 5: "marked", 6: "marked", 0: "new"}


def reference(tmp_path: Path, name: str, scenario: Path) -> dict[str, bytes]:
    folder = tmp_path / name
    result = CliRunner().invoke(app, ["simulate", str(scenario), "--out", str(folder), "--every", "1s"])
    assert result.exit_code == 0, result.output
    return {n: (folder / n).read_bytes() for n in OUTPUT_NAMES}


def verdict(folder: Path, old: dict[str, bytes], new: dict[str, bytes]) -> str:
    """old, new or marked; fails on an unmarked mix (or a file that is neither)."""
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    if INCOMPLETE in names:
        assert "may come from two different runs" in (folder / INCOMPLETE).read_text()
        return "marked"
    assert names == set(OUTPUT_NAMES), names
    owners = {n: {k for k, ref in (("old", old), ("new", new)) if (folder / n).read_bytes() == ref[n]} for n in names}
    for candidate in ("old", "new"):
        if all(candidate in found for found in owners.values()):
            return candidate
    raise AssertionError(f"an unmarked mix of two runs: {owners}")


def test_kill_9_while_replacing_an_output_set_never_leaves_an_unmarked_mix(tmp_path: Path) -> None:
    longer = tmp_path / "longer.yaml"
    text = (FILES / "short.yaml").read_text().replace("Short test scenario", "Longer")
    longer.write_text(text.replace("run: 5s", "run: 8s\n  - press: reset_button\n  - run: 1s"))
    old, new = reference(tmp_path, "ref-old", FILES / "short.yaml"), reference(tmp_path, "ref-new", longer)
    assert all(old[n] != new[n] for n in OUTPUT_NAMES)  # every file tells the two runs apart
    out = tmp_path / "out"
    seen = {}
    for kill_at in EXPECTED:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(tmp_path / "ref-old", out)
        proc = subprocess.run(
            [sys.executable, str(CHILD), str(out), str(kill_at), "simulate", str(longer), "--out", str(out)]
            + ["--every", "1s"],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
        assert proc.returncode == (-signal.SIGKILL if kill_at else 0), proc.stderr
        seen[kill_at] = verdict(out, old, new)
    assert seen == EXPECTED
    # The next run over a marked set repairs it and clears the killed run's staging folder.
    proc = subprocess.run(
        [sys.executable, "-m", "openbms.cli", "simulate", str(longer), "--out", str(out), "--every", "1s"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert verdict(out, old, new) == "new"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_kill_9_during_the_run_leaves_the_old_set_alone(tmp_path: Path) -> None:
    long_run = tmp_path / "long.yaml"
    long_run.write_text((FILES / "short.yaml").read_text().replace("run: 5s", "run: 1h"))
    old = reference(tmp_path, "ref-old", FILES / "short.yaml")
    out = tmp_path / "out"
    shutil.copytree(tmp_path / "ref-old", out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "openbms.cli", "simulate", str(long_run), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(s.stat().st_size > 64 * 1024 for s in out.glob(".openbms-partial-*/telemetry.csv")):
            assert time.monotonic() < deadline and proc.poll() is None, "no telemetry streamed"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert verdict(out, old, old) == "old"  # untouched; the partial rows sit in a hidden staging folder
    (staging,) = out.glob(".openbms-partial-*")
    assert (staging / "telemetry.csv").read_text().startswith("t_s,pack_v,")
