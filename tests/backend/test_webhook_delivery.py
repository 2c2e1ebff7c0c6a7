"""Webhooks end to end on SQLite and PostgreSQL: the API, dispatchers as real processes (SIGKILLed here),
a receiver on loopback. Signed as the `standardwebhooks` package verifies, retried after a 500 and a
timeout, delivered after the API and the dispatcher die mid-delivery, refused for private targets."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.factories import job_body
from tests.support.api import assert_error, wait_status
from tests.support.backend import Stack, start_stack
from tests.support.harness import ApiProcess, DispatcherProcess, settings_env
from tests.support.net import wait_until
from tests.support.webhook_receiver import Receiver, start_receiver

SECRET = "whsec_" + base64.b64encode(b"studio-webhook-test-key-32bytes!").decode()
SECRET_ENV = {"WEBHOOK_SECRET": SECRET}
FAST = {
    "webhook_secret": SECRET,
    "webhook_allow": "127.0.0.0/8",  # the receiver; nothing else private
    "webhook_poll_s": 0.05,
    "webhook_backoff_s": 0.2,
    "webhook_backoff_max_s": 1.0,
    "webhook_timeout_s": 2.0,
    "webhook_lease_s": 3.0,
}


@pytest.fixture
def hook_stack(db_url: str, tmp_path: Path, comfyui_url: str) -> Iterator[Stack]:
    with start_stack(db_url, tmp_path, comfyui_url, **FAST) as stack:
        yield stack


def dispatcher(stack: Stack, name: str, **overrides: Any) -> DispatcherProcess:
    return stack.dispatcher_process(name, extra_env=SECRET_ENV, **overrides).start()


def cancelled_job(c: httpx.Client, url: str) -> str:
    """A job that ends at once (cancelled while queued, before any dispatcher runs): its webhook is due."""
    job = c.post("/api/jobs", json=job_body(webhook_url=url))
    assert job.status_code == 201, job.text
    assert c.post(f"/api/jobs/{job.json()['id']}/cancel").json()["status"] == "cancelled"
    return str(job.json()["id"])


def deliveries(c: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    r = c.get(f"/api/jobs/{job_id}/webhooks")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def wait_delivery(c: httpx.Client, job_id: str, status: str, timeout_s: float = 30) -> dict[str, Any]:
    wait_until(lambda: [d["status"] for d in deliveries(c, job_id)] == [status], timeout_s, 0.05, status)
    return deliveries(c, job_id)[0]


def verified(receiver: Receiver, index: int = 0) -> dict[str, Any]:
    got = receiver.received[index]
    payload: dict[str, Any] = Webhook(SECRET).verify(got.body, got.headers)
    return payload


def test_a_finished_render_is_delivered_signed_and_shown_on_the_job(hook_stack: Stack) -> None:
    with start_receiver() as receiver, hook_stack.client() as c:
        job = c.post("/api/jobs", json=job_body(webhook_url=receiver.url)).json()
        assert "webhook_url" not in job["params"]
        with dispatcher(hook_stack, "d1"):
            assert wait_status(c, job["id"], {"succeeded", "failed"}, 60)["status"] == "succeeded"
            shown = wait_delivery(c, job["id"], "delivered")
    payload = verified(receiver)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["status"] == "succeeded"
    images = c_images(hook_stack, job["id"])
    assert [i["url"] for i in payload["data"]["images"]] == [i["url"] for i in images]
    assert receiver.ids() == [shown["id"]]
    assert (shown["attempts"], shown["last_status_code"], shown["event_type"]) == (1, 200, "job.succeeded")
    assert shown["delivered_at"] is not None and shown["history"][0]["status_code"] == 200


def c_images(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    with stack.client() as c:
        images: list[dict[str, Any]] = c.get(f"/api/jobs/{job_id}").json()["images"]
    assert images
    return images


def test_a_server_error_is_retried_with_the_same_webhook_id(hook_stack: Stack) -> None:
    with start_receiver([500, 503]) as receiver, hook_stack.client() as c:
        job_id = cancelled_job(c, receiver.url)
        with dispatcher(hook_stack, "d1"):
            shown = wait_delivery(c, job_id, "delivered")
    assert [h["status_code"] for h in shown["history"]] == [500, 503, 200]
    assert shown["attempts"] == 3
    assert receiver.ids() == [shown["id"]] * 3
    assert verified(receiver, 2)["type"] == "job.cancelled"


def test_a_receiver_that_times_out_is_retried(db_url: str, tmp_path: Path, comfyui_url: str) -> None:
    settings = {**FAST, "webhook_timeout_s": 1.0}
    with (
        start_stack(db_url, tmp_path, comfyui_url, **settings) as stack,
        start_receiver(["hang"], hang_s=4) as receiver,
        stack.client() as c,
    ):
        job_id = cancelled_job(c, receiver.url)
        with dispatcher(stack, "d1"):
            shown = wait_delivery(c, job_id, "delivered")
    assert [(h["status_code"], h["error"]) for h in shown["history"]] == [(None, "timed out"), (200, None)]
    assert len(set(receiver.ids())) == 1


def test_a_delivery_survives_the_api_and_the_dispatcher_killed_mid_delivery(hook_stack: Stack) -> None:
    api = ApiProcess(settings_env(hook_stack.settings) | SECRET_ENV, hook_stack.tmp_path).start()
    try:
        with start_receiver(["hold"]) as receiver, httpx.Client(base_url=api.url, timeout=30) as c:
            c.headers["Authorization"] = hook_stack.client().headers["Authorization"]
            job_id = cancelled_job(c, receiver.url)
            first = dispatcher(hook_stack, "d1")
            wait_until(lambda: len(receiver.received) == 1, 30, what="the first attempt to arrive")
            first.kill()
            api.kill()
            api.start()
            with dispatcher(hook_stack, "d2") as second:
                shown = wait_delivery(c, job_id, "delivered")
            assert "webhook" in second.log()
    finally:
        api.stop()
    assert len(receiver.ids()) >= 2 and set(receiver.ids()) == {shown["id"]}
    assert shown["attempts"] == 2
    assert verified(receiver, 1)["data"]["id"] == job_id


def test_the_target_is_checked_again_when_it_is_sent(hook_stack: Stack) -> None:
    with start_receiver() as receiver, hook_stack.client() as c:
        job_id = cancelled_job(c, receiver.url)  # allowed when the job was created
        with dispatcher(hook_stack, "d1", webhook_allow=""):
            shown = wait_delivery(c, job_id, "failed")
    assert receiver.received == []
    assert shown["attempts"] == 1 and shown["last_error"].startswith("target refused")


REFUSED = [
    "http://127.0.0.1:9/hook",
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://10.0.0.5/hook",
    "https://[::1]/hook",
    "ftp://8.8.8.8/hook",
]


def test_private_targets_are_refused_when_the_job_is_created(db_url: str, tmp_path: Path) -> None:
    with start_stack(db_url, tmp_path, None, webhook_secret=SECRET) as stack, stack.client() as c:
        for url in REFUSED:
            r = c.post("/api/jobs", json=job_body(webhook_url=url))
            error = assert_error(r, 422, "webhook_url_refused")
            assert error["details"][0]["field"] == "webhook_url", (url, error)
        assert c.get("/api/jobs").json()["items"] == []


def test_a_webhook_needs_a_signing_secret_on_the_server(api_stack: Stack) -> None:
    with api_stack.client() as c:
        r = c.post("/api/jobs", json=job_body(webhook_url="https://8.8.8.8/hook"))
    assert_error(r, 422, "webhooks_disabled")


def test_an_idempotent_retry_must_name_the_same_webhook(hook_stack: Stack) -> None:
    body, key = job_body(), {"Idempotency-Key": "hooked-1"}
    with hook_stack.client() as c:
        first = c.post("/api/jobs", json={**body, "webhook_url": "http://127.0.0.1:9/a"}, headers=key)
        again = c.post("/api/jobs", json={**body, "webhook_url": "http://127.0.0.1:9/a"}, headers=key)
        other = c.post("/api/jobs", json={**body, "webhook_url": "http://127.0.0.1:9/b"}, headers=key)
        none = c.post("/api/jobs", json=body, headers=key)
    assert first.status_code == 201, first.text
    assert again.json()["id"] == first.json()["id"], again.text
    assert_error(other, 409, "idempotency_key_reused")
    assert_error(none, 409, "idempotency_key_reused")
