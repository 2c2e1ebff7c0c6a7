"""What a designer sees, in chromium at 1280×800 and 1400×1000: after Render the progress and the result
are inside the viewport whatever the form's state; a brief over the limit, an out-of-range width are
refused next to their fields and Render is off; a reload mid-render restores the form; the style card is
the control; the before/after slider; Streamlit's own Stop is never offered.

The screenshots in docs/screenshots/ come from here (REFRESH_DOCS=1 writes them).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    ROOT,
    Studio,
    choose_template,
    click_until,
    most_steps,
    screenshot,
    settle,
    sign_in,
    wait_for_run,
)
from tests.factories import sketch_png
from tests.support.backend import DEMO_TOKEN
from tests.support.net import wait_until
from tests.support.template_decls import declaration, make_lead, publish

pytestmark = [pytest.mark.e2e, pytest.mark.comfyui]
RENDER_TIMEOUT_MS = 60_000
VIEWPORTS = {"1280x800": (1280, 800), "1400x1000": (1400, 1000)}
DOCS = ROOT / "docs" / "screenshots"
TEMPLATE = "dx-room-draft"
TEMPLATE_TITLE = "Room draft (quick)"


@pytest.fixture(params=list(VIEWPORTS))
def sized(request: pytest.FixtureRequest, browser: Browser) -> Iterator[tuple[Page, str]]:
    width, height = VIEWPORTS[request.param]
    context = browser.new_context(viewport={"width": width, "height": height}, timezone_id="Asia/Ho_Chi_Minh")
    context.set_default_timeout(30_000)
    yield context.new_page(), request.param
    context.close()


@pytest.fixture(scope="module")
def with_template(studio: Studio) -> Studio:
    """alice a lead and one template published; from a thread (Playwright's loop runs in this one)."""

    def setup() -> None:
        make_lead(studio.stack, "alice")
        publish(studio.stack, declaration(name=TEMPLATE, title=TEMPLATE_TITLE), DEMO_TOKEN)

    worker = threading.Thread(target=setup)
    worker.start()
    worker.join(timeout=60)
    return studio


def docs_shot(page: Page, name: str) -> None:
    if os.environ.get("REFRESH_DOCS"):
        page.screenshot(path=str(DOCS / f"{name}.png"), animations="disabled")


def upload_sketch(page: Page, tmp_path: Path, size: tuple[int, int] = (1200, 900)) -> None:
    page.locator(".st-key-w_mode").get_by_text("Start from a sketch").click()
    wait_for_run(page)
    sketch = tmp_path / "living-room-plan.png"
    sketch.write_bytes(sketch_png(*size))
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(sketch))
    expect(page.get_by_text(re.compile("As the render sees it"))).to_be_visible()
    wait_for_run(page)


def open_advanced(page: Page) -> None:
    click_until(page, page.get_by_text("Advanced settings"), page.locator(".st-key-w_width input"))
    wait_for_run(page)


@pytest.mark.parametrize("form", ["text", "sketch", "advanced", "template"])
def test_progress_and_result_are_in_view_right_after_render(
    sized: tuple[Page, str], with_template: Studio, form: str, tmp_path: Path
) -> None:
    page, size = sized
    sign_in(page, with_template.url)
    if form == "text" and size == "1400x1000":
        expect(page.locator(".st-key-w_prompt textarea")).to_be_visible()
        expect(page.locator(".st-key-card_style_none")).to_be_visible()
        wait_for_run(page)
        docs_shot(page, "studio")
    if form == "sketch":
        upload_sketch(page, tmp_path)
    elif form == "advanced":
        open_advanced(page)
    elif form == "template":
        choose_template(page, TEMPLATE_TITLE)
    render = page.locator(".st-key-render_template button" if form == "template" else ".st-key-render button")
    render.scroll_into_view_if_needed()
    render.click()
    expect(page.get_by_test_id("stProgress")).to_be_in_viewport()
    if form == "text" and size == "1400x1000":
        docs_shot(page, "progress")
    result = page.locator(".st-key-render_panel [data-testid='stImage']").first
    expect(result).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    expect(result).to_be_in_viewport()
    wait_for_run(page)
    screenshot(page, f"30-in-view-{form}-{size}")
    if form == "text" and size == "1400x1000":
        docs_shot(page, "render-done")
        # The same prompt and seed in every style, side by side, drawn as each render ends.
        page.locator("[class*='st-key-cmp_'] button").first.click()
        expect(page.get_by_role("heading", name="Compare styles")).to_be_visible()
        done = page.get_by_role("button", name="Download").filter(visible=True)
        expect(done).to_have_count(3 + 1, timeout=RENDER_TIMEOUT_MS)  # three styles, and the render's own
        wait_for_run(page)
        page.get_by_role("heading", name="Compare styles").scroll_into_view_if_needed()
        docs_shot(page, "compare-styles")


