"""The render forming in a real browser: live previews under the progress bar, replaced as it samples."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Studio, most_steps, screenshot, sign_in, wait_for_run
from tests.support.comfy import REAL_COMFYUI

pytestmark = [pytest.mark.e2e, pytest.mark.comfyui]
ALT = re.compile(r"^Preview of the render in progress, step (\d+) of 100$")


@pytest.mark.skipif(bool(REAL_COMFYUI), reason="a real ComfyUI sends previews only with --preview-method")
def test_the_preview_image_changes_during_a_run(page: Page, studio: Studio) -> None:
    sign_in(page, studio.url)
    page.locator(".st-key-w_prompt textarea").fill("quiet bedroom, linen, morning light")
    most_steps(page)  # on a loaded machine 25 steps can end before a second preview is drawn
    page.locator(".st-key-render button").click()
    preview = page.get_by_role("img", name=ALT)
    expect(preview).to_be_visible(timeout=20_000)
    first_alt, first_src = preview.get_attribute("alt") or "", preview.get_attribute("src") or ""
    first_step = int(ALT.match(first_alt).group(1))  # type: ignore[union-attr]
    screenshot(page, "05-render-forming")
    expect(preview).not_to_have_attribute("src", first_src, timeout=20_000)  # a new picture
    later_step = int(ALT.match(preview.get_attribute("alt") or "").group(1))  # type: ignore[union-attr]
    assert later_step > first_step
    expect(page.get_by_test_id("stDownloadButton").first).to_be_visible(timeout=120_000)
    wait_for_run(page)
    expect(page.get_by_role("img", name=ALT)).to_have_count(0)  # the result replaces the forming image
