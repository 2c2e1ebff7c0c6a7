"""The webhook outbox on SQLite and PostgreSQL: written with the job's end or not at all, claimed by one
sender at a time, reclaimed after a lease, retried or given up, signed as Standard Webhooks verifies."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook

from backend import job_queue, webhooks
from backend.models import Job, JobStatus, WebhookDelivery, utcnow
from tests.support.queue import add_jobs, claim

HOOK = "https://hooks.example.test/studio"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


class Boom(Exception):
    pass


async def deliveries(sm) -> list[WebhookDelivery]:
    async with sm() as s:
        return list((await s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at))).all())


async def cancelled_with_hook(sm, n: int = 1) -> list[str]:
    ids = await add_jobs(sm, n, webhook_url=HOOK)
    for job_id in ids:
        async with sm() as s, s.begin():
            await job_queue.request_cancel(s, await s.get(Job, job_id))
    return ids


async def test_the_outbox_row_commits_or_rolls_back_with_the_jobs_end(sm) -> None:
    (job_id,) = await add_jobs(sm, 1, webhook_url=HOOK)
    await claim(sm, "w")
    with pytest.raises(Boom):
        async with sm() as s, s.begin():
            assert await job_queue.fail(s, job_id, "w", "comfy_error", "it broke") is not None
            raise Boom
    assert await deliveries(sm) == []
    async with sm() as s, s.begin():
        assert await job_queue.fail(s, job_id, "w", "comfy_error", "it broke") is not None
    (row,) = await deliveries(sm)
    assert (row.job_id, row.event_type, row.status, row.url) == (job_id, "job.failed", "pending", HOOK)
    assert row.payload["type"] == "job.failed"
    assert row.payload["data"]["id"] == job_id
    assert row.payload["data"]["error"] == {"code": "comfy_error", "message": "it broke"}
    assert row.id.startswith("msg_")


async def test_every_end_of_a_job_with_a_webhook_is_queued_and_only_those(sm) -> None:
    done, failed, interrupted = await add_jobs(sm, 3, webhook_url=HOOK)
    (silent,) = await add_jobs(sm, 1)
    for _ in range(4):
        await claim(sm, "w")
    async with sm() as s, s.begin():
        await job_queue.finish(s, done, "w", [])
        await job_queue.fail(s, failed, "w", "x", "y")
        await job_queue.mark_cancelled(s, interrupted, "w")
        await job_queue.finish(s, silent, "w", [])
    (queued,) = await add_jobs(sm, 1, webhook_url=HOOK)
    async with sm() as s, s.begin():
        await job_queue.request_cancel(s, await s.get(Job, queued))
    events = {d.job_id: d.event_type for d in await deliveries(sm)}
    assert events == {
        done: "job.succeeded",
        failed: "job.failed",
        interrupted: "job.cancelled",
        queued: "job.cancelled",
    }


async def test_concurrent_senders_never_claim_the_same_delivery(sm) -> None:
    await cancelled_with_hook(sm, 5)

    async def take(worker: str) -> list[str]:
        async with sm() as s, s.begin():
            return [d.id for d in await webhooks.claim_due(s, worker, 60, 5)]

    taken = await asyncio.gather(*(take(f"w{i}") for i in range(4)))
    flat = [d for batch in taken for d in batch]
    assert len(flat) == len(set(flat)) == 5
    async with sm() as s, s.begin():
        assert await webhooks.claim_due(s, "late", 60, 5) == []


async def test_a_claim_takes_at_most_its_limit_oldest_first(sm) -> None:
    await cancelled_with_hook(sm, 5)
    async with sm() as s, s.begin():
        first = await webhooks.claim_due(s, "w1", 60, 2)
    async with sm() as s, s.begin():
        rest = await webhooks.claim_due(s, "w2", 60, 10)
    assert (len(first), len(rest)) == (2, 3)
    assert max(d.next_attempt_at for d in first) <= min(d.next_attempt_at for d in rest)


# PostgreSQL only (SQLite has one writer: its single UPDATE claims atomically); fails if PostgreSQL is down.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_open_claims_skip_each_others_rows_on_postgresql(sm) -> None:
    """Each sender's claim stays open until all have claimed: a claim that waited on another's locked
    rows (no SKIP LOCKED) would never get there; one that ignored them would claim them twice."""
    await cancelled_with_hook(sm, 5)
    barrier = asyncio.Barrier(3)

    async def take(worker: str) -> list[str]:
        async with sm() as s, s.begin():
            claimed = [d.id for d in await webhooks.claim_due(s, worker, 60, 2)]
            await asyncio.wait_for(barrier.wait(), 10)
            return claimed

    taken = await asyncio.gather(*(take(f"w{i}") for i in range(3)))
    flat = [d for batch in taken for d in batch]
    assert sorted(len(batch) for batch in taken) == [1, 2, 2]
    assert len(set(flat)) == 5


async def test_a_dead_senders_delivery_is_claimed_again_after_its_lease(sm) -> None:
    await cancelled_with_hook(sm)
    async with sm() as s, s.begin():
        (first,) = await webhooks.claim_due(s, "dead", 60, 5)
    async with sm() as s, s.begin():
        assert await webhooks.claim_due(s, "w2", 60, 5) == []  # still leased
        await s.execute(update(WebhookDelivery).values(lease_until=utcnow() - timedelta(seconds=1)))
    async with sm() as s, s.begin():
        (second,) = await webhooks.claim_due(s, "w2", 60, 5)
    assert (second.id, second.attempts, second.claimed_by) == (first.id, 2, "w2")
    ok = webhooks.outcome_of_status(200, 5)
    async with sm() as s, s.begin():
        assert not await webhooks.complete(s, first, "dead", ok, max_attempts=5, base_s=1, cap_s=1)
        assert await webhooks.complete(s, second, "w2", ok, max_attempts=5, base_s=1, cap_s=1)
    (row,) = await deliveries(sm)
    assert (row.status, row.last_status_code, row.delivered_at is not None) == ("delivered", 200, True)


async def attempt(sm, worker: str, status: int, max_attempts: int = 3) -> WebhookDelivery:
    async with sm() as s, s.begin():
        (d,) = await webhooks.claim_due(s, worker, 60, 1)
        outcome = webhooks.outcome_of_status(status, 3)
        kept = await webhooks.complete(s, d, worker, outcome, max_attempts=max_attempts, base_s=1e-4, cap_s=1)
        assert kept
    (row,) = await deliveries(sm)
    return row


async def test_server_errors_are_retried_until_the_limit_then_failed(sm) -> None:
    await cancelled_with_hook(sm)
    row = await attempt(sm, "w", 503)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 503)
    assert row.next_attempt_at > row.created_at
    await asyncio.sleep(0.01)
    assert (await attempt(sm, "w", 500)).status == "pending"
    await asyncio.sleep(0.01)
    row = await attempt(sm, "w", 502)
    assert (row.status, row.attempts) == ("failed", 3)
    assert [h["status_code"] for h in row.history] == [503, 500, 502]


async def test_a_client_error_is_not_retried(sm) -> None:
    await cancelled_with_hook(sm)
    row = await attempt(sm, "w", 410)
    assert (row.status, row.attempts, row.last_error) == ("failed", 1, "answered 410")


def test_backoff_doubles_with_jitter_under_its_cap() -> None:
    delays = [webhooks.backoff_s(n, 2.0, 30.0) for n in (1, 2, 3, 4, 5, 6)]
    bounds = [(1, 2), (2, 4), (4, 8), (8, 16), (15, 30), (15, 30)]
    assert all(lo <= d <= hi for d, (lo, hi) in zip(delays, bounds, strict=True)), delays


def test_the_signature_is_the_one_standard_webhooks_verifies() -> None:
    body = json.dumps({"type": "job.succeeded", "data": {"id": "x"}}).encode()
    timestamp = int(utcnow().timestamp())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhooks.sign(webhooks.secret_key(SECRET), "msg_1", timestamp, body),
    }
    assert Webhook(SECRET).verify(body, headers)["data"] == {"id": "x"}
    headers["webhook-id"] = "msg_2"
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(body, headers)


async def test_a_job_without_a_webhook_ends_as_before(sm) -> None:
    (job_id,) = await add_jobs(sm, 1)
    async with sm() as s, s.begin():
        job = await job_queue.request_cancel(s, await s.get(Job, job_id))
    assert job.status == JobStatus.cancelled
    assert await deliveries(sm) == []
