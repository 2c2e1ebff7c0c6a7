"""EventHub: one poller per API process fans new `job_events` rows out to the streams that follow them.

A stream subscribes first, then replays what happened from the database, then takes live events,
skipping ids it already sent: nothing is lost between replay and live, nothing is sent twice. The
poller looks back a few seconds besides its cursor, so an event whose transaction committed late (two
writers on PostgreSQL) is still delivered. A notification that a followed job has a new event
(`backend.notify`) makes it poll at once; otherwise it polls every EVENT_POLL_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from backend.db import SessionMaker, read_session
from backend.models import JobEvent, utcnow

logger = logging.getLogger(__name__)

LOOKBACK_S = 3.0
BATCH = 1000


@dataclass(frozen=True)
class Event:
    id: int
    job_id: str
    type: str
    data: dict[str, Any]
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "type": self.type,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
        }


def to_event(row: JobEvent) -> Event:
    return Event(row.id, row.job_id, row.type, dict(row.data or {}), row.created_at)


async def job_events(sessionmaker: SessionMaker, job_id: str, after: int = 0) -> list[Event]:
    session = await read_session(sessionmaker)
    async with session:
        rows = await session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after).order_by(JobEvent.id)
        )
        return [to_event(r) for r in rows]


class EventHub:
    def __init__(self, sessionmaker: SessionMaker, interval_s: float) -> None:
        self.sessionmaker = sessionmaker
        self.interval_s = interval_s
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = {}
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, job_id: str) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.setdefault(job_id, set()).add(queue)
        self._wake.set()
        return queue

    def on_notified(self, job_id: str) -> None:
        """`backend.notify` listener: job `job_id` has a new event."""
        if job_id in self._subscribers:
            self._wake.set()

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[Event]) -> None:
        subs = self._subscribers.get(job_id)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                del self._subscribers[job_id]

    async def _run(self) -> None:
        while True:
            if not self._subscribers:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._wake.clear()  # before the poll: a notification during it polls again
            try:
                await self._poll()
            except Exception:
                logger.exception("event poll failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def _poll(self) -> None:
        job_ids = list(self._subscribers)
        since = utcnow() - timedelta(seconds=LOOKBACK_S)
        session = await read_session(self.sessionmaker)
        async with session:
            rows = (
                await session.scalars(
                    select(JobEvent)
                    .where(
                        JobEvent.job_id.in_(job_ids),
                        or_(JobEvent.id > self._cursor, JobEvent.created_at > since),
                    )
                    .order_by(JobEvent.id)
                    .limit(BATCH)
                )
            ).all()
        for row in rows:
            self._cursor = max(self._cursor, row.id)
            for queue in self._subscribers.get(row.job_id, ()):
                queue.put_nowait(to_event(row))
