"""What the AppTests share: the app's path, a backend on loopback that the UI's API client points at
(BACKEND_URL, no patching), a dispatcher thread rendering through the session's ComfyUI, and a signed-in
app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.backend import DEMO_TOKEN, DispatcherThread, Stack, start_stack
from tests.support.db import sqlite_db

APP = str(Path(__file__).resolve().parents[2] / "frontend" / "app.py")
TIMEOUT_S = 60


@pytest.fixture
def ui_stack(
    tmp_path: Path, sqlite_template: Path, comfyui_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    from frontend.config import get_frontend_settings

    with start_stack(sqlite_db(sqlite_template, tmp_path), tmp_path, comfyui_url) as stack:
        monkeypatch.setenv("BACKEND_URL", stack.url)
        get_frontend_settings.cache_clear()
        yield stack
    get_frontend_settings.cache_clear()


@pytest.fixture
def dispatcher(ui_stack: Stack) -> Iterator[DispatcherThread]:
    d = ui_stack.dispatcher_thread().start()
    yield d
    d.stop()


def signed_in(token: str = DEMO_TOKEN, timeout_s: float = TIMEOUT_S) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout_s).run()
    at.text_input(key="w_token").input(token)
    at.button(key="w_token_sign_in").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def texts(at: AppTest) -> str:
    return "\n".join(t.value for t in at.text)
