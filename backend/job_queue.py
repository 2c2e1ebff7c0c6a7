"""Every job state change, each one conditional statement: a lost race returns None, never a half-done state.

    queued ──claim──▶ running ──finish──▶ succeeded
       │  ◀─release─┘   │ ──fail────▶ failed
       └──cancel──▶ cancelled ◀──mark_cancelled (interrupted in ComfyUI)

A running job is held by one dispatcher (`claimed_by`) that heartbeats it; a job whose heartbeat is
older than the stall limit is adopted by another dispatcher (`adopt_stalled`), which reconciles it with
ComfyUI before doing anything else. Every change writes a `job_events` row in the same transaction, and
every end (succeeded, failed, cancelled) of a job with a webhook its outbox row (`backend.webhooks`).

The claim itself (queued → running, which job and where) is scheduled in `backend.claims`; read-only
questions (queue position, active jobs, cancel flags) are `backend.job_queries`'. This module is the
state machine alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Integer,
    String,
    and_,
    bindparam,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from backend import notify, webhooks
from backend.job_queries import active_count, position_statement
from backend.models import FINAL_STATUSES, Image, Job, JobEvent, JobStatus, UTCDateTime, new_id, utcnow

_EVENTS = JobEvent.metadata.tables[JobEvent.__tablename__]  # Core inserts: no ORM unit of work
_JOBS = Job.metadata.tables[Job.__tablename__]
_NEW_JOB_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("status", JobStatus.queued.value),
    ("lora_name", ""),
    ("priority", 0),
    ("attempts", 0),
    ("cancel_requested", False),
    ("progress_value", 0),
    ("progress_max", 0),
)


def params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def add_event(
    session: AsyncSession,
    job_id: str,
    type_: str,
    data: dict[str, Any] | None = None,
    *,
    queued_kind: str | None = None,
) -> None:
    """Log an event (`queued_kind`: the job is claimable again); its streams are notified at commit."""
    session.add(JobEvent(job_id=job_id, type=type_, data=data or {}))
    notify.job_event(session, job_id, queued_kind=queued_kind)


def _is_pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def enqueue(session: AsyncSession, job: Job, *, max_active: int | None = None) -> Job | None:
    """Store a new job and its `queued` event; None if that made the designer's jobs queued or
    running exceed `max_active` (the caller then rolls the transaction back, job row included)."""
    return job if await enqueue_ranked(session, job, max_active=max_active, rank=False) is not None else None


async def enqueue_ranked(
    session: AsyncSession, job: Job, *, max_active: int | None = None, rank: bool = True
) -> int | None:
    """`enqueue`, answering the new job's queue position (None: over the cap, roll back; 0: not
    counted, `rank=False`).

    Two Core INSERTs, no ORM unit of work: the job's row, then its `queued` event, whose statement
    checks the cap itself (`… SELECT … WHERE active <= max`) and, with `rank`, counts the position
    (one round trip fewer than a `queue_position` after it). The count grows with the queue: on
    SQLite, whose write lock the other writers wait for, count it after the commit instead. `job`
    is filled with what the row holds (id, status, times, counters) and stays outside the session;
    a new job has no images, so its collection is set empty and showing it loads nothing.
    """
    _fill_new(job)
    await session.execute(insert(_JOBS), _row_of(job))
    params = {
        "ev_job": job.id,
        "ev_now": job.created_at,
        "ev_designer": job.designer_id,
        "ev_max": max_active,
        "pos_kind": job.lane,
        "pos_priority": job.priority,
        "pos_created": job.created_at,
        "pos_id": job.id,
    }
    returned = await session.scalar(_queued_event_statement(max_active is not None, rank), params)
    if returned is None:
        return None
    notify.job_event(session, job.id, queued_kind=job.lane)
    return int(returned) + 1 if rank else 0


def _fill_new(job: Job) -> None:
    """The values a new row gets by default, set on the object the API shows."""
    now = utcnow()
    for key, value in _NEW_JOB_DEFAULTS:
        if getattr(job, key) is None:
            setattr(job, key, value)
    job.id = job.id or new_id()
    job.created_at = job.created_at or now
    job.updated_at = job.updated_at or now
    job.external = job.external if job.external is not None else {}
    set_committed_value(job, "images", [])


def _row_of(job: Job) -> dict[str, Any]:
    state = sa_inspect(job)
    return {c.key: state.dict[c.key] for c in _JOBS.columns if c.key in state.dict}


@functools.cache
def _queued_event_statement(capped: bool, rank: bool) -> Any:
    """INSERT the `queued` event (… SELECT … WHERE the designer's active jobs <= ev_max) RETURNING
    its id, or with `rank` the number of queued jobs ahead of the new one (`position_statement`)."""
    row = select(
        bindparam("ev_job", type_=String()),
        literal("queued"),
        literal({"status": "queued"}, JSON),
        bindparam("ev_now", type_=UTCDateTime()),
    )
    if capped:
        active = active_count(bindparam("ev_designer", type_=String())).scalar_subquery()
        row = row.where(active <= bindparam("ev_max", type_=Integer()))
    columns = ["job_id", "type", "data", "created_at"]
    returned = position_statement().scalar_subquery() if rank else _EVENTS.c.id
    return insert(_EVENTS).from_select(columns, row).returning(returned)


def _held(job_id: str, worker_id: str) -> Any:
    return and_(Job.id == job_id, Job.status == JobStatus.running, Job.claimed_by == worker_id)


async def _update_where(session: AsyncSession, *where: Any, **values: Any) -> Job | None:
    """One conditional UPDATE … RETURNING: the job if the condition held, None if another writer won."""
    values.setdefault("updated_at", utcnow())
    stmt = (
        update(Job)
        .where(*where)
        .values(**values)
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.scalars(stmt)).one_or_none()


async def _update_held(session: AsyncSession, job_id: str, worker_id: str, **values: Any) -> Job | None:
    return await _update_where(session, _held(job_id, worker_id), **values)


async def mark_submitted(
    session: AsyncSession,
    job_id: str,
    worker_id: str,
    *,
    graph: dict[str, Any],
    external: dict[str, Any],
    resubmit_reason: str | None = None,
) -> Job | None:
    """The graph is queued in the ML tier; with `resubmit_reason`, again in the same hold (the first
    attempt was lost): a `resubmitted` event with the attempt and the reason, for the designer."""
    now = utcnow()
    job = await _update_held(
        session,
        job_id,
        worker_id,
        submitted_at=now,
        heartbeat_at=now,
        attempts=Job.attempts + 1,
        graph=graph,
        external=external,
    )
    if job is None:
        return None
    if resubmit_reason is None:
        add_event(session, job_id, "submitted", {"status": "running", "attempt": job.attempts})
    else:
        data = {"status": "running", "attempt": job.attempts, "reason": resubmit_reason}
        add_event(session, job_id, "resubmitted", data)
    return job


async def mark_started(session: AsyncSession, job_id: str, worker_id: str) -> bool:
    """The render began; its `started` event is stored once per job, whatever the attempts or the
    dispatchers that followed it."""
    job = await _update_held(session, job_id, worker_id, heartbeat_at=utcnow())
    if job is None:
        return False
    seen = await session.scalar(
        select(JobEvent.id).where(JobEvent.job_id == job_id, JobEvent.type == "started").limit(1)
    )
    if seen is None:
        add_event(session, job_id, "started", {"status": "running"})
    return True


async def record_progress(
    session: AsyncSession, job_id: str, worker_id: str, value: int, maximum: int
) -> bool:
    """Store progress only past what the designer already saw (a resubmitted render starts again from
    step 0: its steps show once they pass the mark); False when the job is no longer held here."""
    now = utcnow()
    if maximum > 0:
        ahead = or_(Job.progress_max == 0, Job.progress_max * value > Job.progress_value * maximum)
        values = {"progress_value": value, "progress_max": maximum, "heartbeat_at": now}
        if await _update_where(session, _held(job_id, worker_id), ahead, **values) is not None:
            add_event(session, job_id, "progress", {"value": value, "max": maximum})
            return True
    return await _update_held(session, job_id, worker_id, heartbeat_at=now) is not None


@dataclass(frozen=True)
class HeldState:
    cancel_requested: bool


async def heartbeat(session: AsyncSession, worker_id: str, job_ids: Sequence[str]) -> dict[str, HeldState]:
    """Refresh this dispatcher's hold on its jobs; returns the ones it still holds, with cancel requests."""
    if not job_ids:
        return {}
    stmt = (
        update(Job)
        .where(Job.id.in_(list(job_ids)), Job.status == JobStatus.running, Job.claimed_by == worker_id)
        .values(heartbeat_at=utcnow())
        .returning(Job.id, Job.cancel_requested)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return {row.id: HeldState(bool(row.cancel_requested)) for row in await session.execute(stmt)}


async def finish(session: AsyncSession, job_id: str, worker_id: str, images: Sequence[Image]) -> Job | None:
    """succeeded, with its images, in one transaction: never done without them."""
    now = utcnow()
    job = await _update_held(
        session,
        job_id,
        worker_id,
        status=JobStatus.succeeded,
        finished_at=now,
        claimed_by=None,
        progress_value=Job.progress_max,
        error_code=None,
        error_message=None,
    )
    if job is None:
        return None
    for image in images:
        session.add(image)
    results = [i for i in images if i.role != "pass"]
    data: dict[str, Any] = {
        "status": "succeeded",
        "images": [{"id": i.id, "width": i.width, "height": i.height} for i in results],
    }
    passes = [i for i in images if i.role == "pass"]
    if passes:
        data["passes"] = [
            {"id": i.id, "width": i.width, "height": i.height, "node_id": i.node_id, "label": i.label}
            for i in passes
        ]
    add_event(session, job_id, "succeeded", data)
    webhooks.record(session, job, results)
    return job


async def fail(session: AsyncSession, job_id: str, worker_id: str, code: str, message: str) -> Job | None:
    job = await _update_held(
        session,
        job_id,
        worker_id,
        status=JobStatus.failed,
        finished_at=utcnow(),
        claimed_by=None,
        error_code=code,
        error_message=message[:4000],
    )
    if job is not None:
        add_event(session, job_id, "failed", {"status": "failed", "code": code, "message": message[:4000]})
        webhooks.record(session, job)
    return job


async def mark_cancelled(session: AsyncSession, job_id: str, worker_id: str) -> Job | None:
    job = await _update_held(
        session, job_id, worker_id, status=JobStatus.cancelled, finished_at=utcnow(), claimed_by=None
    )
    if job is not None:
        add_event(session, job_id, "cancelled", {"status": "cancelled"})
        webhooks.record(session, job)
    return job


async def release(
    session: AsyncSession, job_id: str, worker_id: str, *, reason: str, delay_s: float = 0.0
) -> Job | None:
    """Back to the queue (the prompt is known not to be in ComfyUI), after an optional back-off.

    The progress stays: what the designer saw is the mark the next attempt's steps must pass."""
    now = utcnow()
    job = await _update_held(
        session,
        job_id,
        worker_id,
        status=JobStatus.queued,
        claimed_by=None,
        heartbeat_at=None,
        instance=None,
        not_before=now + timedelta(seconds=delay_s) if delay_s else None,
    )
    if job is not None:
        add_event(session, job_id, "requeued", {"status": "queued", "reason": reason}, queued_kind=job.lane)
    return job


async def unhold(session: AsyncSession, job_id: str, worker_id: str) -> Job | None:
    """A stopping dispatcher lets go of a job still running in ComfyUI: the next one adopts it at once."""
    job = await _update_held(session, job_id, worker_id, heartbeat_at=None)
    if job is not None:
        add_event(session, job_id, "handed_over", {"status": "running"})
    return job


async def request_cancel(session: AsyncSession, job: Job) -> Job:
    """Queued: cancelled at once. Running: flagged; the dispatcher interrupts it in ComfyUI."""
    now = utcnow()
    if job.status == JobStatus.queued:
        done = await _update_where(
            session,
            Job.id == job.id,
            Job.status == JobStatus.queued,
            status=JobStatus.cancelled,
            finished_at=now,
            cancel_requested=True,
        )
        if done is not None:
            add_event(session, job.id, "cancelled", {"status": "cancelled"})
            webhooks.record(session, done)
            return done
        await session.refresh(job)
    if job.status == JobStatus.running and not job.cancel_requested:
        flagged = await _update_where(
            session, Job.id == job.id, Job.status == JobStatus.running, cancel_requested=True
        )
        if flagged is not None:
            add_event(session, job.id, "cancel_requested", {"status": "running"})
            return flagged
        await session.refresh(job)
    return job


async def adopt_stalled(
    session: AsyncSession, worker_id: str, stall_after_s: float, limit: int = 50
) -> list[Job]:
    """Take over running jobs whose dispatcher stopped heartbeating (crashed or cut off)."""
    now = utcnow()
    stale = now - timedelta(seconds=stall_after_s)
    query = (
        select(Job.id, Job.claimed_by)
        .where(Job.status == JobStatus.running, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale))
        .order_by(Job.created_at)
        .limit(limit)
    )
    if _is_pg(session):
        query = query.with_for_update(skip_locked=True)
    adopted: list[Job] = []
    for row in (await session.execute(query)).all():
        job = await _update_where(
            session,
            Job.id == row.id,
            Job.status == JobStatus.running,
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale),
            claimed_by=worker_id,
            heartbeat_at=now,
        )
        if job is not None:
            add_event(session, job.id, "adopted", {"status": "running"})
            adopted.append(job)
    return adopted


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES


async def record_external(
    session: AsyncSession, job_id: str, worker_id: str, external: dict[str, Any]
) -> Job | None:
    """Replace a held job's executor bookkeeping (no event: the executor's own notes)."""
    return await _update_held(session, job_id, worker_id, external=external, heartbeat_at=utcnow())


async def thumbnails_ready(session: AsyncSession, image_ids: Sequence[str]) -> None:
    """The thumbnails of these images are stored (made after their job succeeded)."""
    await session.execute(update(Image).where(Image.id.in_(image_ids)).values(thumb_ready=True))
