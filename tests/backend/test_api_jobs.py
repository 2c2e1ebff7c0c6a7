"""Jobs API over real HTTP on SQLite and PostgreSQL: create, validate, list, get, cancel, retry, ownership."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest

from tests.factories import job_body
from tests.support.api import assert_error
from tests.support.backend import OTHER_TOKEN, Stack


def test_create_job_answers_201_with_the_job_and_its_queue_position(api_stack: Stack) -> None:
    with api_stack.client() as c:
        first = c.post("/api/jobs", json=job_body(seed=None))
        second = c.post("/api/jobs", json=job_body())
    assert first.status_code == 201, first.text
    job = first.json()
    assert job["status"] == "queued"
    assert job["queue_position"] == 1
    assert second.json()["queue_position"] == 2
    assert 0 <= job["seed"] <= 2**53 - 1  # a random seed was drawn and stored
    assert job["params"]["seed"] == job["seed"]
    assert job["params"]["width"] == 512 and job["params"]["style"] == "indochine"
    assert job["events_url"] == f"/api/jobs/{job['id']}/events"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"width": 513}, "width"),
        ({"height": 1032}, "height"),
        ({"width": 248}, "width"),
        ({"steps": -1}, "steps"),
        ({"steps": "20"}, "steps"),
        ({"cfg": "high"}, "cfg"),
        ({"seed": -5}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"num_images": 5}, "num_images"),
        ({"sampler": "euler a"}, "sampler"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"prompt": "room\x00with nul"}, "prompt"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"kind": "sketch"}, "body"),
        ({"upload_id": "00000000-0000-0000-0000-000000000000"}, "body"),
    ],
)
def test_invalid_job_bodies_get_422_with_the_field_and_create_nothing(
    api_stack: Stack, change: dict, field: str
) -> None:
    with api_stack.client() as c:
        r = c.post("/api/jobs", json=job_body(**change))
        err = assert_error(r, 422, "invalid_input")
        assert any(d["field"] == field for d in err["details"]), err
        assert c.get("/api/jobs").json()["items"] == []


def test_unknown_style_is_refused_naming_the_styles(api_stack: Stack) -> None:
    with api_stack.client() as c:
        err = assert_error(c.post("/api/jobs", json=job_body(style="baroque")), 422, "invalid_style")
    assert "indochine" in err["message"] and "minimalist" in err["message"]
    assert err["details"][0]["field"] == "style"


def test_idempotency_key_returns_the_same_job_and_refuses_a_different_body(api_stack: Stack) -> None:
    body = job_body()
    with api_stack.client() as c:
        a = c.post("/api/jobs", json=body, headers={"Idempotency-Key": "retry-42"})
        b = c.post("/api/jobs", json=body, headers={"Idempotency-Key": "retry-42"})
        assert a.json()["id"] == b.json()["id"]
        assert len(c.get("/api/jobs").json()["items"]) == 1
        assert_error(
            c.post("/api/jobs", json=job_body(), headers={"Idempotency-Key": "retry-42"}),
            409,
            "idempotency_key_reused",
        )
    with api_stack.client(OTHER_TOKEN) as other:  # keys are per designer
        assert other.post("/api/jobs", json=body, headers={"Idempotency-Key": "retry-42"}).status_code == 201


def test_another_designers_job_is_a_404(api_stack: Stack) -> None:
    with api_stack.client() as alice, api_stack.client(OTHER_TOKEN) as bob:
        job_id = alice.post("/api/jobs", json=job_body()).json()["id"]
        assert_error(bob.get(f"/api/jobs/{job_id}"), 404, "job_not_found")
        assert_error(bob.post(f"/api/jobs/{job_id}/cancel"), 404, "job_not_found")
        assert_error(bob.post(f"/api/jobs/{job_id}/retry"), 404, "job_not_found")
        assert bob.get("/api/jobs").json()["items"] == []
        assert alice.get(f"/api/jobs/{job_id}").json()["status"] == "queued"
        for bad in ("../../etc/passwd", "%2e%2e%2f", "x" * 300, "0"):
            assert bob.get(f"/api/jobs/{bad}").status_code == 404


def test_list_is_newest_first_with_cursor_pages_and_filters(api_stack: Stack) -> None:
    with api_stack.client() as c:
        ids = [
            c.post("/api/jobs", json=job_body(style=s)).json()["id"]
            for s in ("indochine", "minimalist", "none", "indochine", "none")
        ]
        page1 = c.get("/api/jobs", params={"limit": 2}).json()
        page2 = c.get("/api/jobs", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
        page3 = c.get("/api/jobs", params={"limit": 2, "cursor": page2["next_cursor"]}).json()
        seen = [j["id"] for j in page1["items"] + page2["items"] + page3["items"]]
        assert seen == ids[::-1]
        assert page3["next_cursor"] is None
        assert [j["style"] for j in c.get("/api/jobs", params={"style": "none"}).json()["items"]] == [
            "none",
            "none",
        ]
        assert c.get("/api/jobs", params={"status": "succeeded"}).json()["items"] == []
        assert len(c.get("/api/jobs", params={"status": ["queued"], "kind": "text"}).json()["items"]) == 5
        assert len(c.get("/api/jobs", params={"kind": ["sketch", "text"]}).json()["items"]) == 5
        assert c.get("/api/jobs", params={"kind": ["restyle", "stage", "edit"]}).json()["items"] == []
        assert_error(c.get("/api/jobs", params={"kind": "Not A Template"}), 422, "invalid_input")
        assert_error(c.get("/api/jobs", params={"cursor": "garbage!"}), 422, "invalid_input")
        assert_error(c.get("/api/jobs", params={"status": "done"}), 422, "invalid_input")
        assert_error(c.get("/api/jobs", params={"limit": 0}), 422, "invalid_input")


def test_list_filters_by_creation_day(api_stack: Stack) -> None:
    with api_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        today = date.fromisoformat(job["created_at"][:10])
        day = timedelta(days=1)
        for since, until, found in (
            (today, today, True),
            (today - day, None, True),
            (None, today - day, False),
            (today + day, None, False),
        ):
            params = {k: v.isoformat() for k, v in (("created_from", since), ("created_to", until)) if v}
            assert bool(c.get("/api/jobs", params=params).json()["items"]) is found, params
        assert_error(c.get("/api/jobs", params={"created_from": "yesterday"}), 422, "invalid_input")


def test_cancel_a_queued_job_is_immediate_and_idempotent(api_stack: Stack) -> None:
    with api_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()
        r = c.post(f"/api/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert c.post(f"/api/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
        assert c.get(f"/api/jobs/{job['id']}").json()["finished_at"] is not None


def test_retry_makes_a_new_job_with_the_same_settings_or_a_new_seed(api_stack: Stack) -> None:
    with api_stack.client() as c:
        job = c.post("/api/jobs", json=job_body(seed=77)).json()
        same = c.post(f"/api/jobs/{job['id']}/retry").json()
        fresh = c.post(f"/api/jobs/{job['id']}/retry", json={"new_seed": True}).json()
    assert same["id"] != job["id"] and same["retry_of"] == job["id"]
    assert same["seed"] == 77 and same["params"] == job["params"]
    assert fresh["params"]["prompt"] == job["params"]["prompt"]
    assert fresh["seed"] != 77 or fresh["params"]["seed"] != 77


def test_too_many_active_jobs_answers_429_with_retry_after(db_url: str, tmp_path) -> None:
    from tests.support.backend import start_stack

    with start_stack(db_url, tmp_path, None, max_active_jobs_per_designer=2) as stack:
        with stack.client() as c:
            assert c.post("/api/jobs", json=job_body()).status_code == 201
            assert c.post("/api/jobs", json=job_body()).status_code == 201
            r = c.post("/api/jobs", json=job_body())
            assert_error(r, 429, "too_many_active_jobs")
            assert int(r.headers["retry-after"]) > 0
            assert len(c.get("/api/jobs").json()["items"]) == 2


def test_styles_come_from_the_manifest(api_stack: Stack) -> None:
    with api_stack.client() as c:
        styles = {s["id"]: s for s in c.get("/api/styles").json()}
        assert {"indochine", "minimalist", "none"} <= set(styles)
        assert styles["none"]["has_lora"] is False
        assert styles["indochine"]["trigger_words"] == ["indochine style"]
        me = c.get("/api/me").json()
        assert me["name"] == "alice" and me["active_jobs"] == 0


def test_health_and_metrics(api_stack: Stack) -> None:
    with api_stack.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text  # no ComfyUI configured: nothing to wait for
        assert ready.json()["checks"]["database"]["ok"] is True
        c.post("/api/jobs", json=job_body())
        text = c.get("/metrics").text
        assert 'studio_jobs{state="queued"} 1.0' in text
        assert 'studio_queue_depth{kind="text"} 1.0' in text


def test_openapi_documents_every_route(api_stack: Stack) -> None:
    paths = httpx.get(f"{api_stack.url}/openapi.json").json()["paths"]
    for path in (
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/cancel",
        "/api/jobs/{job_id}/retry",
        "/api/jobs/{job_id}/events",
        "/api/uploads",
        "/api/images/{image_id}",
        "/api/images/{image_id}/thumbnail",
        "/api/styles",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path


def test_readyz_reports_an_unreachable_comfyui(db_url: str, tmp_path) -> None:
    from tests.support.backend import start_stack
    from tests.support.net import free_port

    with start_stack(db_url, tmp_path, f"http://127.0.0.1:{free_port()}") as stack:
        r = httpx.get(f"{stack.url}/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "not_ready"
        (comfy,) = body["checks"]["comfyui"].values()
        assert comfy == {"ok": False, "error": "ConnectError"}
