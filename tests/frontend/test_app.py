"""The studio page through Streamlit's AppTest, against a real backend and ComfyUI on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.backend import DEMO_TOKEN, Stack, start_stack
from tests.support.db import sqlite_db

APP = str(Path(__file__).resolve().parents[2] / "frontend" / "app.py")


@pytest.fixture
def ui_stack(tmp_path: Path, sqlite_template: Path, comfyui_url: str, monkeypatch: pytest.MonkeyPatch):
    gen = start_stack(sqlite_db(sqlite_template, tmp_path), tmp_path, comfyui_url)
    stack: Stack = next(gen)
    monkeypatch.setenv("BACKEND_URL", stack.url)
    from frontend.config import get_frontend_settings

    get_frontend_settings.cache_clear()
    yield stack
    gen.close()
    get_frontend_settings.cache_clear()


def test_a_wrong_token_gets_a_clear_message(ui_stack: Stack) -> None:
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert at.info[0].value.startswith("Sign in")
    at.text_input(key="token").input("not-a-token").run()
    assert not at.exception
    assert "not valid" in at.error[0].value


def test_text_render_shows_progress_and_the_image(ui_stack: Stack) -> None:
    dispatcher = ui_stack.dispatcher_thread().start()
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.text_input(key="token").input(DEMO_TOKEN).run()
        at.text_area(key="prompt").input("quiet reading corner, rattan armchair").run()
        at.radio(key="style").set_value("Indochine").run()
        at.button(key="render").click().run()
        assert not at.exception, at.exception
        assert not at.error
        assert len(at.image) == 1
        assert len(at.get("download_button")) == 1
    finally:
        dispatcher.stop()
