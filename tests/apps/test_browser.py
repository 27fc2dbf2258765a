"""The page in a real browser: Debian's chromium driven by playwright, against ``openbms serve``
started as a user starts it (a child process on a free port). What a user relies on: the page
loads, its values move, a control makes the current flow, a control without the token is
refused, the hard-reset wizard walks to its end in the twin. The last test saves the screenshot
the README shows (docs/serve.png).

Skipped when playwright or chromium is missing; ``.ci/run`` installs both, so CI runs them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("OPENBMS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs it)")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "serve.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    folder = tmp_path_factory.mktemp("serve")
    port = _free_port()
    command = [sys.executable, "-m", "openbms.cli", "serve", "--port", str(port), "--speed", "200"]
    command += ["--token-file", str(folder / "token")]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        token = child.stdout.readline().strip()  # printed once, on the first run
        assert len(token) >= 40, "serve prints the new token on its first run"
        end = time.monotonic() + 60
        while time.monotonic() < end:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("openbms serve did not start listening")
        yield f"http://127.0.0.1:{port}", token
    finally:
        child.terminate()
        child.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _page(browser: object, url: str) -> object:
    """The page, once it has started (its info and limits loaded, the websocket open)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1400})  # type: ignore[attr-defined]
    page.goto(url)
    sync_api.expect(page.locator("#link")).to_have_text("live", timeout=30_000)
    return page


def _number(text: str) -> float:
    match = re.search(r"-?\d+(\.\d+)?", text)
    assert match, text
    return float(match.group(0))


def test_the_page_loads_and_its_values_move(server: tuple[str, str], browser: object) -> None:
    url, _ = server
    page = _page(browser, url)
    expect = sync_api.expect
    expect(page.locator("#link")).to_have_text("live", timeout=15_000)
    expect(page.locator("#state")).to_have_text("normal")
    assert 50 < _number(page.locator("#pack-v").inner_text()) < 55  # 16 LFP cells near 3.3 V
    assert page.locator("#cells .cell").count() == 16
    first = page.locator("#clock").inner_text()
    expect(page.locator("#clock")).not_to_have_text(first, timeout=10_000)


def test_a_control_without_the_token_is_refused_on_the_page(server: tuple[str, str], browser: object) -> None:
    url, _ = server
    page = _page(browser, url)
    page.fill("#token", "")
    page.click("#load-on")
    sync_api.expect(page.locator("#message")).to_contain_text("401", timeout=10_000)
    page.fill("#token", "not-the-token-not-the-token-not-the-token")
    page.click("#load-on")
    sync_api.expect(page.locator("#message")).to_contain_text("403", timeout=10_000)


def test_a_load_switched_on_from_the_page_shows_its_current(server: tuple[str, str], browser: object) -> None:
    url, token = server
    page = _page(browser, url)
    page.fill("#token", token)
    page.fill("#load-a", "30")
    page.click("#load-on")
    sync_api.expect(page.locator("#message")).to_contain_text("load of 30 A connected", timeout=10_000)
    end = time.monotonic() + 30

    def amps() -> float | None:  # "—" until the first reading arrives over the websocket
        text = page.locator("#current").inner_text()
        return _number(text) if re.search(r"\d", text) else None

    while (amps() is None or amps() > -25) and time.monotonic() < end:  # type: ignore[operator]
        time.sleep(0.2)
    assert amps() == pytest.approx(-30.0, abs=1.0)
    page.click("#load-off")
    sync_api.expect(page.locator("#message")).to_contain_text("load disconnected", timeout=10_000)


def test_the_hard_reset_wizard_walks_to_the_end_in_the_twin(server: tuple[str, str], browser: object) -> None:
    url, token = server
    page = _page(browser, url)
    page.fill("#token", token)
    page.select_option("#procedure", "hard_reset")
    page.click("#wizard-start")
    sync_api.expect(page.locator("#wizard-current")).to_contain_text("Step 1 of 8", timeout=10_000)
    steps_done = 0
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if "Finished" in page.locator("#wizard-message").inner_text():
            break
        for button in page.locator("#wizard-actions button").all():  # the twin's hands, when offered
            button.click()
            page.wait_for_timeout(300)
        page.click("#wizard-next")
        page.wait_for_timeout(400)
        if "Not yet" not in page.locator("#wizard-message").inner_text():
            steps_done += 1
    assert "Finished" in page.locator("#wizard-message").inner_text()
    assert steps_done == 8
    sync_api.expect(page.locator("#state")).to_have_text("normal")


def test_the_readme_screenshot(server: tuple[str, str], browser: object) -> None:
    """Made by the test, so the README shows the page as it is."""
    url, token = server
    page = _page(browser, url)
    sync_api.expect(page.locator("#link")).to_have_text("live", timeout=15_000)
    page.fill("#token", token)
    page.click("#load-on")
    page.wait_for_timeout(3000)  # a few seconds of plot and events
    page.evaluate("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=False)
    assert SCREENSHOT.stat().st_size > 10_000
    page.click("#load-off")
