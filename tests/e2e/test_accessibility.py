"""axe-core (WCAG 2 A and AA) on every screen, in chromium: no critical or serious finding.

Screens: sign-in, the studio's text, sketch and template forms, a finished render, the gallery, API keys,
models and templates. axe-playwright-python bundles axe-core (nothing is fetched at run time).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Studio, choose_template, screenshot, settle, sign_in, wait_for_run
from tests.e2e.test_designer_experience import TEMPLATE, TEMPLATE_TITLE, upload_sketch
from tests.support.backend import DEMO_TOKEN
from tests.support.template_decls import declaration, make_lead, publish

pytestmark = [pytest.mark.e2e, pytest.mark.comfyui]
RENDER_TIMEOUT_MS = 60_000
BLOCKING = ("critical", "serious")
OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


@pytest.fixture(scope="module")
def lead_studio(studio: Studio) -> Studio:
    def setup() -> None:
        make_lead(studio.stack, "alice")
        with studio.stack.client() as c:
            if c.get(f"/api/templates/{TEMPLATE}").status_code == 404:
                publish(studio.stack, declaration(name=TEMPLATE, title=TEMPLATE_TITLE), DEMO_TOKEN)

    worker = threading.Thread(target=setup)
    worker.start()
    worker.join(timeout=60)
    return studio


def findings(page: Page) -> list[dict[str, Any]]:
    settle(page)
    page.wait_for_timeout(300)  # images and html blocks settle
    settle(page)
    results = Axe().run(page, options=OPTIONS)
    return [v for v in results.response["violations"] if v.get("impact") in BLOCKING]


def assert_clean(page: Page, screen: str) -> None:
    found = findings(page)
    screenshot(page, f"40-axe-{screen}")
    report = [
        f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes'][:4]]}" for v in found
    ]
    assert not found, f"{screen}: " + "\n".join(report)


def test_sign_in_page(page: Page, studio: Studio) -> None:
    page.goto(studio.url)
    expect(page.get_by_label("Email")).to_be_visible()  # the password form (the token is folded away)
    assert_clean(page, "sign-in")


def test_studio_text_form_and_a_finished_render(page: Page, lead_studio: Studio) -> None:
    sign_in(page, lead_studio.url)
    assert_clean(page, "studio-text")
    page.locator(".st-key-render button").click()
    expect(page.get_by_test_id("stDownloadButton").first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    assert_clean(page, "result")


def test_studio_sketch_form_and_its_render(page: Page, lead_studio: Studio, tmp_path: Path) -> None:
    sign_in(page, lead_studio.url)
    upload_sketch(page, tmp_path)
    assert_clean(page, "studio-sketch")
    page.locator(".st-key-render button").click()
    expect(page.locator(".st-key-before_after input[type=range]")).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    assert_clean(page, "result-before-after")


def test_studio_template_form(page: Page, lead_studio: Studio) -> None:
    sign_in(page, lead_studio.url)
    choose_template(page, TEMPLATE_TITLE)
    assert_clean(page, "studio-template")


@pytest.mark.parametrize(
    ("link", "heading"),
    [("Gallery", None), ("API keys", None), ("Models", None), ("Templates", "Publish a template")],
)
def test_other_pages(page: Page, lead_studio: Studio, link: str, heading: str | None) -> None:
    if link == "Gallery":
        with lead_studio.stack.client() as c:
            c.post("/api/jobs", json={"prompt": "calm bedroom, oak bed, linen", "style": "minimalist"})
    sign_in(page, lead_studio.url)
    page.get_by_role("link", name=link).click()
    if heading:
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
    wait_for_run(page)
    assert_clean(page, link.lower().replace(" ", "-"))