def test_streamlit_stop_is_never_offered_and_progress_survives_a_rerun(
    sized: tuple[Page, str], studio: Studio
) -> None:
    page, _ = sized
    sign_in(page, studio.url)
    page.locator(".st-key-render button").click()
    bar = page.get_by_test_id("stProgress")
    expect(bar).to_contain_text(re.compile(r"step \d+/25"), timeout=20_000)
    expect(page.get_by_test_id("stStatusWidget")).not_to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    page.locator(".st-key-w_preset").click()  # a rerun while the render runs
    page.get_by_role("option", name="Kitchen").click()
    expect(bar).to_contain_text(re.compile(r"step \d+/25"))
    expect(page.locator("[class*='st-key-cancel_'] button")).to_be_visible()
    expect(page.get_by_test_id("stDownloadButton").first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    expect(page.locator("[class*='st-key-cancel_']")).to_have_count(0)


def test_a_pasted_brief_over_the_limit_is_kept_counted_and_refused(
    sized: tuple[Page, str], studio: Studio
) -> None:
    page, size = sized
    sign_in(page, studio.url)
    prompt = page.locator(".st-key-w_prompt textarea")
    long_brief = ("warm oak floor, linen sofa, rattan chairs, tall windows, brass lamps, " * 40)[:2500]
    prompt.fill(long_brief)
    prompt.press("Control+Enter")
    refusal = page.locator(".st-key-problem_w_prompt")
    expect(refusal).to_contain_text("This is 2,500 characters; the limit is 2,000. Shorten it by 500")
    expect(prompt).to_have_value(long_brief)  # the paste is kept, not dropped
    expect(page.get_by_text("2,500 / 2,000 characters")).to_be_visible()
    expect(page.locator(".st-key-render button")).to_be_disabled()
    wait_for_run(page)
    screenshot(page, f"31-brief-over-limit-{size}")
    if size == "1400x1000":
        docs_shot(page, "brief-over-limit")
    prompt.fill(long_brief[:1900])
    prompt.press("Control+Enter")
    expect(refusal).to_have_count(0)
    expect(page.locator(".st-key-render button")).to_be_enabled()


def test_an_out_of_range_width_blocks_render_with_the_reason_next_to_it(
    sized: tuple[Page, str], studio: Studio
) -> None:
    page, size = sized
    sign_in(page, studio.url)
    open_advanced(page)
    width = page.locator(".st-key-w_width input")
    width.fill("4096")
    width.press("Enter")
    refusal = page.locator(".st-key-problem_w_width")
    expect(refusal).to_contain_text("4096 px is outside what the studio renders: 256 to 1024 px.")
    render = page.locator(".st-key-render button")
    expect(render).to_be_disabled()
    wait_for_run(page)
    screenshot(page, f"32-width-refused-{size}")
    if size == "1400x1000":
        docs_shot(page, "width-refused")
    with studio.stack.client() as c:
        before = len(c.get("/api/jobs", params={"limit": 100}).json()["items"])
    render.click(force=True)  # a click on the disabled button starts nothing
    wait_for_run(page)
    with studio.stack.client() as c:
        assert len(c.get("/api/jobs", params={"limit": 100}).json()["items"]) == before
    width.fill("1024")
    width.press("Enter")
    expect(refusal).to_have_count(0)
    expect(render).to_be_enabled()


def test_a_reload_mid_render_restores_the_form_from_the_job(sized: tuple[Page, str], studio: Studio) -> None:
    page, _ = sized
    sign_in(page, studio.url)
    brief = "reading nook under the stairs, walnut shelves, wool rug"
    prompt = page.locator(".st-key-w_prompt textarea")
    prompt.fill(brief)
    prompt.press("Control+Enter")
    wait_for_run(page)
    # anywhere on the card picks the style (here its palette, not its button)
    page.locator(".st-key-card_style_minimalist").click(position={"x": 40, "y": 30})
    expect(page.get_by_role("button", name="Minimalist ✓")).to_be_visible()
    open_advanced(page)
    page.locator(".st-key-w_width input").fill("640")
    page.locator(".st-key-w_width input").press("Enter")
    page.wait_for_timeout(500)  # the rerun Enter sends may not have begun yet on a loaded machine
    wait_for_run(page)
    most_steps(page)  # still running after a reload on a loaded machine
    steps = page.locator(".st-key-w_steps").get_by_role("slider")
    page.locator(".st-key-render button").click()
    expect(page.get_by_test_id("stProgress")).to_contain_text(re.compile(r"step \d+/100"), timeout=20_000)
    page.reload()
    expect(page.get_by_test_id("stProgress")).to_be_visible()
    expect(page.locator(".st-key-w_prompt textarea")).to_have_value(brief)
    expect(page.get_by_role("button", name="Minimalist ✓")).to_be_visible()
    page.get_by_text("Advanced settings").click()  # mid-render: the script runs until the render ends
    expect(page.locator(".st-key-w_width input")).to_have_value("640")
    expect(steps).to_have_value("100")
    page.locator("[class*='st-key-cancel_'] button").click()  # the emulator is the next test's too
    expect(page.get_by_test_id("stProgress")).to_have_count(0)


def test_a_sketch_takes_its_own_shape_and_the_result_has_a_before_after_slider(
    sized: tuple[Page, str], studio: Studio, tmp_path: Path
) -> None:
    page, size = sized
    sign_in(page, studio.url)
    upload_sketch(page, tmp_path, (1200, 900))
    expect(page.get_by_text("Render size set to 728 × 544 px to match your sketch")).to_be_visible()
    if size == "1400x1000":
        docs_shot(page, "sketch-preview")
    page.locator(".st-key-render button").click()
    slider = page.locator(".st-key-before_after input[type=range]")
    expect(slider).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    settle(page)  # a rerun that began after the render ended redraws the slider: work on the new one
    after = page.locator(".st-key-before_after img.after")
    expect(after).to_have_attribute("alt", re.compile("The render, seed"))
    slider.focus()
    page.keyboard.press("Home")
    assert after.evaluate("e => e.style.clipPath") == "inset(0px 0px 0px 0%)"
    page.keyboard.press("End")
    assert after.evaluate("e => e.style.clipPath") == "inset(0px 0px 0px 100%)"
    slider.fill("30")
    assert after.evaluate("e => e.style.clipPath") == "inset(0px 0px 0px 30%)"
    page.locator(".st-key-before_after").scroll_into_view_if_needed()
    screenshot(page, f"33-before-after-{size}")
    if size == "1400x1000":
        docs_shot(page, "before-after")


DEMO_SET = (  # what a studio's gallery holds: rooms a designer would brief, in each style
    ("sunlit living room, low linen sofa, rattan armchairs, teak floor, tall windows", "indochine"),
    ("calm bedroom, oak bed with white linen, plaster walls, paper lamp", "minimalist"),
    ("open kitchen, stone island, walnut cabinets, brass pendants, morning light", "none"),
    ("hotel lobby, lacquered reception desk, cement tiles, palms, ceiling fans", "indochine"),
    ("home office, white oak desk facing the garden, wool rug, hidden storage", "minimalist"),
    ("café corner, cane chairs, marble bistro tables, green tiles", "indochine"),
)


def test_the_gallery_in_local_time_with_described_thumbnails(page: Page, studio: Studio) -> None:
    with studio.stack.client() as c:
        ids = [
            c.post("/api/jobs", json={"prompt": prompt, "style": style, "steps": 12}).json()["id"]
            for prompt, style in DEMO_SET
        ]
        done = lambda: all(c.get(f"/api/jobs/{j}").json()["status"] == "succeeded" for j in ids)  # noqa: E731
        wait_until(done, timeout_s=90)
    page.context.clear_cookies()
    sign_in(page, studio.url)
    page.get_by_role("link", name="Gallery").click()
    thumbnail = page.get_by_role("img", name=re.compile("^Render of café corner, cane chairs"))
    expect(thumbnail).to_be_visible()
    expect(page.get_by_text(" UTC")).to_have_count(0)
    wait_for_run(page)
    screenshot(page, "34-gallery")
    docs_shot(page, "gallery")
