"""Share links on both databases: a client opens a project or a selection without an account and sees
the renders and their downloads, nothing else; revoked or expired, the link stops working; every use
is in the audit log; only the token's hash is stored."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from backend.db import make_engine, make_sessionmaker
from backend.models import AuditEvent
from backend.project_models import ShareLink
from tests.backend.test_projects import rendered
from tests.support.api import assert_error
from tests.support.backend import OTHER_TOKEN, Stack

pytestmark = pytest.mark.comfyui


def _rows(stack: Stack, model: type) -> list:
    async def read() -> list:
        engine = make_engine(stack.settings)
        try:
            async with make_sessionmaker(engine)() as s:
                return list(await s.scalars(select(model)))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_a_client_sees_the_project_until_it_is_revoked(stack: Stack) -> None:
    with (
        stack.client() as alice,
        stack.client(OTHER_TOKEN) as bob,
        httpx.Client(base_url=stack.url) as client,
    ):
        jobs = rendered(alice, stack, 2)
        project = alice.post(
            "/api/projects", json={"name": "Tran villa", "client": "Mr Tran", "room": "Lounge"}
        )
        pid = project.json()["id"]
        alice.put(f"/api/projects/{pid}/jobs/{jobs[0]['id']}")
        r = alice.post("/api/share-links", json={"project_id": pid, "expires_in_days": 7})
        assert r.status_code == 201, r.text
        link = r.json()
        assert link["scope"] == "project" and link["active"] and link["title"] == "Tran villa"
        assert link["url"].startswith(stack.url + "/s/")
        token = link["url"].rsplit("/", 1)[1]

        page = client.get(_path(link["url"]))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
        assert (
            page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
        )
        assert "Tran villa" in page.text and "Mr Tran · Lounge" in page.text
        image = jobs[0]["images"][0]
        assert f"/s/{token}/images/{image['id']}" in page.text and "?download=1" in page.text
        assert jobs[0]["params"]["prompt"] not in page.text  # no prompts, no settings
        assert jobs[1]["images"][0]["id"] not in page.text  # only what is filed in the project
        assert "<script" not in page.text

        png = client.get(f"/s/{token}/images/{image['id']}")
        assert png.status_code == 200 and png.content == alice.get(image["url"]).content
        download = client.get(f"/s/{token}/images/{image['id']}", params={"download": 1})
        assert download.headers["content-disposition"].startswith("attachment")
        assert_error(client.get(f"/s/{token}/images/{jobs[1]['images'][0]['id']}"), 404, "image_not_found")
        assert client.get(f"/api/images/{image['id']}").status_code == 401  # the link opens no API

        listed = alice.get("/api/share-links", params={"project_id": pid}).json()["items"]
        assert [x["access_count"] for x in listed] == [2]  # the page and the download
        assert bob.get("/api/share-links").json()["items"] == []
        assert_error(bob.delete(f"/api/share-links/{link['id']}"), 404, "share_link_not_found")

        revoked = alice.delete(f"/api/share-links/{link['id']}")
        assert revoked.status_code == 200 and revoked.json()["active"] is False
        gone = client.get(_path(link["url"]))
        assert gone.status_code == 404 and "not valid" in gone.text
        assert_error(client.get(f"/s/{token}/images/{image['id']}"), 404, "share_link_not_found")
        assert client.get("/s/" + "A" * 43).status_code == 404
        malformed = client.get("/s/not a token!")
        assert malformed.status_code == 404 and "not valid" in malformed.text

    stored = _rows(stack, ShareLink)
    assert [s.token_hash for s in stored] == [hashlib.sha256(token.encode()).hexdigest()]
    events = [e for e in _rows(stack, AuditEvent) if e.target_id == link["id"]]
    used = [(e.outcome, e.reason, e.details["what"]) for e in events if e.action == "share_link_used"]
    assert used == [
        ("success", "", "page"),
        ("success", "", "image"),
        ("success", "", "download"),
        ("success", "", "image"),  # the image the link does not show: the link itself worked
        ("failure", "revoked", "page"),
        ("failure", "revoked", "image"),
    ]
    assert {e.action for e in events} == {"share_link_created", "share_link_used", "share_link_revoked"}
    assert token not in str([(e.details, e.reason) for e in events])


def test_a_selection_link_shows_only_its_images_and_expires(stack: Stack) -> None:
    with (
        stack.client() as alice,
        stack.client(OTHER_TOKEN) as bob,
        httpx.Client(base_url=stack.url) as client,
    ):
        jobs = rendered(alice, stack, 2)
        chosen = jobs[1]["images"][0]["id"]
        soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
        r = alice.post(
            "/api/share-links", json={"image_ids": [chosen], "title": "Two options", "expires_at": soon}
        )
        assert r.status_code == 201, r.text
        link = r.json()
        assert link["scope"] == "selection" and link["image_ids"] == [chosen]
        page = client.get(_path(link["url"]))
        assert page.status_code == 200 and chosen in page.text and jobs[0]["images"][0]["id"] not in page.text
        time.sleep(2.2)
        expired = client.get(_path(link["url"]))
        assert expired.status_code == 410 and "expired" in expired.text
        assert_error(client.get(_path(link["url"]) + f"/images/{chosen}"), 410, "share_link_expired")
        assert alice.get("/api/share-links").json()["items"][0]["active"] is False

        # Only her own images, and an expiry within 90 days.
        assert_error(bob.post("/api/share-links", json={"image_ids": [chosen]}), 404, "image_not_found")
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        assert_error(alice.post("/api/share-links", json={"image_ids": [chosen], "expires_at": past}), 422,
                     "invalid_expiry")  # fmt: skip
        far = (datetime.now(UTC) + timedelta(days=91)).isoformat()
        assert_error(alice.post("/api/share-links", json={"image_ids": [chosen], "expires_at": far}), 422,
                     "invalid_expiry")  # fmt: skip
        assert_error(alice.post("/api/share-links", json={"title": "Nothing"}), 422, "invalid_input")
        assert_error(
            alice.post("/api/share-links", json={"project_id": jobs[0]["id"]}), 404, "project_not_found"
        )


def test_a_selection_made_in_a_project_is_listed_and_ends_with_it(stack: Stack) -> None:
    with stack.client() as alice, httpx.Client(base_url=stack.url) as client:
        jobs = rendered(alice, stack, 2)
        pid = alice.post("/api/projects", json={"name": "Hoi An shophouse", "room": "Tea room"}).json()["id"]
        for job in jobs:
            alice.put(f"/api/projects/{pid}/jobs/{job['id']}")
        chosen = jobs[0]["images"][0]["id"]
        r = alice.post("/api/share-links", json={"project_id": pid, "image_ids": [chosen]})
        link = r.json()
        assert link["scope"] == "selection" and link["title"] == "Hoi An shophouse"
        page = client.get(_path(link["url"]))
        assert chosen in page.text and jobs[1]["images"][0]["id"] not in page.text
        assert "Tea room" in page.text
        listed = alice.get("/api/share-links", params={"project_id": pid}).json()["items"]
        assert [x["id"] for x in listed] == [link["id"]]
        assert alice.delete(f"/api/projects/{pid}").status_code == 204
        assert client.get(_path(link["url"])).status_code == 404
        assert alice.get("/api/share-links").json()["items"] == []


def test_the_access_log_never_holds_a_share_token(caplog: pytest.LogCaptureFixture) -> None:
    from backend.config import Settings
    from backend.logs import configure_logging

    configure_logging(Settings(_env_file=None))  # type: ignore[call-arg]
    token = "kX9" * 14 + "z"
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "10.0.0.7:5100", "GET", f"/s/{token}/images/abc?download=1", "1.1", 200
    )
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "10.0.0.7:5100",
        "GET",
        "/api/jobs/x/events?access_token=secret",
        "1.1",
        200,
    )
    assert token not in caplog.text and "secret" not in caplog.text
    assert "/s/<token>/images/abc?download=1" in caplog.text and "access_token=<redacted>" in caplog.text
