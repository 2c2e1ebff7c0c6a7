"""A template's preview: a lead sets one of their renders; every designer who sees the template sees its
thumbnail through the template, and nothing else of the render."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.models import Role
from backend.users import set_role
from tests.backend.test_templates import declaration
from tests.factories import job_body
from tests.support.api import assert_error
from tests.support.backend import DEMO_TOKEN, OTHER_TOKEN, Stack, start_stack
from tests.support.comfy import EmulatorProcess


@pytest.fixture
def tstack(db_url: str, tmp_path: Path, emulator: EmulatorProcess) -> Iterator[Stack]:
    with start_stack(db_url, tmp_path, emulator.url) as stack:
        asyncio.run(set_role(stack.settings, "alice", Role.lead))
        yield stack


def test_a_lead_sets_a_preview_that_every_designer_sees(tstack: Stack) -> None:
    with tstack.client(DEMO_TOKEN) as alice, tstack.client(OTHER_TOKEN) as bob:
        assert alice.post("/api/templates", json=declaration()).status_code == 201
        assert alice.post("/api/templates/plain-room/publish").status_code == 201
        job = alice.post("/api/jobs", json=job_body(steps=2, width=256, height=256)).json()
        tstack.drain()
        image = alice.get(f"/api/jobs/{job['id']}").json()["images"][0]

        assert_error(bob.get("/api/templates/plain-room/preview"), 404, "preview_not_found")
        assert_error(
            bob.put("/api/templates/plain-room/preview", json={"image_id": image["id"]}),
            403,
            "forbidden_role",
        )
        r = alice.put("/api/templates/plain-room/preview", json={"image_id": image["id"]})
        assert r.status_code == 200, r.text
        assert r.json()["preview_url"] == "/api/templates/plain-room/preview"

        seen = bob.get("/api/templates/plain-room/preview")
        assert seen.status_code == 200 and seen.headers["content-type"] == "image/jpeg"
        assert seen.content == alice.get(f"/api/images/{image['id']}/thumbnail").content
        assert bob.get(f"/api/images/{image['id']}").status_code == 404  # the render itself stays hers
        listed = {t["name"]: t for t in bob.get("/api/templates").json()["items"]}
        assert listed["plain-room"]["preview_url"] == "/api/templates/plain-room/preview"


def test_a_preview_must_be_one_of_the_leads_renders(tstack: Stack) -> None:
    with tstack.client(DEMO_TOKEN) as alice, tstack.client(OTHER_TOKEN) as bob:
        assert alice.post("/api/templates", json=declaration()).status_code == 201
        job = bob.post("/api/jobs", json=job_body(steps=2, width=256, height=256)).json()
        tstack.drain()
        bobs = bob.get(f"/api/jobs/{job['id']}").json()["images"][0]["id"]
        r = alice.put("/api/templates/plain-room/preview", json={"image_id": bobs})
        assert_error(r, 404, "image_not_found")
        r = alice.put("/api/templates/plain-room/preview", json={"image_id": "not-a-uuid"})
        assert r.status_code == 422
