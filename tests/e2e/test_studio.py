"""A designer's day in a real browser: sign in, text and sketch renders, draw, cancel, gallery, download."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import (
    ROOT,
    Studio,
    choose,
    enter_token,
    most_steps,
    screenshot,
    sign_in,
    wait_for_jobs,
    wait_for_run,
)
from tests.factories import sketch_png

pytestmark = [pytest.mark.e2e, pytest.mark.comfyui]
RENDER_TIMEOUT_MS = 60_000


def render_and_wait(page: Page) -> None:
    page.locator(".st-key-render button").click()
    expect(page.get_by_test_id("stDownloadButton").first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    wait_for_run(page)


def test_sign_in_refuses_a_wrong_token_then_opens_the_studio(page: Page, studio: Studio) -> None:
    page.goto(studio.url)
    enter_token(page, "not-my-token")
    expect(page.get_by_test_id("stAlertContentError")).to_contain_text("not valid")
    screenshot(page, "01-sign-in-refused")
    sign_in(page, studio.url)
    expect(page.get_by_text("Indochine").first).to_be_visible()
    expect(page.locator("[class*='st-key-card_style_']")).to_have_count(3)  # a card per style
    expect(page.get_by_text("placeholder", exact=False)).to_have_count(0)
    screenshot(page, "02-studio")


def test_text_render_in_indochine_with_live_progress_and_download(page: Page, studio: Studio) -> None:
    sign_in(page, studio.url)
    page.locator(".st-key-w_prompt textarea").fill("sunlit living room, rattan chairs, teak floor")
    page.locator(".st-key-card_style_indochine").click()
    page.locator(".st-key-render button").click()
    progress = page.get_by_test_id("stProgress")
    expect(progress).to_contain_text(re.compile(r"Queued|Rendering: step \d+/25|Starting"))
    expect(page.get_by_test_id("stProgress")).to_contain_text(re.compile(r"step \d+/25"), timeout=20_000)
    screenshot(page, "03-text-render-progress")
    expect(page.get_by_test_id("stDownloadButton").first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    wait_for_run(page)
    expect(page.get_by_test_id("stImageCaption").last).to_contain_text("indochine · seed")
    screenshot(page, "04-text-render-done")
    with page.expect_download() as info:
        page.get_by_test_id("stDownloadButton").first.click()
    download = info.value
    assert download.suggested_filename.startswith("studio-indochine-")
    data = open(download.path(), "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000

    page.reload()  # everything comes back from the backend
    expect(page.get_by_text("Signed in as")).to_be_visible()
    expect(page.get_by_test_id("stDownloadButton").first).to_be_visible()


def test_sketch_upload_preview_and_render(page: Page, studio: Studio, tmp_path) -> None:
    sign_in(page, studio.url)
    page.locator(".st-key-w_mode").get_by_text("Start from a sketch").click()
    wait_for_run(page)
    sketch = tmp_path / "living-room-plan.png"
    sketch.write_bytes(sketch_png(900, 600))
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(sketch))
    expect(page.get_by_text(re.compile("As the render sees it .* inverted"))).to_be_visible()
    wait_for_run(page)
    screenshot(page, "05-sketch-preview")
    page.locator(".st-key-w_prompt textarea").fill("minimal loft living room from my sketch")
    page.locator(".st-key-card_style_minimalist").click()
    render_and_wait(page)
    expect(page.get_by_text("Minimalist · sketch render")).to_be_visible()
    screenshot(page, "06-sketch-render-done")


def test_draw_a_sketch_on_the_canvas(page: Page, studio: Studio) -> None:
    sign_in(page, studio.url)
    page.locator(".st-key-w_mode").get_by_text("Start from a sketch").click()
    wait_for_run(page)  # a click while the page reruns can be lost on a loaded machine
    page.locator(".st-key-w_src").get_by_text("Draw it here").click()
    wait_for_run(page)
    canvas = page.locator(".st-key-sketch_canvas canvas").last
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box is not None
    assert (box["width"], box["height"]) == (480, 320)
    page.mouse.move(box["x"] + 60, box["y"] + 280)
    page.mouse.down()  # a room's back wall and floor lines, inside the canvas
    for x, y in ((420, 280), (420, 60), (60, 60), (60, 280), (20, 310)):
        page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
    page.mouse.up()
    page.locator(".st-key-use_drawing button").click()  # at once: the request waits for the strokes
    expect(page.get_by_text(re.compile("As the render sees it"))).to_be_visible()
    wait_for_run(page)
    screenshot(page, "07-drawn-sketch")
    if os.environ.get("REFRESH_DOCS"):
        page.screenshot(path=str(ROOT / "docs" / "screenshots" / "drawn-sketch.png"), animations="disabled")


def test_cancel_a_render_midway(page: Page, studio: Studio) -> None:
    sign_in(page, studio.url)
    page.locator(".st-key-w_prompt textarea").fill("grand hotel lobby, marble, chandeliers")
    most_steps(page)  # still running when the click lands, however loaded the machine
    page.locator(".st-key-render button").click()
    expect(page.get_by_test_id("stProgress")).to_contain_text(re.compile(r"step \d+/"), timeout=20_000)
    page.locator("[class*='st-key-cancel_'] button").click()
    expect(page.get_by_text("This render was cancelled.")).to_be_visible(timeout=20_000)
    screenshot(page, "08-cancelled")
    job_id = page.url.split("job=")[1].split("&")[0]
    job = studio.stack.client().get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["images"] == []


def test_gallery_shows_every_render_and_renders_one_again(page: Page, studio: Studio) -> None:
    injection = "**not bold** <script>window.pwned = 1</script> <b>nor this</b>"
    with studio.stack.client() as c:
        c.post("/api/jobs", json={"prompt": "scandinavian bedroom, oak bed", "style": "minimalist"})
        c.post("/api/jobs", json={"prompt": injection, "style": "none"})
    wait_for_jobs(studio.stack)
    sign_in(page, studio.url)
    page.get_by_role("link", name="Gallery").click()
    expect(page.get_by_text("scandinavian bedroom, oak bed", exact=True)).to_be_visible()
    expect(page.locator(".st-key-g_days").get_by_text("Created between")).to_be_visible()
    expect(page.get_by_role("combobox", name="Made from")).to_have_value("Anything")
    wait_for_run(page)
    screenshot(page, "09-gallery")
    expect(page.get_by_text(injection, exact=True)).to_be_visible()  # shown as typed, not as markup
    expect(page.locator("strong", has_text="not bold")).to_have_count(0)
    expect(page.locator("b", has_text="nor this")).to_have_count(0)
    assert page.evaluate("window.pwned") is None
    choose(page, "g_kind", "Photo redesign")  # made from a photo: none of these
    expect(page.get_by_text("No renders here yet.")).to_be_visible()
    choose(page, "g_kind", "Text")
    choose(page, "g_style", "Minimalist")
    expect(page.get_by_text(injection, exact=True)).to_have_count(0)  # the list is the filtered one now
    expect(page.get_by_text("grand hotel lobby")).to_have_count(0)
    page.get_by_role("button", name="Render again").first.click()
    expect(page.get_by_test_id("stDownloadButton").first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    expect(page.get_by_text("Minimalist · text render")).to_be_visible()
    screenshot(page, "10-rendered-again")
