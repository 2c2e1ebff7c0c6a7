"""Place a product through AppTest, against a real backend and the emulator on loopback: the three slots'
previews, the strengths sent as the product template's inputs, progress to the end, the before/after, the
strip of passes with the upscaled render, the 2048x2048 download, render again with the same seed.

AppTest cannot drive a file uploader, so the uploads are made through the API (as the slot does) and put
where the slot keeps them; everything after that is the page's own."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from frontend.components import escape
from frontend.views.product import shown
from tests.frontend.conftest import signed_in
from tests.support.backend import DispatcherThread, Stack
from tests.support.net import wait_until
from tests.support.product import composition_png, png, product_inputs, product_png, style_photo_png, uploaded

PRODUCT_TIMEOUT_S = 300  # an upper bound for one script run that follows renders to the end


def product_page() -> AppTest:
    at = signed_in(timeout_s=PRODUCT_TIMEOUT_S)
    at.switch_page("views/product.py").run()
    assert not at.exception, at.exception
    return at


@pytest.mark.timeout(600)  # five 2048x2048 renders: 7 s alone, minutes beside a loaded CI's other workers
def test_a_product_is_placed_compared_and_rendered_again(
    ui_stack: Stack, dispatcher: DispatcherThread
) -> None:
    with ui_stack.client() as c:
        uploads = {
            "product": uploaded(c, product_png(), "product"),
            "composition": uploaded(c, composition_png(), "composition"),
            "style_photo": uploaded(c, style_photo_png(), "style_photo"),
        }
    at = product_page()
    assert "upload a product photo" in at.info[0].value
    at.button(key="pp_render").click().run()
    assert [e.value for e in at.error] == [escape("Upload a product photo first.")]

    at.session_state["product_uploads"] = uploads
    at.run()
    captions = [cap for img in at.image for cap in img.captions]
    assert any(c.startswith("Cut out (transparent shows as squares)") for c in captions)
    assert any(c.startswith("The edges, as the ControlNet sees them") for c in captions)
    assert any(c.startswith("The style photo, as the IPAdapter gets it") for c in captions)
    at.slider(key="w_pp_depth").set_value(1.2)
    at.slider(key="w_pp_composition").set_value(0.4)
    at.slider(key="w_pp_style_strength").set_value(0.5)
    at.checkbox(key="w_pp_random_seed").uncheck().run()
    at.number_input(key="w_pp_seed").set_value(99)
    at.button(key="pp_render").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]

    job_id = at.session_state["product_job_id"]
    with ui_stack.client() as c:
        job = c.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["kind"] == "product" and job["seed"] == 99
    assert {k: job["params"][k] for k in ("depth_strength", "composition_strength", "style_strength")} == {
        "depth_strength": 1.2, "composition_strength": 0.4, "style_strength": 0.5}  # fmt: skip
    assert job["params"]["product"] == uploads["product"]["id"]
    captions = [cap for img in at.image for cap in img.captions]
    for label in (
        "Draft",
        "Refine 1",
        "Refine 2",
        "Upscaled 2048×2048",
    ):
        assert label in captions, captions
    assert "Download 2048×2048 PNG" in [d.label for d in at.get("download_button")]  # type: ignore[union-attr]
    assert "**Product photo ◀ ▶ Staged room**" in [m.value for m in at.markdown]
    slider = [h.proto.body for h in at.get("html") if "before-after" in h.proto.body]
    assert len(slider) == 1 and 'alt="The product photo, cut out"' in slider[0]
    assert 'alt="The staged room"' in slider[0]

    at.button(key=f"pp_again_{job_id}").click().run()
    assert not at.exception, at.exception
    again = at.session_state["product_job_id"]
    assert again != job_id
    with ui_stack.client() as c:
        second = c.get(f"/api/jobs/{again}").json()
    assert second["status"] == "succeeded" and second["seed"] == 99 and second["params"] == job["params"]

    at.button(key=f"pp_cmp_{again}").click().run()
    assert not at.exception, at.exception
    compared = at.session_state["product_compare_ids"]
    with ui_stack.client() as c:
        styles = [s["id"] for s in c.get("/api/styles").json()]
        wait_until(
            lambda: all(c.get(f"/api/jobs/{j}").json()["status"] == "succeeded" for j in compared), 120
        )
        rows = [c.get(f"/api/jobs/{j}").json() for j in compared]
    assert sorted(r["style"] for r in rows) == sorted(styles)
    assert {r["seed"] for r in rows} == {99} and {r["kind"] for r in rows} == {"product"}
    assert all(r["params"]["product"] == uploads["product"]["id"] for r in rows)
    at.run()
    assert not at.exception, at.exception
    assert "Compare styles" in [h.value for h in at.subheader]


def test_edit_settings_in_the_gallery_reopens_the_product_form(
    ui_stack: Stack, dispatcher: DispatcherThread
) -> None:
    with ui_stack.client() as c:
        inputs = product_inputs(c, composition=False)
        r = c.post("/api/jobs", json={"template": "product", "inputs": {**inputs, "depth_strength": 1.3}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        wait_until(lambda: c.get(f"/api/jobs/{job_id}").json()["status"] == "succeeded", 120)
    at = product_page()
    at.switch_page("views/gallery.py").run()
    assert not at.exception, at.exception
    settings = "\n".join(t.value for t in at.text)
    assert "Template: product" in settings and "depth_strength: 1.3" in settings
    at.button(key=f"edit_{job_id}").click().run()
    assert not at.exception, at.exception
    assert set(at.session_state["product_uploads"]) == {"product", "style_photo"}
    assert at.session_state["w_pp_depth"] == 1.3 and at.session_state["w_pp_seed"] == 1234
    assert at.session_state["product_job_id"] == job_id
    assert at.slider(key="w_pp_depth").value == 1.3  # the Place a product page, its form filled


def test_the_staged_room_is_shown_scaled_down_and_downloaded_whole() -> None:
    full = png(Image.new("RGB", (2048, 2048), (0, 0, 255)))
    small = Image.open(io.BytesIO(shown(full)))
    assert small.size == (1024, 1024) and small.getpixel((500, 500)) == (0, 0, 255)
