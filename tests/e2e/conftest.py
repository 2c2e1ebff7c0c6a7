"""The whole studio for a real browser: ComfyUI, the backend, a dispatcher and `streamlit run`.

One stack per test module (the browser tests share it); Debian's chromium driven by Playwright with
`executable_path`. Screenshots go to test-artifacts/e2e/ (CI keeps them as artifacts).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

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
        emulator = start_emulator(tmp / "comfyui", step_ms=STEP_MS)
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


def sign_in(page: Page, url: str, token: str = DEMO_TOKEN) -> None:
    page.goto(url)
    page.locator(".st-key-w_token input").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()
    wait_for_run(page)
