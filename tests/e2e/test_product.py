"""Place a product in a real browser: three uploads with their previews, Render, progress through the
passes, the before/after, the strip of passes, the 2048x2048 download."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Studio, click_until, screenshot, sign_in, wait_for_run
from tests.support.product import composition_png, product_png, style_photo_png

pytestmark = [pytest.mark.e2e, pytest.mark.comfyui]
RENDER_TIMEOUT_MS = 120_000


def put(page: Page, role: str, path: Path) -> None:
    page.locator(f".st-key-w_pp_file_{role}").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        str(path)
    )
    wait_for_run(page)


def test_a_product_is_placed_in_a_room_and_downloaded_at_2048(
    page: Page, studio: Studio, tmp_path: Path
) -> None:
    sign_in(page, studio.url)
    page.get_by_role("link", name="Place a product").click()
    expect(page.get_by_role("heading", name="Place a product")).to_be_visible()
    wait_for_run(page)
    files = {"product": product_png(), "composition": composition_png(), "style_photo": style_photo_png()}
    for role, data in files.items():
        path = tmp_path / f"{role}.png"
        path.write_bytes(data)
        put(page, role, path)
    expect(
        page.get_by_text(re.compile(r"Cut out \(transparent shows as squares\) · 512×512"))
    ).to_be_visible()
    expect(page.get_by_text(re.compile(r"The edges, as the ControlNet sees them"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"The style photo, as the IPAdapter gets it"))).to_be_visible()
    screenshot(page, "20-product-uploads")

    page.locator(".st-key-w_pp_prompt textarea").fill("a calm reading corner, oak floor, linen curtains")
    download = page.get_by_test_id("stDownloadButton").filter(has_text="Download 2048×2048 PNG")
    started = page.get_by_test_id("stProgress").or_(download)  # a fast render may be done already
    click_until(page, page.locator(".st-key-pp_render button"), started.first, timeout_ms=30_000)
    screenshot(page, "21-product-progress")
    expect(download).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    wait_for_run(page)
    for caption in (
        "Draft",
        "Refine 1",
        "Refine 2",
        "Upscaled 2048×2048",
    ):
        expect(page.get_by_test_id("stImageCaption").filter(has_text=caption).first).to_be_visible()
    slider = page.locator("figure.before-after")
    expect(slider.get_by_role("img", name="The staged room")).to_be_visible()
    expect(slider.get_by_role("img", name="The product photo, cut out")).to_be_visible()
    slider.get_by_role("slider").fill("20")  # more of the staged room shows
    expect(slider.locator("img.after")).to_have_attribute(
        "style", re.compile(r"inset\(0(px)? 0(px)? 0(px)? 20%\)")
    )
    screenshot(page, "22-product-done")
    with page.expect_download() as info:
        download.click()
    saved = Image.open(io.BytesIO(Path(info.value.path()).read_bytes()))
    assert saved.format == "PNG" and saved.size == (2048, 2048)
