"""Bad input and abuse: a corpus of malformed requests (tests/data/bad_inputs/), hostile ids on every route,
other designers' resources, guessed URLs. Each gets a 4xx with the documented error body and changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import job_body, sketch_png
from tests.support.backend import OTHER_TOKEN, Stack

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
JOB_CASES: list[dict[str, Any]] = json.loads((CORPUS / "jobs.json").read_text())
HOSTILE_IDS: list[str] = json.loads((CORPUS / "ids.json").read_text())
ID_ROUTES = [
    ("GET", "/api/jobs/{}"),
    ("POST", "/api/jobs/{}/cancel"),
    ("POST", "/api/jobs/{}/retry"),
    ("GET", "/api/jobs/{}/events"),
    ("GET", "/api/uploads/{}"),
    ("GET", "/api/uploads/{}/image"),
    ("GET", "/api/uploads/{}/preview"),
    ("GET", "/api/images/{}"),
    ("GET", "/api/images/{}/thumbnail"),
    ("GET", "/api/images/{}/meta"),
    ("GET", "/api/styles/{}/preview"),
]


def error_body(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str) and error["code"].islower()
    assert isinstance(error["message"], str) and len(error["message"]) > 5
    assert "Traceback" not in r.text and "sqlalchemy" not in r.text.lower()
    return error


def state(stack: Stack) -> tuple[int, int]:
    """What a refused request must not change: the designer's jobs and the stored files."""
    with stack.client() as c:
        jobs = len(c.get("/api/jobs", params={"limit": 100}).json()["items"])
    files = (
        sum(1 for p in stack.settings.data_dir.rglob("*") if p.is_file())
        if stack.settings.data_dir.exists()
        else 0
    )
    return jobs, files


@pytest.mark.parametrize("case", JOB_CASES, ids=[c["name"] for c in JOB_CASES])
def test_every_bad_job_request_gets_its_4xx_and_changes_nothing(
    api_stack: Stack, case: dict[str, Any]
) -> None:
    before = state(api_stack)
    with api_stack.client() as c:
        if "raw" in case:
            r = c.post(
                "/api/jobs", content=case["raw"].encode(), headers={"content-type": case["content_type"]}
            )
        else:
            r = c.post("/api/jobs", json=case["body"])
    assert r.status_code == case["status"], r.text
    error = error_body(r)
    assert error["code"] == case["code"], error
    if "field" in case:
        assert any(d["field"] == case["field"] for d in error["details"]), error
    assert state(api_stack) == before


@pytest.mark.parametrize("bad_id", HOSTILE_IDS)
def test_hostile_ids_on_every_route_are_404_or_422_never_more(api_stack: Stack, bad_id: str) -> None:
    before = state(api_stack)
    with api_stack.client() as c:
        for method, route in ID_ROUTES:
            r = c.request(method, route.format(bad_id))
            assert r.status_code in (404, 405, 422), (method, route, bad_id, r.status_code, r.text)
            if r.status_code != 405:
                error_body(r)
    assert state(api_stack) == before


def test_another_designers_resources_are_404_and_guessed_image_urls_reveal_nothing(stack: Stack) -> None:
    with stack.client() as alice:
        upload = alice.post("/api/uploads", files={"file": ("s.png", sketch_png(), "image/png")}).json()
        job = alice.post("/api/jobs", json=job_body()).json()
        stack.drain()
        image = alice.get(f"/api/jobs/{job['id']}").json()["images"][0]
    with stack.client(OTHER_TOKEN) as bob:
        for url in (
            f"/api/jobs/{job['id']}",
            f"/api/uploads/{upload['id']}",
            f"/api/uploads/{upload['id']}/image",
            f"/api/uploads/{upload['id']}/preview",
            image["url"],
            image["thumbnail_url"],
            f"/api/images/{image['id']}/meta",
        ):
            r = bob.get(url)
            assert r.status_code == 404, (url, r.status_code)  # 404, not 403: nothing to learn
            assert error_body(r)["code"].endswith("_not_found")
        r = bob.post("/api/jobs", json=job_body(kind="sketch", upload_id=upload["id"]))
        assert r.status_code == 404 and error_body(r)["code"] == "unknown_upload"
    with httpx.Client(base_url=stack.url) as anonymous:
        for url in (image["url"], f"/api/jobs/{job['id']}", "/api/jobs"):
            r = anonymous.get(url)
            assert r.status_code == 401 and error_body(r)["code"] == "unauthorized"
        # The stored files are not served by path: only through the API, by id, to their owner.
        for guess in (
            "/data/images/x.png",
            "/var/data/images",
            "/static/../var/studio.db",
            "/api/../var/studio.db",
        ):
            assert anonymous.get(guess).status_code == 404
