"""``openbms serve`` refuses what it cannot do in one sentence (exit 2), before it serves."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")

from openbms.cli import app  # noqa: E402

runner = CliRunner()


def _serve(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["serve", *args])
    return result.exit_code, " ".join(result.output.split())


def test_a_port_in_use_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, said = _serve("--port", str(port), "--token-file", str(tmp_path / "token"), "--engine", "reference")
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in said and "Traceback" not in said


def test_an_unknown_address_is_refused(tmp_path: Path) -> None:
    code, said = _serve("--host", "no-such-host.invalid", "--token-file", str(tmp_path / "t"), "--engine", "reference")
    assert code == 2 and "cannot listen on no-such-host.invalid" in said


def test_a_scenario_and_a_device_together_are_refused(tmp_path: Path) -> None:
    code, said = _serve("x.yaml", "--device", "jbd:/dev/null", "--token-file", str(tmp_path / "t"))
    assert code == 2 and "a scenario or --device, not both" in said


def test_a_bad_scenario_is_refused_and_makes_no_token(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntimeline:\n  - lod: 1\n")
    code, said = _serve(str(bad), "--token-file", str(tmp_path / "t"))
    assert code == 2 and "unknown step" in said
    assert not (tmp_path / "t").exists(), "a token nobody was shown would lock its owner out"


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("y" * 43 + "\n")
    os.chmod(token, 0o644)
    code, said = _serve("--token-file", str(token))
    assert code == 2 and "chmod 600" in said


def test_bad_numbers_are_refused(tmp_path: Path) -> None:
    assert _serve("--port", "70000", "--token-file", str(tmp_path / "t"))[0] == 2
    assert _serve("--speed", "0", "--token-file", str(tmp_path / "t"))[0] == 2
    code, said = _serve("--device", "jbd:/dev/null", "--keep", "0s", "--token-file", str(tmp_path / "t"))
    assert code == 2 and "--keep must be longer than 0 s" in said
