"""What both clients share: which failures are retried and how long to wait, the requests' shapes,
the event stream's URL and messages, and the job seen by polling as events.

A request is retried only when repeating it cannot do anything twice: reads, cancel (a cancelled job
stays cancelled), uploads (the server keeps one upload per sketch) and job creation, which always
carries an `Idempotency-Key` (the caller's or one the client makes) and sends the SAME key on every
attempt, so the server answers a retried create with the job the first attempt made. Any other POST
is repeated only when it surely did not run: the connection was never made, or the answer is a 503 (the
API's own when its database is busy, or a load balancer's with no server behind it).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlencode

import httpx

from studio_client.errors import StudioError
from studio_client.models import Job, JobEvent, JobRequest


def auth_headers(token: str | None) -> dict[str, str]:
    """The bearer header of a token (none for an anonymous client: it may only sign in)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


RETRY_STATUSES = frozenset({502, 503, 504})
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` in all (1: no retry); the wait doubles from `backoff_s` up to `max_backoff_s`, with
    jitter, and a `Retry-After` of the server's is followed up to `max_backoff_s`."""

    attempts: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0

    def delay_s(self, attempt: int, response: httpx.Response | None = None) -> float:
        wait = min(self.max_backoff_s, self.backoff_s * 2.0**attempt) * random.uniform(0.5, 1.0)
        after = response.headers.get("Retry-After", "") if response is not None else ""
        if after.isdigit():
            wait = max(wait, min(float(after), self.max_backoff_s))
        return wait


def retries_failure(exc: httpx.TransportError, idempotent: bool) -> bool:
    return idempotent or isinstance(exc, NEVER_SENT)


def retries_status(response: httpx.Response, idempotent: bool) -> bool:
    """502/503/504 for a request safe to repeat; a 503 otherwise too (the server did not do it)."""
    if response.status_code not in RETRY_STATUSES:
        return False
    return idempotent or response.status_code == 503


def job_body(request: JobRequest | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    if request is None:
        return JobRequest.model_validate(fields).body()
    body = request.body() if isinstance(request, JobRequest) else dict(request)
    return {**body, **fields}


def create_headers(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}


def list_params(limit: int, cursor: str | None, filters: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    for name, value in filters.items():
        if value:
            params[name] = value.isoformat() if isinstance(value, date) else value
    if cursor:
        params["cursor"] = cursor
    return params


def events_url(base_url: str, job_id: str, after: int) -> str:
    ws_base = "ws" + base_url.removeprefix("http")
    return f"{ws_base}/api/jobs/{job_id}/events?{urlencode({'after': after})}"


def parse_frame(raw: str | bytes) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(raw)
    return message


def relative(base_url: str, url: str) -> str | None:
    """A URL of the API as a path (the token goes with it); None for one elsewhere (a presigned S3 URL)."""
    if url.startswith(base_url):
        url = url[len(base_url) :]
    return url if url.startswith("/") else None


def storage_error(exc: Exception | None, status: int = 0) -> StudioError:
    if exc is not None:
        return StudioError(0, "storage_unreachable", "The image store cannot be reached.")
    return StudioError(status, "image_unavailable", "The image could not be loaded.")


def polled_events(previous: Job | None, job: Job) -> list[JobEvent]:
    """A polled job's changes as the stream would have told them (no ids: they were never stored)."""
    events = []
    was = previous.progress if previous is not None else None
    if job.progress.max and job.progress != was:
        events.append(JobEvent(job_id=job.id, type="progress", data=job.progress.model_dump()))
    if previous is None or job.status != previous.status:
        kind = job.status if job.is_final else "status"
        events.append(JobEvent(job_id=job.id, type=kind, data={"status": job.status}))
    return events
