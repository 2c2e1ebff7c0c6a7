"""API keys on a running API, SQLite and PostgreSQL: made, listed, rotated and revoked by their designer;
hashed at rest; scoped; sent as `x-api-key` or as a bearer token; refused in every API process at once
after a revocation; counted per minute and per day across API processes (429 with Retry-After)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from backend.db import make_engine
from backend.users import disable_designer
from tests.factories import job_body, sketch_png
from tests.support.api import assert_error
from tests.support.backend import OTHER_TOKEN, ApiServer, Stack, start_stack
from tests.support.harness import ApiProcess
from tests.support.net import wait_until

REVOKED_WITHIN_S = 5.0  # the bound the README states for a revocation in every API process
POLL_S = 0.25  # slow enough that polling stays under the key's rate limit (its 429 path also says 401)


def make_key(c: httpx.Client, scopes: list[str], **extra: Any) -> dict[str, Any]:
    r = c.post("/api/keys", json={"name": "CMS", "scopes": scopes, **extra})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def with_key(url: str, key: str, bearer: bool = False) -> httpx.Client:
    header = {"Authorization": f"Bearer {key}"} if bearer else {"x-api-key": key}
    return httpx.Client(base_url=url, headers=header, timeout=30)


@pytest.fixture
def alice(api_stack: Stack) -> Iterator[httpx.Client]:
    with api_stack.client() as c:
        yield c


def away_from_a_minute_boundary() -> None:
    """A per-minute count that must not roll over in the middle of a test."""
    while time.time() % 60 > 50:
        time.sleep(0.5)


def test_a_key_is_shown_once_listed_rotated_and_revoked(api_stack: Stack, alice: httpx.Client) -> None:
    created = make_key(alice, ["read"])
    key = created["key"]
    assert key.startswith(f"{created['prefix']}_") and key.startswith("sk_studio_")
    with with_key(api_stack.url, key) as integration:
        assert integration.get("/api/jobs").status_code == 200
    [listed] = alice.get("/api/keys").json()["items"]
    assert "key" not in listed and listed["id"] == created["id"] and listed["scopes"] == ["read"]
    assert listed["last_used_at"] is not None and listed["rate_limit_per_minute"] == 60

    rotated = alice.post(f"/api/keys/{created['id']}/rotate").json()
    assert rotated["id"] == created["id"] and rotated["key"] != key and rotated["rotated_at"]
    with with_key(api_stack.url, key) as old, with_key(api_stack.url, rotated["key"]) as new:
        assert_error(old.get("/api/jobs"), 401, "unauthorized")
        assert new.get("/api/jobs").status_code == 200
        assert alice.delete(f"/api/keys/{created['id']}").status_code == 204
        assert_error(new.get("/api/jobs"), 401, "unauthorized")
    assert alice.get("/api/keys").json()["items"] == []
    assert_error(alice.delete(f"/api/keys/{created['id']}"), 404, "key_not_found")


def test_keys_are_stored_hashed(api_stack: Stack, alice: httpx.Client) -> None:
    key = make_key(alice, ["read", "render"])["key"]
    rows = asyncio.run(_api_key_rows(api_stack))
    assert len(rows) == 1
    assert rows[0]["secret_hash"] == hashlib.sha256(key.encode()).hexdigest()
    secret = key.rsplit("_", 1)[1]
    assert not any(secret in str(value) for value in rows[0].values())


async def _api_key_rows(stack: Stack) -> list[dict[str, Any]]:
    engine = make_engine(stack.settings)
    try:
        async with engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(text("SELECT * FROM api_keys"))]
    finally:
        await engine.dispose()


def test_scopes_are_enforced(api_stack: Stack, alice: httpx.Client) -> None:
    job_id = alice.post("/api/jobs", json=job_body()).json()["id"]
    reader = make_key(alice, ["read"])["key"]
    renderer = make_key(alice, ["render"])["key"]
    with with_key(api_stack.url, reader) as c:
        for path in ("/api/jobs", f"/api/jobs/{job_id}", "/api/styles", "/api/me"):
            assert c.get(path).status_code == 200, path
        for refused in (
            c.post("/api/jobs", json=job_body()),
            c.post(f"/api/jobs/{job_id}/cancel"),
            c.post(f"/api/jobs/{job_id}/retry"),
            c.post("/api/uploads", files={"file": ("plan.png", sketch_png(600), "image/png")}),
            c.get("/dev/text2image", params={"prompt": "a hall"}),  # the drop-in renders on GET too
            c.post("/dev/text2image", json={"text": "a hall"}),
        ):
            error = assert_error(refused, 403, "insufficient_scope")
            assert "render" in error["message"]
    with with_key(api_stack.url, renderer) as c:
        assert c.get(f"/api/jobs/{job_id}").status_code == 200  # render includes read
        assert c.post("/api/jobs", json=job_body()).status_code == 201
        assert c.post(f"/api/jobs/{job_id}/cancel").status_code == 200
        assert_error(c.get("/api/keys"), 403, "insufficient_scope")  # keys never manage keys
        assert_error(c.post("/api/keys", json={"name": "x", "scopes": ["read"]}), 403, "insufficient_scope")


def test_x_api_key_and_bearer_both_work_beside_designer_tokens(api_stack: Stack, alice: httpx.Client) -> None:
    key = make_key(alice, ["read"])["key"]
    with with_key(api_stack.url, key) as header, with_key(api_stack.url, key, bearer=True) as bearer:
        assert header.get("/api/me").json()["name"] == "alice"
        assert bearer.get("/api/me").json()["name"] == "alice"
    assert alice.get("/api/me").status_code == 200
    with with_key(api_stack.url, key[:-2] + "xx") as forged:
        assert_error(forged.get("/api/jobs"), 401, "unauthorized")


def test_another_designers_key_is_404(api_stack: Stack, alice: httpx.Client) -> None:
    key_id = make_key(alice, ["read"])["id"]
    with api_stack.client(OTHER_TOKEN) as bob:
        assert_error(bob.post(f"/api/keys/{key_id}/rotate"), 404, "key_not_found")
        assert_error(bob.delete(f"/api/keys/{key_id}"), 404, "key_not_found")
        assert bob.get("/api/keys").json()["items"] == []
    assert len(alice.get("/api/keys").json()["items"]) == 1


def test_a_key_may_only_lower_the_deployments_limits(api_stack: Stack, alice: httpx.Client) -> None:
    r = alice.post("/api/keys", json={"name": "x", "scopes": ["read"], "rate_limit_per_minute": 10_000})
    assert assert_error(r, 422, "key_limit_too_high")["details"][0]["field"] == "rate_limit_per_minute"
    assert_error(alice.post("/api/keys", json={"name": "x", "scopes": ["write"]}), 422, "invalid_input")
    assert make_key(alice, ["read"], renders_per_day=3)["renders_per_day"] == 3


def test_revocation_is_effective_in_every_api_process(
    api_stack: Stack, alice: httpx.Client, tmp_path: Path
) -> None:
    key = make_key(alice, ["read"])
    with ApiProcess.of(api_stack.settings, tmp_path) as other, with_key(other.url, key["key"]) as there:
        assert there.get("/api/me").status_code == 200  # cached in the other process now
        assert alice.delete(f"/api/keys/{key['id']}").status_code == 204
        wait_until(lambda: there.get("/api/me").status_code == 401, REVOKED_WITHIN_S, POLL_S, "key refused")


def test_a_disabled_designers_keys_stop(api_stack: Stack, alice: httpx.Client) -> None:
    key = make_key(alice, ["read"])["key"]
    with with_key(api_stack.url, key) as c:
        assert c.get("/api/me").status_code == 200
        asyncio.run(disable_designer(api_stack.settings, "alice"))
        wait_until(lambda: c.get("/api/me").status_code == 401, REVOKED_WITHIN_S, POLL_S, "key refused")


def test_the_rate_limit_counts_across_api_processes(db_url: str, tmp_path: Path) -> None:
    with start_stack(db_url, tmp_path, None, api_key_rate_per_minute=4) as stack, stack.client() as alice:
        key = make_key(alice, ["read"])["key"]
        second = ApiServer(stack.settings)  # its own engine and cache: another process's view
        second.start()
        try:
            away_from_a_minute_boundary()
            with with_key(stack.url, key) as a, with_key(second.url, key) as b:
                assert [c.get("/api/jobs").status_code for c in (a, b, a, b)] == [200] * 4
                r = b.get("/api/jobs")
                assert_error(r, 429, "key_rate_limited")
                assert 1 <= int(r.headers["retry-after"]) <= 60
                assert_error(a.get("/api/jobs"), 429, "key_rate_limited")
            assert alice.get("/api/jobs").status_code == 200  # the designer's own token is not limited
        finally:
            second.stop()


def test_the_daily_render_quota_is_429_until_the_next_day(db_url: str, tmp_path: Path) -> None:
    with start_stack(db_url, tmp_path, None, api_key_renders_per_day=2) as stack, stack.client() as alice:
        key = make_key(alice, ["render"])["key"]
        with with_key(stack.url, key) as c:
            assert [c.post("/api/jobs", json=job_body()).status_code for _ in range(2)] == [201, 201]
            r = c.post("/api/jobs", json=job_body())
            assert_error(r, 429, "key_quota_exceeded")
            assert 1 <= int(r.headers["retry-after"]) <= 86_400
            assert c.get("/api/jobs").status_code == 200  # reads do not count against renders
        assert alice.post("/api/jobs", json=job_body()).status_code == 201


def test_a_read_key_follows_a_jobs_events(api_stack: Stack, alice: httpx.Client) -> None:
    job_id = alice.post("/api/jobs", json=job_body()).json()["id"]
    assert alice.post(f"/api/jobs/{job_id}/cancel").status_code == 200  # its stream ends
    key = make_key(alice, ["read"])["key"]
    for client in (with_key(api_stack.url, key), with_key(api_stack.url, key, bearer=True)):
        with client as c:
            r = c.get(f"/api/jobs/{job_id}/events")
            assert r.status_code == 200 and "event: cancelled" in r.text, r.text
