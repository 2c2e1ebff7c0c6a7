"""Every studio view through Streamlit's AppTest, against a real backend and ComfyUI on loopback.

No patching: BACKEND_URL points the UI's API client at the test's backend; a dispatcher thread renders
through the session's ComfyUI (the emulator unless COMFYUI_URL names a real one).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from frontend.components import Shown
from tests.factories import fill_models, sketch_png
from tests.frontend.conftest import APP, TIMEOUT_S, signed_in, texts
from tests.support.backend import DEMO_TOKEN, DispatcherThread, Stack, start_stack
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, EmulatorProcess, start_emulator
from tests.support.db import sqlite_db
from tests.support.net import free_port, wait_until


def test_a_wrong_token_gets_a_clear_message(ui_stack: Stack) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.text_input(key="w_token").input("not-a-token")
    at.button(key="w_token_sign_in").click().run()
    assert not at.exception
    assert "not valid" in at.error[0].value
    assert at.session_state["token"] is None


def test_an_unreachable_backend_is_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from frontend.config import get_frontend_settings

    monkeypatch.setenv("BACKEND_URL", f"http://127.0.0.1:{free_port()}")
    get_frontend_settings.cache_clear()
    try:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
        at.text_input(key="w_token").input(DEMO_TOKEN)
        at.button(key="w_token_sign_in").click().run()
    finally:
        get_frontend_settings.cache_clear()
    assert not at.exception
    assert "cannot be reached" in at.error[0].value


def test_sign_in_survives_a_reload_and_sign_out_ends_it(ui_stack: Stack) -> None:
    at = signed_in()
    sid = at.query_params["sid"]
    assert DEMO_TOKEN not in str(dict(at.query_params))
    reloaded = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    reloaded.query_params["sid"] = sid
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.session_state["token"] == DEMO_TOKEN
    assert any("Signed in as" in c.value for c in reloaded.caption)
    reloaded.button(key="sign_out").click().run()
    assert reloaded.session_state["token"] is None
    again = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    again.query_params["sid"] = sid
    again.run()
    assert again.session_state["token"] is None
    assert "session has ended" in again.info[0].value


def test_presets_fill_the_prompt_and_the_style_picker_lists_every_style(ui_stack: Stack) -> None:
    at = signed_in()
    at.selectbox(key="w_preset").select("Kitchen").run()
    assert "kitchen" in at.text_area(key="w_prompt").value
    assert "dirty dishes" in at.text_area(key="w_negative").value
    cards = [b for b in at.button if b.key.startswith("pick_style_")]
    assert [b.label for b in cards] == ["Indochine ✓", "Minimalist", "None"]  # the card is the control
    assert at.session_state["w_style"] == "indochine"
    at.button(key="pick_style_minimalist").click().run()
    assert at.session_state["w_style"] == "minimalist"
    assert at.button(key="pick_style_minimalist").label == "Minimalist ✓"
    fallbacks = [h.value for h in at.get("html") if h.value.startswith('<div class="studio-fallback')]
    assert len(fallbacks) == 3  # no rendered previews yet: a designed card each, never the word placeholder
    assert "white oak, linen" in fallbacks[1] and "placeholder" not in " ".join(fallbacks).lower()
    at.selectbox(key="w_size").select("Portrait 512 × 768").run()
    assert (at.number_input(key="w_width").value, at.number_input(key="w_height").value) == (512, 768)
    at.number_input(key="w_width").set_value(600).run()
    assert at.selectbox(key="w_size").value == "Custom"


def test_text_render_with_indochine_shows_progress_the_image_and_its_settings(
    ui_stack: Stack, dispatcher: DispatcherThread
) -> None:
    at = signed_in()
    at.text_area(key="w_prompt").input("quiet reading corner, rattan armchair <b>bold</b>")
    at.button(key="pick_style_indochine").click().run()
    at.checkbox(key="w_random_seed").uncheck().run()
    at.number_input(key="w_seed").set_value(4242)
    at.button(key="render").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    job_id = at.query_params["job"]
    job = ui_stack.client().get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["style"] == "indochine" and job["seed"] == 4242
    assert not at.progress  # the bar and its Cancel button are gone once the render ended
    assert f"cancel_{job_id}" not in [b.key for b in at.button]
    assert "Download" in [d.label for d in at.get("download_button")]
    assert "<b>bold</b>" in texts(at)  # shown as text, not as HTML
    assert "Seed: 4242" in texts(at)


def test_a_reload_shows_the_current_render_again(ui_stack: Stack, dispatcher: DispatcherThread) -> None:
    at = signed_in()
    at.button(key="render").click().run()
    reloaded = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    for key in ("sid", "job"):
        reloaded.query_params[key] = at.query_params[key]
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.session_state["job_id"] == at.query_params["job"]
    assert len(reloaded.get("download_button")) == 1


def test_sketch_upload_is_previewed_as_comfyui_gets_it_and_renders(
    ui_stack: Stack, dispatcher: DispatcherThread
) -> None:
    at = signed_in()
    at.radio(key="w_mode").set_value("Start from a sketch").run()
    at.button(key="render").click().run()
    assert "sketch first" in at.error[0].value
    at.file_uploader(key="w_sketch_file").upload("plan.png", sketch_png(), "image/png").run()
    assert not at.exception, at.exception
    upload = at.session_state["upload"]
    assert upload["dark_lines"] is True
    captions = [c for image in at.image for c in image.captions]
    assert any("inverted" in c and "728×544" in c for c in captions), captions  # the 4:3 sketch's shape
    assert (at.number_input(key="w_width").value, at.number_input(key="w_height").value) == (728, 544)
    assert any("Render size set to 728 × 544 px to match your sketch" in i.value for i in at.info)
    at.slider(key="w_sketch_strength").set_value(1.2)
    at.button(key="render").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = ui_stack.client().get(f"/api/jobs/{at.query_params['job']}").json()
    assert job["kind"] == "sketch" and job["status"] == "succeeded"
    assert job["params"]["upload_id"] == upload["id"] and job["params"]["sketch_strength"] == 1.2


def test_a_file_that_is_not_an_image_gets_the_backends_message(ui_stack: Stack) -> None:
    at = signed_in()
    at.radio(key="w_mode").set_value("Start from a sketch").run()
    at.file_uploader(key="w_sketch_file").upload("plan.png", b"%PDF-1.4 not a png", "image/png").run()
    assert not at.exception
    assert at.session_state["upload"] is None
    assert "image" in at.error[0].value.lower()


def test_variations_compare_styles_and_use_as_sketch(ui_stack: Stack, dispatcher: DispatcherThread) -> None:
    at = signed_in()
    at.button(key="render").click().run()
    first = ui_stack.client().get(f"/api/jobs/{at.query_params['job']}").json()
    image_id = first["images"][0]["id"]

    at.button(key=f"var_{image_id}").click().run()
    variation = ui_stack.client().get(f"/api/jobs/{at.query_params['job']}").json()
    assert variation["retry_of"] == first["id"] and variation["seed"] != first["seed"]
    assert variation["status"] == "succeeded"

    at.button(key=f"cmp_{variation['images'][0]['id']}").click().run()
    assert not at.exception, at.exception
    ids = at.query_params["compare"].split(",")
    with ui_stack.client() as c:
        wait_until(lambda: all(c.get(f"/api/jobs/{j}").json()["status"] == "succeeded" for j in ids), 30)
        jobs = [c.get(f"/api/jobs/{j}").json() for j in ids]
    assert [j["style"] for j in jobs] == ["indochine", "minimalist", "none"]
    assert {j["seed"] for j in jobs} == {variation["seed"]}
    assert {j["params"]["prompt"] for j in jobs} == {first["params"]["prompt"]}
    at.run()
    assert [m.value for m in at.markdown if m.value.startswith("**")][:3] == [
        "**Indochine**",
        "**Minimalist**",
        "**None**",
    ]
    assert len(at.get("download_button")) == 4  # three compared + the variation beside them
    at.button(key="close_compare").click().run()
    assert "compare" not in at.query_params and at.query_params["job"] == variation["id"]
    at.button(key=f"sk_{variation['images'][0]['id']}").click().run()
    assert at.session_state["w_mode"] == "Start from a sketch"
    assert at.session_state["upload"]["width"] == variation["images"][0]["width"]


def test_a_queued_render_follows_the_queue_until_it_is_cancelled(ui_stack: Stack) -> None:
    """No dispatcher runs: the page shows the queue position live until the job is cancelled.

    (The Cancel button itself is clicked in the browser tests: AppTest cannot click during a run.)
    """
    at = signed_in()
    with ui_stack.client() as c:
        job = c.post("/api/jobs", json={"prompt": "a hall"}).json()
    at.session_state["job_id"] = job["id"]
    timer = threading.Timer(1.5, lambda: ui_stack.client().post(f"/api/jobs/{job['id']}/cancel"))
    timer.start()
    try:
        at.run()
    finally:
        timer.join()
    assert not at.exception, at.exception
    assert "cancelled" in at.info[0].value
    assert f"cancel_{job['id']}" not in [b.key for b in at.button]  # no Cancel on a cancelled render


def test_gallery_lists_newest_first_filters_pages_and_renders_again(
    ui_stack: Stack, dispatcher: DispatcherThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALLERY_PAGE_SIZE", "2")
    from frontend.config import get_frontend_settings

    get_frontend_settings.cache_clear()
    with ui_stack.client() as c:
        ids = [
            c.post("/api/jobs", json={"prompt": f"room {i}", "style": s, "seed": i}).json()["id"]
            for i, s in enumerate(("indochine", "minimalist", "none"))
        ]
    ui_stack.drain()
    at = signed_in()
    at.switch_page("views/gallery.py").run()
    assert not at.exception, at.exception
    assert [t for t in texts(at).splitlines() if t.startswith("room ")] == ["room 2", "room 1"]
    at.button(key="g_older").click().run()
    assert [t for t in texts(at).splitlines() if t.startswith("room ")] == ["room 0"]
    assert "Page 2" in [c.value for c in at.caption]
    at.button(key="g_newer").click().run()
    at.selectbox(key="g_style").select("Minimalist").run()
    assert [t for t in texts(at).splitlines() if t.startswith("room ")] == ["room 1"]
    assert "Seed: 1" in texts(at)
    at.button(key=f"again_{ids[1]}").click().run()
    assert not at.exception, at.exception
    again = ui_stack.client().get(f"/api/jobs/{at.query_params['job']}").json()
    assert again["retry_of"] == ids[1] and again["seed"] == 1 and again["status"] == "succeeded"


def test_gallery_edit_settings_loads_the_exact_settings_into_the_studio(
    ui_stack: Stack, dispatcher: DispatcherThread
) -> None:
    with ui_stack.client() as c:
        upload = c.post("/api/uploads", files={"file": ("s.png", sketch_png(), "image/png")}).json()
        body = {
            "kind": "sketch",
            "upload_id": upload["id"],
            "prompt": "loft with brick walls",
            "style": "minimalist",
            "width": 512,
            "height": 768,
            "steps": 30,
            "cfg": 5.5,
            "seed": 99,
            "sketch_strength": 0.6,
        }
        job_id = c.post("/api/jobs", json=body).json()["id"]
    ui_stack.drain()
    at = signed_in()
    at.switch_page("views/gallery.py").run()
    at.button(key=f"edit_{job_id}").click().run()
    assert not at.exception, at.exception
    ss = at.session_state
    assert (ss["w_prompt"], ss["w_style"], ss["w_width"], ss["w_height"]) == (
        "loft with brick walls",
        "minimalist",
        512,
        768,
    )
    assert (ss["w_steps"], ss["w_cfg"], ss["w_seed"], ss["w_random_seed"]) == (30, 5.5, 99, False)
    assert ss["w_mode"] == "Start from a sketch" and ss["upload"]["id"] == upload["id"]
    assert ss["w_size"] == "Portrait 512 × 768"
    assert at.success[0].value.startswith("Settings loaded")


INJECTION = "**bold** <img src=x onerror=alert(1)> [click](javascript:alert(1)) <script>alert(2)</script>"


def test_prompts_and_messages_with_markup_are_shown_as_text(ui_stack: Stack) -> None:
    with ui_stack.client() as c:
        job = c.post("/api/jobs", json={"prompt": INJECTION, "style": "none"}).json()
        c.post(f"/api/jobs/{job['id']}/cancel")
    at = signed_in()
    at.switch_page("views/gallery.py").run()
    assert not at.exception, at.exception
    assert any(t.value == INJECTION for t in at.text)  # verbatim, as plain text
    rendered = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert not any("<script>" in v or "**bold**" in v or "](javascript:" in v for v in rendered), rendered
    at.switch_page("views/studio.py").run()
    at.session_state["job_id"] = job["id"]
    at.run()
    assert any(t.value == INJECTION for t in at.text)


@pytest.fixture
def lacking_stack(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Stack, EmulatorProcess]]:
    """One emulator for both kinds that lacks the Indochine LoRA, and a second for sketch that is down."""
    if REAL_COMFYUI:
        pytest.skip(NEEDS_EMULATOR)
    fill_models(tmp_path / "comfy", {"loras": ["minimalist_v1.safetensors"]})
    emu = start_emulator(tmp_path / "comfy")
    address = f"text=127.0.0.1:{emu.port},sketch=127.0.0.1:{free_port()}"
    with start_stack(
        sqlite_db(sqlite_template, tmp_path), tmp_path, address, comfy_models_ttl_s=0.2
    ) as stack:
        monkeypatch.setenv("BACKEND_URL", stack.url)
        from frontend.config import get_frontend_settings

        get_frontend_settings.cache_clear()
        yield stack, emu
    emu.kill()
    get_frontend_settings.cache_clear()


def test_a_style_no_server_can_render_is_shown_unavailable_with_the_reason(
    lacking_stack: tuple[Stack, EmulatorProcess],
) -> None:
    _, emu = lacking_stack
    at = signed_in()
    assert at.button(key="pick_style_indochine").disabled  # not selectable
    assert not at.button(key="pick_style_minimalist").disabled
    assert at.session_state["w_style"] == "minimalist"
    reasons = [c.value for c in at.caption if "unavailable" in c.value]
    assert len(reasons) == 1, [c.value for c in at.caption]
    assert "Indochine" in reasons[0] and "indochine\\_v1\\.safetensors" in reasons[0]
    assert f"127\\.0\\.0\\.1\\:{emu.port}" in reasons[0]


def test_a_queued_sketch_render_says_its_server_is_down(lacking_stack: tuple[Stack, EmulatorProcess]) -> None:
    stack, _ = lacking_stack
    sketch_port = stack.settings.comfy_instances[1].url.rsplit(":", 1)[1]
    with stack.client() as c:
        upload = c.post("/api/uploads", files={"file": ("plan.png", sketch_png(), "image/png")}).json()
        body = {"prompt": "a hall", "kind": "sketch", "style": "minimalist", "upload_id": upload["id"]}
        job = c.post("/api/jobs", json=body).json()
        wait_until(lambda: c.get(f"/api/jobs/{job['id']}").json()["notice"] is not None, 10)
    at = signed_in()
    at.session_state["compare_ids"] = [job["id"]]
    at.run()
    assert not at.exception, at.exception
    (bar,) = at.progress  # the bar's text is Markdown: the backend's sentence is escaped
    assert bar.text.startswith("Queued: position 1 in the queue · The sketch server")
    assert f"127\\.0\\.0\\.1\\:{sketch_port}" in bar.text and "when it is back" in bar.text


def test_a_resubmitted_render_keeps_its_bar_and_says_it_restarts_on_the_gpu() -> None:
    """The stream as the backend stores it after a ComfyUI restart mid-render: the bar holds until the
    new attempt passes it, and the label says what is happening meanwhile."""
    job = {"status": "queued", "started_at": None}
    shown = Shown()
    shown.apply(job, "claimed", {"status": "running"})
    shown.apply(job, "submitted", {"status": "running", "attempt": 1})
    shown.apply(job, "progress", {"value": 30, "max": 60})
    assert (shown.fraction, job["status"]) == (0.5, "running")
    assert shown.label(job).startswith("Rendering: step 30/60")
    shown.apply(job, "resubmitted", {"status": "running", "attempt": 2, "reason": "ComfyUI restarted"})
    assert shown.fraction == 0.5
    assert shown.label(job).startswith("Restarting on the GPU, attempt 2")
    shown.apply(job, "progress", {"value": 12, "max": 60})  # an older stream's step: never drawn back
    assert shown.fraction == 0.5 and shown.label(job).startswith("Restarting on the GPU")
    shown.apply(job, "progress", {"value": 31, "max": 60})
    assert shown.fraction == 31 / 60 and shown.label(job).startswith("Rendering: step 31/60")


def test_api_keys_page_makes_shows_once_rotates_and_revokes_a_key(ui_stack: Stack) -> None:
    import httpx

    at = signed_in()
    at.switch_page("views/keys.py").run()
    assert not at.exception, at.exception
    assert "No API keys yet." in at.info[0].value
    at.text_input(key="w_key_name").input("CMS <b>")
    at.multiselect(key="w_key_scopes").select("Render (also start, cancel and retry)")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception and not at.error, [e.value for e in at.error]
    key = at.code[0].value
    assert key.startswith("sk_studio_") and "not be shown again" in at.success[0].value
    with httpx.Client(base_url=ui_stack.url, headers={"x-api-key": key}) as integration:
        assert integration.get("/api/jobs").status_code == 200
        at.button(key="key_dismiss").click().run()
        assert not at.code  # shown once: gone once dismissed
        [row_caption] = [c.value for c in at.caption if "last used" in c.value]
        assert "renders/day" in row_caption
        key_id = next(b.key for b in at.button if b.key and b.key.startswith("key_rotate_"))[11:]
        at.button(key=f"key_rotate_{key_id}").click().run()
        rotated = at.code[0].value
        assert rotated != key and integration.get("/api/jobs").status_code == 401
        at.button(key=f"key_revoke_{key_id}").click().run()
        assert "revoked" in at.success[0].value
        assert "No API keys yet." in at.info[0].value
        with httpx.Client(base_url=ui_stack.url, headers={"x-api-key": rotated}) as after:
            assert after.get("/api/jobs").status_code == 401
