"""Projects and client sharing in a real browser: a designer files renders into a project, shares it,
and a client opens the link in a fresh browser context without signing in; the link stops working
after it is revoked and after it expires; the project's ZIP holds its PNGs and the contact sheet.

The screenshots in docs/ come from here (REFRESH_DOCS=1 writes them).
"""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    ROOT,
    Studio,
    choose,
    click_until,
    screenshot,
    sign_in,
    wait_for_jobs,
    wait_for_run,
)

pytestmark = [pytest.mark.e2e, pytest.mark.comfyui]
DOCS = ROOT / "docs" / "screenshots"
ROOMS = [
    ("indochine", "living room with rattan armchairs, teak floor, louvred shutters, afternoon light"),
    ("indochine", "dining room with a lacquered table, pendant lanterns, green encaustic tiles"),
    ("minimalist", "reading corner with a linen sofa, oak shelves, soft morning light"),
    ("none", "guest bedroom with a low platform bed, woven headboard, ceiling fan"),
]


def _shot(page: Page, name: str, docs_name: str) -> None:
    screenshot(page, name)
    if os.environ.get("REFRESH_DOCS"):
        page.screenshot(path=str(DOCS / docs_name), full_page=True, animations="disabled")


def _client_page(browser: Browser) -> Page:
    """A fresh browser context: no cookie, no token, nothing of the designer's session."""
    context = browser.new_context(viewport={"width": 1280, "height": 1100}, accept_downloads=True)
    return context.new_page()


@pytest.fixture(scope="module")
def seeded(studio: Studio) -> dict:
    """Four renders, three filed in "Nguyen apartment" (the newest project), for every test here."""
    with studio.stack.client() as c:
        jobs = [
            c.post(
                "/api/jobs", json={"prompt": prompt, "style": style, "steps": 4, "width": 768, "height": 512}
            ).json()
            for style, prompt in ROOMS
        ]
        wait_for_jobs(studio.stack)
        other = {"name": "Riverside café", "client": "Lotus Hospitality", "room": "Terrace"}
        c.post("/api/projects", json=other)  # older: the page opens the newest
        body = {"name": "Nguyen apartment", "client": "Mai Nguyen", "room": "Living and dining"}
        project = c.post("/api/projects", json=body).json()
        for job in jobs[:3]:
            c.put(f"/api/projects/{project['id']}/jobs/{job['id']}")
        c.put(f"/api/jobs/{jobs[0]['id']}/favourite")
        c.post(
            "/api/projects", json={"name": "Riverside café", "client": "Lotus Hospitality", "room": "Terrace"}
        )
        return {"project": project, "jobs": jobs}


def test_a_client_opens_a_shared_project_until_it_is_revoked_or_expires(
    page: Page, browser: Browser, studio: Studio, seeded: dict, tmp_path: Path
) -> None:
    sign_in(page, studio.url)
    page.get_by_role("link", name="Gallery").click()
    wait_for_run(page)
    choose(page, "g_project", "Nguyen apartment")
    expect(page.get_by_text("guest bedroom with a low platform bed")).to_have_count(0)
    expect(page.get_by_text(ROOMS[0][1], exact=True)).to_be_visible()
    _shot(page, "30-gallery-project-filter", "gallery-projects.png")

    click_until(
        page, page.get_by_role("link", name="Projects"), page.get_by_role("heading", name="Nguyen apartment")
    )
    expect(page.get_by_text("Mai Nguyen · Living and dining · 3 renders")).to_be_visible()
    page.locator(".st-key-w_share_title input").fill("Nguyen apartment: first options")
    url_box = page.get_by_test_id("stCode")
    click_until(page, page.locator(".st-key-share_create button"), url_box)
    expect(url_box).to_contain_text("/s/")
    url = url_box.inner_text().strip()
    wait_for_run(page)
    _shot(page, "31-projects", "projects.png")

    client = _client_page(browser)
    response = client.goto(url)
    assert response is not None and response.status == 200
    expect(client.get_by_role("heading", name="Nguyen apartment: first options")).to_be_visible()
    expect(client.locator("figure img")).to_have_count(3)
    expect(client.get_by_role("link", name="Download PNG")).to_have_count(3)
    for _style, prompt in ROOMS:
        expect(client.get_by_text(prompt)).to_have_count(0)  # no prompts on the client's page
    expect(client.get_by_text("Riverside café")).to_have_count(0)
    for image in client.locator("figure img").all():  # lazy: each loads once it is scrolled to
        image.scroll_into_view_if_needed()
    client.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth === 768)")
    client.evaluate("window.scrollTo(0, 0)")
    _shot(client, "32-share-page", "share-page.png")
    with client.expect_download() as info:
        client.get_by_role("link", name="Download PNG").first.click()
    data = Path(info.value.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.goto(studio.stack.url + "/api/jobs").status == 401  # the link opens no API

    click_until(
        page, page.locator("[class*='st-key-revoke_'] button").first, page.get_by_text("The link is revoked")
    )
    revoked = client.goto(url)
    assert revoked is not None and revoked.status == 404
    expect(client.get_by_text("This link is not valid")).to_be_visible()
    expect(client.locator("figure img")).to_have_count(0)
    client.context.close()

    soon = (datetime.now(UTC) + timedelta(seconds=10)).isoformat()  # time to open it on a loaded machine
    with studio.stack.client() as c:
        body = {"project_id": seeded["project"]["id"], "expires_at": soon}
        short = c.post("/api/share-links", json=body).json()["url"]
    client = _client_page(browser)
    assert client.goto(short).status == 200
    expect(client.locator("figure img")).to_have_count(3)
    time.sleep(max(0.0, (datetime.fromisoformat(soon) - datetime.now(UTC)).total_seconds()) + 0.3)
    expired = client.goto(short)
    assert expired is not None and expired.status == 410
    expect(client.get_by_text("This link has expired.")).to_be_visible()
    client.context.close()


def test_the_projects_zip_holds_its_pngs_and_the_contact_sheet(
    page: Page, studio: Studio, seeded: dict
) -> None:
    sign_in(page, studio.url)
    page.get_by_role("link", name="Projects").click()
    wait_for_run(page)
    choose(page, "project_id", re.compile("Nguyen apartment"))
    page.locator(".st-key-zip_prepare button").click()
    button = page.locator(".st-key-zip_download button")
    expect(button).to_be_visible()
    wait_for_run(page)
    with page.expect_download() as info:
        button.click()
    assert info.value.suggested_filename == "nguyen-apartment.zip"
    archive = zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes()))
    names = archive.namelist()
    assert names[-1] == "contact-sheet.png" and len(names) == 4
    assert all(re.fullmatch(r"render-[0-9a-f]{8}-1-seed\d+\.png", n) for n in names[:3])
    assert all(archive.read(n)[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    if os.environ.get("REFRESH_DOCS"):
        (DOCS / "contact-sheet.png").write_bytes(archive.read("contact-sheet.png"))
