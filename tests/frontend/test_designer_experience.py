"""The designer's side of the studio through AppTest, against the real backend on loopback: refusals
before Render, the form restored on reload, local times, limits shown before an upload, a designer's
words for the API's, and a render waiting on the GPU said as such."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from streamlit.testing.v1 import AppTest

from frontend import wording
from frontend.api_client import ApiClient, ApiError
from frontend.components import Shown
from frontend.config import get_frontend_settings
from tests.frontend.conftest import APP, TIMEOUT_S, signed_in
from tests.support.backend import DEMO_TOKEN, DispatcherThread, Stack


def test_a_brief_over_the_limit_and_an_out_of_range_width_turn_render_off_with_their_reasons(
    ui_stack: Stack,
) -> None:
    at = signed_in()
    at.text_area(key="w_prompt").input("x" * 2500).run()
    assert at.text_area(key="w_prompt").value == "x" * 2500  # taken in, not dropped
    assert "2,500 / 2,000 characters" in " ".join(c.value for c in at.caption)
    assert "the limit is 2,000\\. Shorten it by 500" in at.error[0].value
    assert at.button(key="render").disabled
    at.text_area(key="w_prompt").input("a bright loft").run()
    at.number_input(key="w_width").set_value(4096).run()
    assert [e.value for e in at.error] == ["4096 px is outside what the studio renders\\: 256 to 1024 px\\."]
    assert at.button(key="render").disabled
    at.number_input(key="w_width").set_value(700).run()
    assert "multiple of 8 px \\(the nearest is 704\\)" in at.error[0].value
    at.number_input(key="w_width").set_value(704).run()
    assert not at.error and not at.button(key="render").disabled


def test_a_reload_restores_the_form_from_the_jobs_settings(ui_stack: Stack) -> None:
    at = signed_in()
    with ui_stack.client() as c:  # no dispatcher: the job stays queued, as a reload mid-render finds it
        body = {"prompt": "loft kitchen, concrete island, brass pendants", "style": "minimalist"}
        job = c.post("/api/jobs", json={**body, "width": 640, "steps": 12, "seed": 77}).json()
        c.post(f"/api/jobs/{job['id']}/cancel")
    reloaded = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    reloaded.query_params["sid"] = at.query_params["sid"]
    reloaded.query_params["job"] = job["id"]
    reloaded.run()
    assert not reloaded.exception, reloaded.exception
    assert reloaded.text_area(key="w_prompt").value == "loft kitchen, concrete island, brass pendants"
    assert reloaded.session_state["w_style"] == "minimalist"
    assert reloaded.number_input(key="w_width").value == 640
    assert reloaded.slider(key="w_steps").value == 12
    assert reloaded.number_input(key="w_seed").value == 77
    assert not reloaded.checkbox(key="w_random_seed").value


def test_the_gallery_says_times_in_the_designers_zone(ui_stack: Stack, dispatcher: DispatcherThread) -> None:
    with ui_stack.client() as c:
        job = c.post("/api/jobs", json={"prompt": "sunroom with wicker chairs", "style": "none"}).json()
    ui_stack.drain()
    at = signed_in()
    at.context["timezone"] = "Asia/Ho_Chi_Minh"
    at.switch_page("views/gallery.py").run()
    assert not at.exception, at.exception
    local = datetime.fromisoformat(job["created_at"]).astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    captions = " ".join(c.value for c in at.caption)
    assert local.strftime("%Y-%m-%d %H:%M") in captions and "UTC" not in captions


def test_upload_limits_and_formats_are_said_before_the_upload(ui_stack: Stack) -> None:
    at = signed_in()
    at.radio(key="w_mode").set_value("Start from a sketch").run()
    uploader = at.file_uploader(key="w_sketch_file")
    assert "PNG, JPEG or WebP, up to 15 MB and 36 megapixels" in uploader.label
    at.file_uploader(key="w_sketch_file").upload("plan.png", b"%PDF-1.4 not a png", "image/png").run()
    assert at.error[0].value.startswith("This file is not an image the studio can read")


def test_the_apis_words_become_a_designers(ui_stack: Stack) -> None:
    api = ApiClient(get_frontend_settings(), DEMO_TOKEN)
    try:
        api.submit_job({"prompt": "", "width": 4096}, "k-1")
    except ApiError as err:
        assert {d.field for d in err.details} == {"prompt", "width"}  # the API keeps its field paths
        said = wording.say(err)
    finally:
        api.close()
    assert "Describe the room is empty: write a few words" in said
    assert "Width must be 1024 or less" in said and "String should" not in said
    said, exact = wording.failure({"error": {"code": "comfy_rejected", "message": "11: JSON decode error"}})
    assert said.startswith("The GPU server could not finish this render") and "JSON" not in said
    assert exact == "comfy_rejected: 11: JSON decode error"


def test_a_render_sent_to_the_gpu_but_waiting_there_is_next_on_the_gpu() -> None:
    job = {"status": "queued", "started_at": None}
    shown = Shown(position=1)
    assert shown.label(job) == "Queued: position 1 in the queue"
    shown.apply(job, "claimed", {"status": "running"})
    shown.apply(job, "submitted", {"status": "running", "attempt": 1})
    assert shown.label(job).startswith("Next on the GPU: position 1")  # not 'rendering 0/0'
    shown.apply(job, "started", {"status": "running"})
    assert shown.label(job).startswith("Starting")
    shown.apply(job, "progress", {"value": 3, "max": 25})
    assert shown.label(job).startswith("Rendering: step 3/25")
