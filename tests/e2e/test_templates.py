"""Templates in a real browser, at 1280×800 and 1400×1000: a lead publishes one on the Templates page, a
designer picks it, fills its generated form, sees an out-of-range value refused before submit, renders.

The generated form's screenshot in docs/ comes from here (REFRESH_DOCS=1 writes it).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import ROOT, Studio, choose_template, screenshot, sign_in, wait_for_run
from tests.support.backend import DEMO_TOKEN, OTHER_TOKEN
from tests.support.template_decls import NAME, declaration, make_lead, publish

pytestmark = [pytest.mark.e2e, pytest.mark.comfyui]
RENDER_TIMEOUT_MS = 60_000
VIEWPORTS = {"1280x800": (1280, 800), "1400x1000": (1400, 1000)}
DOCS_SHOT = ROOT / "docs" / "screenshots" / "template-form.png"


@pytest.fixture(scope="module")
def leads(studio: Studio) -> Studio:
    """alice a lead; from a thread of its own, as Playwright's loop may already run in this one."""
    worker = threading.Thread(target=make_lead, args=(studio.stack, "alice"))
    worker.start()
    worker.join(timeout=30)
    return studio


@pytest.fixture(params=list(VIEWPORTS))
def sized(request: pytest.FixtureRequest, browser: Browser) -> Iterator[tuple[Page, str]]:
    width, height = VIEWPORTS[request.param]
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    yield context.new_page(), request.param
    context.close()


def published(studio: Studio) -> None:
    """The template is live (the lead's page test publishes it; alone, this publishes it by the API)."""
    with studio.stack.client(OTHER_TOKEN) as c:
        if c.get(f"/api/templates/{NAME}").status_code == 404:
            publish(studio.stack, declaration(), DEMO_TOKEN)


def test_a_lead_publishes_a_template_on_the_templates_page(
    sized: tuple[Page, str], leads: Studio, tmp_path: Path
) -> None:
    page, size = sized
    name = f"{NAME}-{size.replace('x', '-')}"
    doc = declaration(name=name, title=f"Evening light study ({size})")
    workflow = tmp_path / f"{name}.json"
    workflow.write_text(json.dumps(doc.pop("graph")))
    sign_in(page, leads.url, DEMO_TOKEN)
    page.get_by_role("link", name="Templates").click()
    expect(page.get_by_role("heading", name="Publish a template")).to_be_visible()
    page.locator(".st-key-w_tpl_graph_file input[type=file]").set_input_files(str(workflow))
    editor = page.locator(".st-key-w_tpl_decl textarea")
    expect(editor).to_contain_text('"results"')  # a skeleton drafted from the graph
    wait_for_run(page)
    editor.fill(json.dumps(doc, indent=2))
    editor.press("Control+Enter")
    wait_for_run(page)
    page.locator(".st-key-tpl_check button").click()
    expect(page.get_by_text("The template is valid")).to_be_visible()
    page.locator(".st-key-tpl_publish button").click()
    expect(page.get_by_text(f"Published {name}: version 1 is live.")).to_be_visible()
    wait_for_run(page)
    screenshot(page, f"20-templates-page-{size}")
    with leads.stack.client(OTHER_TOKEN) as c:
        assert c.get(f"/api/templates/{name}").json()["current_version"] == 1


def test_a_designer_fills_the_generated_form_a_bad_value_is_refused_then_it_renders(
    sized: tuple[Page, str], leads: Studio
) -> None:
    page, size = sized
    published(leads)
    sign_in(page, leads.url, OTHER_TOKEN)
    expect(page.get_by_role("link", name="Templates")).to_have_count(0)  # a designer publishes nothing
    choose_template(page, "Quick room draft")
    field = lambda key: page.locator(f".st-key-w_tpl_{NAME}_{key}")  # noqa: E731
    expect(field("prompt").locator("textarea")).to_have_value(
        "sunlit reading corner, rattan armchair, linen curtains, teak floor"
    )
    expect(page.get_by_text("From 2 to 30.")).to_be_visible()  # the limit, before it is hit
    field("prompt").locator("textarea").fill(
        "quiet reading corner by a tall window, rattan armchair, linen curtains, teak floor, morning light"
    )
    field("prompt").locator("textarea").press("Control+Enter")
    wait_for_run(page)

    steps = field("steps").locator("input")
    steps.fill("80")
    steps.press("Enter")
    refusal = page.locator(f".st-key-problem_{NAME}_steps")
    expect(refusal).to_contain_text("80 is above the maximum, 30.")
    render = page.locator(".st-key-render_template button")
    expect(render).to_be_disabled()
    wait_for_run(page)
    screenshot(page, f"21-template-refused-{size}")
    if size == "1400x1000" and os.environ.get("REFRESH_DOCS"):
        page.screenshot(path=str(DOCS_SHOT), animations="disabled")

    steps.fill("12")
    steps.press("Enter")
    expect(refusal).to_have_count(0)
    expect(render).to_be_enabled()
    wait_for_run(page)
    render.click()
    expect(page.get_by_test_id("stDownloadButton").first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    expect(page.get_by_test_id("stImageCaption").filter(has_text="Draft pass")).to_be_visible()
    wait_for_run(page)
    screenshot(page, f"22-template-rendered-{size}")
    job_id = page.url.split("job=")[1].split("&")[0]
    job = leads.stack.client(OTHER_TOKEN).get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["kind"] == NAME and job["params"]["steps"] == 12
