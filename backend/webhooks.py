"""The webhook outbox: a delivery row per ended job, its claim, its outcome, and its signature.

    pending ──claim──▶ sending ──2xx──▶ delivered
       ▲                 │ ──5xx, 408, 429, timeout, connection error (attempts left)──▶ pending, later
       └──lease expired──┘ ──other answer, refused target, attempts spent──▶ failed

`record` is called by `job_queue` inside the transaction that ends the job, so a job never ends without
its delivery. A dispatcher's worker (`backend.webhook_worker`) claims due rows with one conditional
UPDATE (SKIP LOCKED on PostgreSQL): two dispatchers never send the same row at once. A sender that dies
holding a row leaves it `sending` until its lease ends, then any dispatcher claims it again; the receiver
may then see the same `webhook-id` twice (at least once, deduplicable by that id).

Signing follows Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
keyed by the base64 part of WEBHOOK_SECRET (`whsec_...`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import Image, Job, WebhookDelivery, new_id, utcnow

HISTORY_KEPT = 20  # attempts shown per delivery (the newest)
RETRYABLE_STATUSES = frozenset({408, 425, 429})  # besides every 5xx
_D = WebhookDelivery


def job_payload(job: Job, images: Sequence[Image], now: datetime) -> dict[str, Any]:
    """The event body: what an integration needs to act on the job without another request."""
    error = {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None
    data = {
        "id": job.id,
        "status": job.status,
        "images": [
            {
                "id": i.id,
                "url": f"/api/images/{i.id}",
                "thumbnail_url": f"/api/images/{i.id}/thumbnail",
                "width": i.width,
                "height": i.height,
            }
            for i in images
        ],
        "error": error,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
    return {"type": f"job.{job.status}", "timestamp": now.isoformat(), "data": data}


def record(session: AsyncSession, job: Job, images: Sequence[Image] = ()) -> None:
    """Queue the job's end for its webhook (nothing without one), in the caller's transaction."""
    if not job.webhook_url:
        return
    now = utcnow()
    session.add(
        WebhookDelivery(
            id=f"msg_{new_id().replace('-', '')}",
            job_id=job.id,
            event_type=f"job.{job.status}",
            url=job.webhook_url,
            payload=job_payload(job, images, now),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            history=[],
            created_at=now,
            updated_at=now,
        )
    )


def _due(now: datetime) -> Any:
    pending = and_(_D.status == "pending", _D.next_attempt_at <= now)
    abandoned = and_(_D.status == "sending", _D.lease_until < now)
    return or_(pending, abandoned)


async def claim_due(
    session: AsyncSession, worker_id: str, lease_s: float, limit: int
) -> list[WebhookDelivery]:
    """Take up to `limit` due deliveries (one more attempt each), held until `lease_s` from now.

    PostgreSQL: the rows are locked first (SKIP LOCKED: other senders take the next ones, never wait),
    then updated (inside one UPDATE the locking subquery can be rescanned, overrunning its LIMIT: a
    test saw one sender take every row). SQLite: one UPDATE under its single write lock."""
    now = utcnow()
    ids: Any = select(_D.id).where(_due(now)).order_by(_D.next_attempt_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        ids = list((await session.scalars(ids.with_for_update(skip_locked=True))).all())
        if not ids:
            return []
    else:
        ids = ids.scalar_subquery()
    stmt = (
        update(_D)
        .where(_D.id.in_(ids), _due(now))
        .values(
            status="sending",
            claimed_by=worker_id,
            lease_until=now + timedelta(seconds=lease_s),
            attempts=_D.attempts + 1,
            updated_at=now,
        )
        .returning(_D)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return list((await session.scalars(stmt)).all())


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: an HTTP status, or an error (timeout, connection, refused target)."""

    status_code: int | None = None
    error: str | None = None
    retryable: bool = False
    duration_ms: int = 0

    @property
    def is_success(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def outcome_of_status(status_code: int, duration_ms: int) -> Outcome:
    retry = status_code >= 500 or status_code in RETRYABLE_STATUSES
    error = None if 200 <= status_code < 300 else f"answered {status_code}"
    return Outcome(status_code, error, retry, duration_ms)


def backoff_s(attempts: int, base_s: float, cap_s: float) -> float:
    """Exponential back-off with jitter: between half and all of base·2^(attempts-1), capped."""
    ceiling: float = min(cap_s, base_s * 2.0 ** max(0, attempts - 1))
    return ceiling * (0.5 + random.random() / 2)  # spreads retries; not a secret


async def complete(
    session: AsyncSession,
    delivery: WebhookDelivery,
    worker_id: str,
    outcome: Outcome,
    *,
    max_attempts: int,
    base_s: float,
    cap_s: float,
) -> bool:
    """Store the attempt's outcome; False when this worker no longer held the row (its lease ended)."""
    now = utcnow()
    entry = {
        "attempt": delivery.attempts,
        "at": now.isoformat(),
        "status_code": outcome.status_code,
        "error": outcome.error,
        "duration_ms": outcome.duration_ms,
    }
    values: dict[str, Any] = {
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "history": [*delivery.history, entry][-HISTORY_KEPT:],
        "claimed_by": None,
        "lease_until": None,
        "updated_at": now,
    }
    if outcome.is_success:
        values |= {"status": "delivered", "delivered_at": now}
    elif outcome.retryable and delivery.attempts < max_attempts:
        delay = backoff_s(delivery.attempts, base_s, cap_s)
        values |= {"status": "pending", "next_attempt_at": now + timedelta(seconds=delay)}
    else:
        values |= {"status": "failed"}
    held = and_(_D.id == delivery.id, _D.status == "sending", _D.claimed_by == worker_id)
    result = await session.execute(update(_D).where(held).values(**values).returning(_D.id))
    return result.first() is not None


async def for_job(session: AsyncSession, job_id: str) -> list[WebhookDelivery]:
    query = select(_D).where(_D.job_id == job_id).order_by(_D.created_at, _D.id)
    return list((await session.scalars(query)).all())


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for one attempt."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
