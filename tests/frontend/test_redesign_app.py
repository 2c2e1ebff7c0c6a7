"""Redesign a photo through Streamlit's AppTest, against a real backend and the emulator on loopback:
Edit a region from the gallery opens the render as the photo; restyle renders it and shows the before/after;
a mask painted on the canvas (its image data) becomes a mask upload of the photo's size."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
from PIL import Image

from frontend.redesign_mask import mask_png
from tests.frontend.conftest import signed_in
from tests.support.api import wait_status
from tests.support.backend import DispatcherThread, Stack
from tests.support.redesign import room_photo, upload


def restyled(c: httpx.Client, inputs: dict[str, Any]) -> str:
    """A two-step restyle of `inputs` through the API, rendered: its job id."""
    r = c.post("/api/jobs", json={"template": "restyle", "inputs": {**inputs, "steps": 2}})
    assert r.status_code == 201, r.text
    job_id: str = r.json()["id"]
    wait_status(c, job_id, {"succeeded"}, 60)
    return job_id


def test_edit_a_region_from_the_gallery_opens_the_render_and_restyles_it(
    ui_stack: Stack,
    dispatcher: DispatcherThread,
) -> None:
    with ui_stack.client() as c:
        photo = upload(c, room_photo(640, 480), "photo")
        job_id = restyled(c, {"photo": photo["id"], "prompt": "loft"})
    at = signed_in()
    at.switch_page("views/gallery.py").run()
    at.button(key=f"region_{job_id}").click().run()
    assert not at.exception, at.exception
    opened = at.session_state["rd_photo"]
    assert opened["role"] == "photo" and (opened["width"], opened["height"]) == (683, 512)
    assert at.title[0].value == "Redesign a photo"
    at.switch_page("views/redesign.py").run()  # AppTest stays on the page it was told; the app switched
    assert at.session_state["rd_mode"] == "Restyle" and at.session_state["rd_photo"]["id"] == opened["id"]
    at.text_area(key="rd_prompt").input("warm japandi").run()
    at.button(key="rd_render").click().run()
    assert not at.exception, at.exception
    new_job = at.session_state["rd_job"]
    with ui_stack.client() as c:
        done = wait_status(c, new_job, {"succeeded"}, 60)
    assert done["template"]["name"] == "restyle" and done["params"]["prompt"] == "warm japandi"
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert any("Drag the slider" in c.value for c in at.caption)


def test_edit_settings_of_a_photo_render_opens_its_photo_and_settings_in_redesign(
    ui_stack: Stack,
    dispatcher: DispatcherThread,
) -> None:
    with ui_stack.client() as c:
        photo = upload(c, room_photo(640, 480), "photo")
        inputs = {"photo": photo["id"], "prompt": "indochine salon", "style": "indochine", "creativity": 0.35}
        job_id = restyled(c, inputs)
    at = signed_in()
    at.switch_page("views/gallery.py").run()
    at.selectbox(key="g_kind").select("Photo redesign").run()  # the gallery's filter finds it
    assert not at.exception, at.exception
    assert at.button(key=f"edit_{job_id}")
    at.selectbox(key="g_kind").select("Product in a room").run()
    assert not [b for b in at.button if b.key == f"edit_{job_id}"]
    at.selectbox(key="g_kind").select("Photo redesign").run()
    at.button(key=f"edit_{job_id}").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Redesign a photo"
    assert any("paint the mask again" in i.value for i in at.info)
    at.switch_page("views/redesign.py").run()  # AppTest stays on the page it was told; the app switched
    assert not at.exception, at.exception
    assert at.session_state["rd_photo"]["id"] == photo["id"]  # the very photo, not the render
    assert at.radio(key="rd_mode").value == "Restyle"
    assert at.text_area(key="rd_prompt").value == "indochine salon"
    assert at.selectbox(key="rd_style").value == "indochine"
    assert at.slider(key="rd_creativity").value == 0.35


def test_the_painted_canvas_becomes_a_mask_of_the_photos_size() -> None:
    strokes = np.zeros((300, 400, 4), np.uint8)  # the canvas layer: transparent but for the strokes
    strokes[100:200, 50:150] = (255, 0, 255, 255)
    png = mask_png(strokes, 800, 600)
    assert png is not None
    mask = np.asarray(Image.open(io.BytesIO(png)))
    assert mask.shape == (600, 800) and mask[300, 200] == 255 and mask[50, 50] == 0
    baked = np.full((300, 400, 4), (120, 110, 100, 255), np.uint8)  # a build that bakes the photo in
    baked[10:20, 10:20] = (255, 0, 255, 255)
    baked_png = mask_png(baked, 400, 300)
    assert baked_png is not None
    assert np.asarray(Image.open(io.BytesIO(baked_png)))[15, 15] == 255
    assert mask_png(np.zeros((30, 40, 4), np.uint8), 40, 30) is None  # nothing painted
