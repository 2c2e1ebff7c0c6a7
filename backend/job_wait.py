"""Waiting for a job to end without polling the database hard: the API process's EventHub wakes the
wait when the job has a new event (notified across processes, `backend.notify`), and only then is the
job read again.

The job is read once after subscribing, so an end that happened before the subscription is seen too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from backend import job_queue
from backend.api import job_reads
from backend.events import EventHub

JobRead = tuple[Row[Any], Sequence[Row[Any]]]


async def wait_for_end(hub: EventHub, engine: AsyncEngine, job_id: str, timeout_s: float) -> JobRead:
    """The job (and its images) once it succeeded, failed or was cancelled, or as it is after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    queue = hub.subscribe(job_id)
    try:
        while True:
            found = await job_reads.read_job(engine, job_id)
            if found is None:
                raise LookupError(job_id)
            remaining = deadline - loop.time()
            if job_queue.is_final(found[0].status) or remaining <= 0:
                return found
            await _next_final_event(queue, remaining)
    finally:
        hub.unsubscribe(job_id, queue)


async def _next_final_event(queue: asyncio.Queue[Any], timeout_s: float) -> None:
    """Return when an event says the job ended, or after `timeout_s` (the caller reads the job then)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while True:
                event = await queue.get()
                if job_queue.is_final(str(event.data.get("status", ""))):
                    return


def prefer_wait(header: str | None) -> int | None:
    """The `wait` preference of a `Prefer` header (RFC 7240: `wait=N`, N seconds), or None.

    Preferences are comma-separated, each `name[=value]` with `;`-parameters; names are case-insensitive
    and a malformed value is ignored, as the RFC asks of preferences a server does not understand."""
    for preference in (header or "").split(","):
        name, _, value = preference.split(";", 1)[0].strip().partition("=")
        value = value.strip().strip('"')
        if name.strip().lower() == "wait" and value.isdigit():
            return int(value)
    return None
