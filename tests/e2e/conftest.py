"""The whole studio for a real browser: ComfyUI, the backend, a dispatcher and `streamlit run`.

One stack per test module (the browser tests share it); Debian's chromium driven by Playwright with
`executable_path`. Screenshots go to test-artifacts/e2e/ (CI keeps them as artifacts).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.support.backend import DEMO_TOKEN, Stack, start_stack
from tests.support.comfy import REAL_COMFYUI, start_emulator
from tests.support.db import sqlite_db
from tests.support.net import free_port, wait_http, wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
STEP_MS = 120  # slow enough for a person (or a test) to press Cancel mid-render
# Assertions wait as long as a designer would on a loaded machine: CI runs the browser beside three
# other test workers, and a component iframe (the drawing canvas) has taken over 5 s to appear there.
expect.set_options(timeout=15_000)


@dataclass
class Studio:
    url: str
    stack: Stack


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Studio]:
    tmp = tmp_path_factory.mktemp("studio")
    emulator = None
    if REAL_COMFYUI:
        comfy_url = REAL_COMFYUI
    else:
        # live previews on, as `make run` and the ML host run ComfyUI
        emulator = start_emulator(tmp / "comfyui", step_ms=STEP_MS, extra_args=["--preview-method", "auto"])
        comfy_url = emulator.url
    try:
        with start_stack(sqlite_db(sqlite_template, tmp), tmp, comfy_url) as stack:
            dispatcher = stack.dispatcher_thread().start()
            port = free_port()
            log = (tmp / "streamlit.log").open("w")
            ui = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamlit",
                    "run",
                    str(ROOT / "frontend" / "app.py"),
                    "--server.headless=true",
                    f"--server.port={port}",
                    "--server.address=127.0.0.1",
                    "--browser.gatherUsageStats=false",
                    "--server.fileWatcherType=none",
                    "--client.toolbarMode=minimal",
                    "--theme.base=light",
                ],
                env={**os.environ, "BACKEND_URL": stack.url},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
            try:
                wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout_s=30)
                yield Studio(f"http://127.0.0.1:{port}", stack)
            finally:
                ui.terminate()
                try:
                    ui.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    ui.kill()
                log.close()
                dispatcher.stop()
    finally:
        if emulator is not None:
            emulator.stop()


@pytest.fixture(scope="module")
def browser(studio: Studio) -> Iterator[Browser]:
    """After the studio: Playwright's sync API keeps an event loop running in this thread."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("Debian's chromium is missing: `make test` (or .ci/run) installs it")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 1400}, accept_downloads=True)
    context.set_default_timeout(30_000)
    p = context.new_page()
    yield p
    context.close()


def wait_for_run(page: Page) -> None:
    app = page.get_by_test_id("stApp")
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED")
    expect(app).to_have_attribute("data-test-script-state", "notRunning")


def settle(page: Page, timeout_ms: int = 30_000) -> None:
    """The script has finished and nothing on the page is still dimmed as stale: a rerun that began
    after `wait_for_run` returned leaves faded elements (opacity) until it ends, which a contrast check
    or a screenshot would take for the page."""
    wait_for_run(page)
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=timeout_ms)
    wait_for_run(page)


def most_steps(page: Page) -> None:
    """Set the Steps slider to its maximum (100, four times the default): a render a loaded machine
    cannot finish before a test has seen it in progress (a second preview, a cancel, a reload)."""
    advanced = page.get_by_text("Advanced settings")
    steps = page.locator(".st-key-w_steps").get_by_role("slider")
    if not steps.is_visible():
        click_until(page, advanced, steps)
    steps.focus()
    page.keyboard.press("End")
    expect(steps).to_have_value("100")
    wait_for_run(page)


def choose(page: Page, key: str, option: str | re.Pattern[str]) -> None:
    """Pick `option` in the selectbox of widget `key` once the page has settled: a click that lands
    while the script is still running can be lost (the widget is redrawn), so it is retried."""
    wait_for_run(page)
    box = page.locator(f".st-key-{key}").get_by_role("combobox")
    expect(box).to_be_visible()
    choice = page.get_by_role("option", name=option)
    for _attempt in range(3):
        box.scroll_into_view_if_needed()
        box.click()
        try:
            expect(choice.first).to_be_visible(timeout=5_000)
            break
        except AssertionError:
            page.keyboard.press("Escape")
            wait_for_run(page)
    choice.first.click()
    expect(box).to_have_value(option)  # taken; callers check the page it reruns into
    wait_for_run(page)


def choose_template(page: Page, title: str) -> None:
    """Pick a template on the studio page once it is drawn (its picker shows the studio render)."""
    expect(page.get_by_role("combobox", name="Template")).to_have_value(re.compile("^Studio render"))
    choose(page, "w_template", re.compile(f"^{re.escape(title)}$"))


def click_until(page: Page, button: Locator, shown: Locator, timeout_ms: float = 10_000) -> None:
    """Click `button` once the page has settled until `shown` is visible: on a loaded machine a click
    that lands while the script reruns (a component sending its value) can be lost, so it is retried.
    A toggle (an expander) is not clicked again once `shown` has come, however late."""
    for attempt in range(3):
        wait_for_run(page)
        if attempt and shown.is_visible():
            return
        button.click()
        try:
            expect(shown).to_be_visible(timeout=timeout_ms)
            return
        except AssertionError:
            continue
    expect(shown).to_be_visible()


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_for_jobs(stack: Stack, timeout_s: float = 60) -> None:
    """Until no job of the designer is queued or running (the module's dispatcher renders them)."""
    with stack.client() as c:
        wait_until(
            lambda: not c.get("/api/jobs", params={"status": ["queued", "running"]}).json()["items"],
            timeout_s=timeout_s,
        )


def enter_token(page: Page, token: str) -> None:
    """The sign-in page's designer-token form (in its expander): fill it and send it."""
    token_input = page.locator(".st-key-w_token input")
    click_until(page, page.get_by_text("Sign in with a designer token"), token_input)  # a lost click
    token_input.fill(token)
    wait_for_run(page)
    page.get_by_role("button", name="Sign in with the token").click()


def sign_in(page: Page, url: str, token: str = DEMO_TOKEN) -> None:
    page.goto(url)
    enter_token(page, token)
    signed_in = page.get_by_text("Signed in as")
    for _attempt in range(2):  # a click that lands while the page reruns is lost: send it again
        try:
            expect(signed_in).to_be_visible(timeout=10_000)
            break
        except AssertionError:
            wait_for_run(page)
            page.get_by_role("button", name="Sign in with the token").click()
    expect(signed_in).to_be_visible()
    wait_for_run(page)
