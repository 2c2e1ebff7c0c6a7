"""A job's progress: `/api/jobs/{id}/events` as a WebSocket, or as Server-Sent Events for plain HTTP.

Both replay the job's stored events after `after` (or SSE's `Last-Event-ID`), then stream new ones, plus a
`position` message while the job waits in the queue (with a `notice` while every ComfyUI server of its kind
is down, or while no server can run its template (`cannot_run`), else null); the stream ends after the
final event. Reconnecting with the last id seen loses nothing and repeats nothing. Browsers cannot set
headers on a WebSocket or EventSource: these routes also accept the token as `?access_token=`.

While the job samples, `preview` messages (no id: never stored, never replayed) carry the newest live
preview, `{"step", "steps", "image": "data:image/jpeg;base64,..."}`, at most about 4 a second; a slow
reader skips previews, never the stored events (backend/previews.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from backend import job_queries
from backend.api.deps import (
    AvailabilityDep,
    EventHubDep,
    PreviewHubDep,
    SessionMakerDep,
    TokenCacheDep,
)
from backend.api.jobs import get_job
from backend.auth import Principal, authenticate
from backend.availability import Availability
from backend.db import SessionMaker, read_session
from backend.errors import AppError, error_body
from backend.events import Event, EventHub, job_events
from backend.previews import Preview, PreviewHub, Slot

router = APIRouter(prefix="/api", tags=["events"])
POSITION_EVERY_S = 1.0
KEEPALIVE_S = 15.0
FINAL_EVENTS = frozenset({"succeeded", "failed", "cancelled"})


async def _position(
    sessionmaker: SessionMaker, availability: Availability, designer: Principal, job_id: str
) -> tuple[str, int | None, Any]:
    """The job's status, its queue position, and why it waits (a notice, while its server is down)."""
    session = await read_session(sessionmaker)
    async with session:
        job = await get_job(session, designer, job_id)
        position = await job_queries.queue_position(session, job)
    notice = await availability.lane_notice(job.lane) if position is not None else None
    return job.status, position, notice and notice.model_dump()


async def _next(queue: asyncio.Queue[Event], slot: Slot | None, timeout_s: float) -> Event | Preview | None:
    """The next stored event (first), or the newest preview, or None after `timeout_s`."""
    if not queue.empty():
        return queue.get_nowait()
    if slot is None:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(queue.get(), timeout_s)
        return None
    if slot.newest is None:
        get = asyncio.ensure_future(queue.get())
        changed = asyncio.ensure_future(slot.changed.wait())
        done, pending = await asyncio.wait({get, changed}, timeout=timeout_s, return_when=FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if get in done:
            return get.result()
    return slot.take()


async def stream(
    hub: EventHub,
    sessionmaker: SessionMaker,
    availability: Availability,
    designer: Principal,
    job_id: str,
    after: int,
    previews: PreviewHub | None = None,
) -> AsyncGenerator[dict[str, Any]]:
    """The job's events as JSON objects: replay, then live; ends after the final event."""
    status, position, notice = await _position(sessionmaker, availability, designer, job_id)  # 404 first
    queue = hub.subscribe(job_id)
    slot = previews.subscribe(job_id) if previews is not None else None
    try:
        sent: set[int] = set()
        for event in await job_events(sessionmaker, job_id, after):
            sent.add(event.id)
            yield event.as_json()
            if event.type in FINAL_EVENTS:
                return
        if status in ("succeeded", "failed", "cancelled"):
            return
        last: tuple[int | None, Any] = (None, None)
        while True:
            if position is not None and (position, notice) != last:
                last = (position, notice)
                yield {"type": "position", "job_id": job_id, "data": {"position": position, "notice": notice}}
            live = await _next(queue, slot, POSITION_EVERY_S)
            if isinstance(live, Preview):
                yield live.as_message()
                continue
            if live is None:
                status, position, notice = await _position(sessionmaker, availability, designer, job_id)
                continue
            if live.id in sent or live.id <= after:
                continue
            sent.add(live.id)
            yield live.as_json()
            if live.type in FINAL_EVENTS:
                return
            if live.type != "progress":
                position = None if live.data.get("status") != "queued" else position
    finally:
        hub.unsubscribe(job_id, queue)
        if previews is not None and slot is not None:
            previews.unsubscribe(job_id, slot)


def _token(authorization: str | None, access_token: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return access_token


@router.websocket("/jobs/{job_id}/events")
async def events_ws(
    websocket: WebSocket,
    job_id: str,
    hub: EventHubDep,
    preview_hub: PreviewHubDep,
    sessionmaker: SessionMakerDep,
    availability: AvailabilityDep,
    cache: TokenCacheDep,
    after: Annotated[int, Query(ge=0)] = 0,
    access_token: Annotated[str | None, Query()] = None,
) -> None:
    """JSON text frames `{id, job_id, type, data, created_at}`; closes (1000) after the final event."""
    try:
        token = websocket.headers.get("x-api-key") or _token(
            websocket.headers.get("authorization"), access_token
        )
        designer = await authenticate(cache, sessionmaker, token)
        iterator = stream(hub, sessionmaker, availability, designer, job_id, after, preview_hub)
        first = await anext(iterator, None)
    except AppError as exc:
        await websocket.accept()
        await websocket.send_json(error_body(exc.error_code, exc.message))
        await websocket.close(code=4000 + exc.status_code)
        return
    await websocket.accept()
    try:
        if first is not None:
            await websocket.send_json(first)
            async for message in iterator:
                await websocket.send_json(message)
        await websocket.close(code=1000)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await iterator.aclose()


def _sse(message: dict[str, Any]) -> str:
    head = f"id: {message['id']}\n" if "id" in message else ""
    return f"{head}event: {message['type']}\ndata: {json.dumps(message)}\n\n"


@router.get(
    "/jobs/{job_id}/events",
    summary="A job's events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events_sse(
    job_id: str,
    hub: EventHubDep,
    preview_hub: PreviewHubDep,
    sessionmaker: SessionMakerDep,
    availability: AvailabilityDep,
    cache: TokenCacheDep,
    after: Annotated[int, Query(ge=0)] = 0,
    access_token: Annotated[str | None, Query()] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header(alias="x-api-key")] = None,
) -> StreamingResponse:
    """`text/event-stream`: replay, then live events, each with its `id:` for Last-Event-ID resumption."""
    designer = await authenticate(cache, sessionmaker, x_api_key or _token(authorization, access_token))
    if last_event_id and last_event_id.isdigit():
        after = max(after, int(last_event_id))
    iterator = stream(hub, sessionmaker, availability, designer, job_id, after, preview_hub)
    first = await anext(iterator, None)  # raises 404 as JSON before the stream starts

    async def body() -> AsyncIterator[str]:
        pending: asyncio.Future[dict[str, Any] | None] | None = None
        try:
            if first is not None:
                yield _sse(first)
            pending = asyncio.ensure_future(anext(iterator, None))
            while True:
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
                if not done:
                    yield ": keepalive\n\n"
                    continue
                message = pending.result()
                if message is None:
                    return
                yield _sse(message)
                pending = asyncio.ensure_future(anext(iterator, None))
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending
            await iterator.aclose()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
