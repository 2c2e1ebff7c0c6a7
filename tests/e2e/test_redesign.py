"""Redesign a photo in a real browser, each of the three renders: upload a room photo, paint the mask on the
photo itself (restyle: the window to keep; stage: the floor to furnish; edit: the region to change), Render,
and the result beside the photo with its before/after slider. What the mask protects is pixel-identical to
the photo (checked through the API). `REFRESH_DOCS=1` writes the README's screenshots."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ARTIFACTS, ROOT, Studio, choose, screenshot, sign_in, wait_for_run
from tests.support.net import wait_until
from tests.support.redesign import outputs, room_photo

pytestmark = [pytest.mark.e2e, pytest.mark.comfyui]


DOCS = ROOT / "docs" / "screenshots"
W, H = 900, 600
# Per render: the mode's label, the tool, the points painted (on the canvas, which shows the photo 720x480),
# the prompt, and where the README's slider stands (percent of the photo shown as before).
CASES = {
    "restyle": ("Restyle", "rect", [(100, 70), (320, 310)], "japandi living room, oak and linen", 12),
    "stage": ("Stage an empty room", "rect", [(15, 345), (705, 472)], "a low linen sofa, a rattan chair", 35),
    "edit": ("Edit or clear a region", "freedraw",
             [(300, 250), (450, 250), (450, 320), (300, 320), (300, 280), (450, 280)], "a wool rug", 40),
}  # fmt: skip


def _paint(page: Page, strokes: list[tuple[int, int]]) -> None:
    canvas = page.locator("[class*='st-key-rd_canvas'] canvas").last
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box is not None
    first, *rest = strokes
    page.mouse.move(box["x"] + first[0], box["y"] + first[1])
    page.mouse.down()
    for x, y in rest:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=10)
    page.mouse.up()
    wait_for_run(page)


@pytest.mark.parametrize("template", list(CASES))
def test_paint_the_mask_on_the_photo_and_render(page: Page, studio: Studio, tmp_path, template: str) -> None:
    label, tool, strokes, prompt, shown_before = CASES[template]
    sign_in(page, studio.url)
    page.get_by_role("link", name="Redesign a photo").click()
    wait_for_run(page)
    photo = tmp_path / "living-room.png"
    photo.write_bytes(room_photo(W, H))
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(photo))
    wait_for_run(page)
    page.locator(".st-key-rd_mode").get_by_text(label).click()
    wait_for_run(page)
    if tool != "freedraw":
        choose(page, "rd_tool", tool)
    painted = page.get_by_text(re.compile(r"Mask: \d+% of the photo is painted"))
    for _attempt in range(3):  # strokes made while the canvas is still being drawn again are lost
        _paint(page, strokes)
        try:
            expect(painted).to_be_visible(timeout=10_000)
            break
        except AssertionError:
            continue
    expect(painted).to_be_visible()
    page.locator(".st-key-rd_prompt textarea").fill(prompt)
    wait_for_run(page)
    screenshot(page, f"20-redesign-{template}-painted")
    with studio.stack.client() as c:

        def jobs() -> list[dict]:
            items: list[dict] = c.get("/api/jobs", params={"limit": 5}).json()["items"]
            return [j for j in items if j["kind"] == template and j["params"].get("prompt") == prompt]

        for _ in range(3):  # a click while the page reruns (the canvas sending its strokes) can be lost
            page.locator(".st-key-rd_render button").click()
            wait_for_run(page)
            try:
                wait_until(lambda: len(jobs()) > 0, 10, 0.3, what=f"the {template} job")
                break
            except TimeoutError:
                continue
        assert len(jobs()) == 1
        job_id = jobs()[0]["id"]
        wait_until(
            lambda: c.get(f"/api/jobs/{job_id}").json()["status"] == "succeeded", 120, 0.5, what=template
        )
    expect(page.get_by_text("Drag the slider")).to_be_visible()  # the page followed the render live
    wait_for_run(page)
    slider = page.locator("figure.before-after").last
    slider.scroll_into_view_if_needed()
    slider.locator("input[type=range]").fill(str(shown_before))  # the render's side, mostly
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    slider.screenshot(path=str(ARTIFACTS / f"22-redesign-{template}-before-after.png"))
    canvas = page.locator("[class*='st-key-rd_canvas']")
    canvas.screenshot(path=str(ARTIFACTS / f"23-redesign-{template}-mask-painted.png"))
    screenshot(page, f"21-redesign-{template}-before-after")
    if os.environ.get("REFRESH_DOCS"):
        slider.screenshot(path=str(DOCS / f"redesign-{template}-before-after.png"), animations="disabled")
        canvas.screenshot(path=str(DOCS / f"redesign-{template}-mask-painted.png"), animations="disabled")
    with studio.stack.client() as c:
        job = c.get(f"/api/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job
        key = {"restyle": "keep_mask", "stage": "floor_mask", "edit": "mask"}[template]
        mask = c.get(f"/api/uploads/{job['params'][key]}").json()
        assert mask["role"] == "mask" and (mask["width"], mask["height"]) == (W, H)
        assert 0.01 < mask["coverage"] < 0.5
        render, at_size, region = outputs(c, job)
        protected = region == 255 if template == "restyle" else region == 0  # the kept window; the rest
        assert 0.01 < protected.mean() < 0.99
        assert np.array_equal(render[protected], at_size[protected])
        assert not np.array_equal(render[~protected], at_size[~protected])
