"""Every job state change, each one conditional statement: a lost race returns None, never a half-done state.

    queued ──claim──▶ running ──finish──▶ succeeded
       │  ◀─release─┘   │ ──fail────▶ failed
       └──cancel──▶ cancelled ◀──mark_cancelled (interrupted in ComfyUI)

A running job is held by one dispatcher (`claimed_by`) that heartbeats it; a job whose heartbeat is
older than the stall limit is adopted by another dispatcher (`adopt_stalled`), which reconciles it with
ComfyUI before doing anything else. Every change writes a `job_events` row in the same transaction.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from backend import notify
from backend.models import FINAL_STATUSES, Image, Job, JobEvent, JobStatus, UTCDateTime, new_id, utcnow

AFFINITY_WINDOW = 16  # queued jobs looked at when preferring the LoRA an instance has loaded
AFFINITY_MAX_WAIT_S = 20.0  # the head of the queue is never passed over once it waited this long
ACTIVE = (JobStatus.queued, JobStatus.running)
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
        "pos_kind": job.kind,
        "pos_priority": job.priority,
        "pos_created": job.created_at,
        "pos_id": job.id,
    }
    returned = await session.scalar(_queued_event_statement(max_active is not None, rank), params)
    if returned is None:
        return None
    notify.job_event(session, job.id, queued_kind=job.kind)
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
    its id, or with `rank` the number of queued jobs ahead of the new one (`_position_statement`)."""
    row = select(
        bindparam("ev_job", type_=String()),
        literal("queued"),
        literal({"status": "queued"}, JSON),
        bindparam("ev_now", type_=UTCDateTime()),
    )
    if capped:
        active = _active_count(bindparam("ev_designer", type_=String())).scalar_subquery()
        row = row.where(active <= bindparam("ev_max", type_=Integer()))
    columns = ["job_id", "type", "data", "created_at"]
    returned = _position_statement().scalar_subquery() if rank else _EVENTS.c.id
    return insert(_EVENTS).from_select(columns, row).returning(returned)


async def queue_position(session: AsyncSession | AsyncConnection, job: Job) -> int | None:
    """1 = next to be claimed for its kind; None once the job left the queue."""
    if job.status != JobStatus.queued:
        return None
    params = {
        "pos_kind": job.kind,
        "pos_priority": job.priority,
        "pos_created": job.created_at,
        "pos_id": job.id,
    }
    ahead = await session.scalar(_position_statement(), params)
    return int(ahead or 0) + 1


@functools.cache
def _position_statement() -> Select[int]:
    """Queued jobs of a kind ahead of one (`ix_jobs_queue` covers it), built once."""
    priority = bindparam("pos_priority", type_=Integer())
    created = bindparam("pos_created", type_=UTCDateTime())
    return (
        select(func.count())
        .select_from(Job)
        .where(
            Job.status == JobStatus.queued,
            Job.kind == bindparam("pos_kind", type_=String()),
            or_(
                Job.priority > priority,
                and_(
                    Job.priority == priority,
                    tuple_(Job.created_at, Job.id) < tuple_(created, bindparam("pos_id", type_=String())),
                ),
            ),
        )
    )


def _active_count(designer_id: Any) -> Select[int]:
    """The designer's jobs queued or running (`ix_jobs_designer_status`)."""
    return select(func.count()).select_from(Job).where(Job.designer_id == designer_id, Job.status.in_(ACTIVE))


async def active_jobs(session: AsyncSession, designer_id: str) -> int:
    n = await session.scalar(_active_count(designer_id))
    return int(n or 0)


async def has_claimable(session: AsyncSession, kinds: Sequence[str]) -> bool:
    """A cheap read before a claim's write transaction (idle dispatchers poll this)."""
    now = utcnow()
    found = await session.scalar(
        select(Job.id)
        .where(
            Job.status == JobStatus.queued,
            Job.kind.in_(list(kinds)),
            or_(Job.not_before.is_(None), Job.not_before <= now),
        )
        .limit(1)
    )
    return found is not None


def _pick(rows: Sequence[Any], preferred_lora: str | None, now: datetime) -> str:
    """The head of the queue, or a job using the LoRA already loaded, unless the head waited too long."""
    head = rows[0]
    if preferred_lora is None or head.lora_name == preferred_lora:
        return str(head.id)
    if (now - head.created_at).total_seconds() >= AFFINITY_MAX_WAIT_S:
        return str(head.id)
    for row in rows:
        if row.lora_name == preferred_lora:
            return str(row.id)
    return str(head.id)


async def claim_next(
    session: AsyncSession,
    *,
    worker_id: str,
    kinds: Sequence[str],
    executor: str,
    instance: str | None,
    preferred_lora: str | None = None,
) -> Job | None:
    """Atomically move one queued job to running for this dispatcher (SKIP LOCKED / BEGIN IMMEDIATE).

    The head of the queue is claimed by one `UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING`, read
    in `ix_jobs_claim`'s order. With a preferred LoRA that one statement takes the head only where
    `_pick` would (it uses that LoRA, or it waited AFFINITY_MAX_WAIT_S); otherwise the affinity window
    is read and picked from as before.
    """
    now = utcnow()
    params = _claim_params(kinds, now, worker_id, executor, instance)
    if preferred_lora is not None:
        params |= {"claim_lora": preferred_lora, "claim_cutoff": now - timedelta(seconds=AFFINITY_MAX_WAIT_S)}
    is_pg = _is_pg(session)
    stmt = _claim_head_statement(is_pg, preferred_lora is not None)
    job: Job | None = (await session.scalars(stmt, params)).one_or_none()
    if job is None and preferred_lora is not None:
        rows = (await session.execute(_window_statement(is_pg, AFFINITY_WINDOW), params)).all()
        if rows:
            params["claim_job_id"] = _pick(rows, preferred_lora, now)
            job = (await session.scalars(_claim_by_id_statement(is_pg), params)).one_or_none()
    if job is None:
        return None
    await _claimed(session, [job], now, is_pg)
    return job


def _claim_params(
    kinds: Sequence[str], now: datetime, worker_id: str, executor: str, instance: str | None
) -> dict[str, Any]:
    """The bind parameters every claim statement shares."""
    return {
        "claim_kinds": list(kinds),
        "claim_now": now,
        "claim_worker": worker_id,
        "claim_executor": executor,
        "claim_instance": instance,
    }


async def _claimed(session: AsyncSession, jobs: Sequence[Job], now: datetime, is_pg: bool) -> None:
    """What follows a claim: the jobs' (empty) images set, their streams notified, and on SQLite their
    `claimed` events inserted (PostgreSQL inserted them in the claim's own statement)."""
    for job in jobs:
        set_committed_value(job, "images", [])  # they were queued: they have none
        notify.job_event(session, job.id)
    if not is_pg:
        data = {"status": "running"}
        events = [{"job_id": j.id, "type": "claimed", "data": data, "created_at": now} for j in jobs]
        await session.execute(_INSERT_EVENT, events)


# The claim's statements are built once (with bind parameters) and reused: building a statement costs
# more Python time than running it.
_INSERT_EVENT = insert(_EVENTS)


def _pick_many(rows: Sequence[Any], preferred_lora: str | None, now: datetime, limit: int) -> list[str]:
    """`_pick` for several slots: jobs that waited AFFINITY_MAX_WAIT_S first, then those using the
    preferred LoRA, then the rest, each group in queue order."""
    if preferred_lora is None:
        return [str(r.id) for r in rows[:limit]]
    overdue, same, other = [], [], []
    for row in rows:
        if (now - row.created_at).total_seconds() >= AFFINITY_MAX_WAIT_S:
            overdue.append(row)
        elif row.lora_name == preferred_lora:
            same.append(row)
        else:
            other.append(row)
    return [str(r.id) for r in (overdue + same + other)[:limit]]


async def claim_batch(
    session: AsyncSession,
    *,
    worker_id: str,
    kinds: Sequence[str],
    executor: str,
    instance: str | None,
    limit: int,
    preferred_lora: str | None = None,
) -> list[Job]:
    """Up to `limit` queued jobs moved to running for this dispatcher in one transaction, in the order
    they should run (an executor with several free slots fills them with one claim).

    `limit` 1 is `claim_next`. Without a preferred LoRA one `UPDATE … WHERE id IN (SELECT … LIMIT n)`
    takes the head of the queue; with one, the affinity window (at least `limit` jobs) is read, locked
    on PostgreSQL (SKIP LOCKED), and picked from as `_pick_many` says.
    """
    if limit <= 1:
        job = await claim_next(
            session,
            worker_id=worker_id,
            kinds=kinds,
            executor=executor,
            instance=instance,
            preferred_lora=preferred_lora,
        )
        return [] if job is None else [job]
    now = utcnow()
    params = _claim_params(kinds, now, worker_id, executor, instance)
    is_pg = _is_pg(session)
    if preferred_lora is None:
        params["claim_limit"] = limit
        order: list[str] | None = None
        stmt = _claim_head_many_statement(is_pg)
    else:
        window = max(limit, AFFINITY_WINDOW)
        rows = (await session.execute(_window_statement(is_pg, window), params)).all()
        if not rows:
            return []
        order = _pick_many(rows, preferred_lora, now, limit)
        params["claim_job_ids"] = order
        stmt = _claim_by_ids_statement(is_pg)
    jobs: list[Job] = list((await session.scalars(stmt, params)).all())
    if not jobs:
        return []
    if order is None:
        jobs.sort(key=lambda j: (-j.priority, j.created_at, j.id))
    else:
        rank = {job_id: n for n, job_id in enumerate(order)}
        jobs.sort(key=lambda j: rank[j.id])
    await _claimed(session, jobs, now, is_pg)
    return jobs


def _candidates(is_pg: bool, kinds: Any, now: Any, limit: int) -> Select[str, str, datetime]:
    """The first `limit` claimable jobs in claim order (`ix_jobs_claim`), locked on PostgreSQL."""
    queued = aliased(Job, name="candidate")  # not correlated with the UPDATE around the head's subquery
    query = (
        select(queued.id, queued.lora_name, queued.created_at)
        .where(
            queued.status == JobStatus.queued,
            queued.kind.in_(kinds),
            or_(queued.not_before.is_(None), queued.not_before <= now),
        )
        .order_by(queued.priority.desc(), queued.created_at, queued.id)
        .limit(limit)
    )
    return query.with_for_update(skip_locked=True) if is_pg else query


def _claim(is_pg: bool, *where: Any) -> Any:
    """UPDATE … SET running, held by this dispatcher … WHERE <where> AND still queued RETURNING the job.

    On PostgreSQL the `claimed` event is inserted by the same statement (a data-modifying CTE).
    """
    now = bindparam("claim_now", type_=UTCDateTime())
    claim = (
        update(Job)
        .where(*where, Job.status == JobStatus.queued)
        .values(
            status=JobStatus.running,
            claimed_by=bindparam("claim_worker", type_=String()),
            heartbeat_at=now,
            executor=bindparam("claim_executor", type_=String()),
            instance=bindparam("claim_instance", type_=String()),
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
        )
    )
    if not is_pg:
        return (
            claim.returning(Job)
            .options(lazyload(Job.images))  # not selectin: a queued job has no images (see claim_next)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    jobs = Job.metadata.tables[Job.__tablename__]
    claimed = claim.returning(*jobs.c).cte("claimed")
    data = literal({"status": "running"}, JSON)
    event = select(claimed.c.id, literal("claimed"), data, now)
    logged = insert(_EVENTS).from_select(["job_id", "type", "data", "created_at"], event).cte("logged")
    return (
        select(Job)
        .from_statement(select(claimed).add_cte(logged))
        .options(lazyload(Job.images))
        .execution_options(populate_existing=True)
    )


@functools.cache
def _claim_head_statement(is_pg: bool, affinity: bool) -> Any:
    """The head of the queue; with `affinity`, only if it uses the preferred LoRA or waited too long."""
    head = _window_statement(is_pg, 1)
    where = [Job.id == head.with_only_columns(head.selected_columns[0]).scalar_subquery()]
    if affinity:
        lora = bindparam("claim_lora", type_=String())
        cutoff = bindparam("claim_cutoff", type_=UTCDateTime())
        where.append(or_(Job.lora_name == lora, Job.created_at <= cutoff))
    return _claim(is_pg, *where)


@functools.cache
def _claim_by_id_statement(is_pg: bool) -> Any:
    return _claim(is_pg, Job.id == bindparam("claim_job_id", type_=String()))


@functools.cache
def _window_statement(is_pg: bool, limit: int) -> Any:
    """`_candidates` with bind parameters (`claim_kinds`, `claim_now`), built once per size."""
    now = bindparam("claim_now", type_=UTCDateTime())
    return _candidates(is_pg, bindparam("claim_kinds", expanding=True), now, limit)


@functools.cache
def _claim_by_ids_statement(is_pg: bool) -> Any:
    return _claim(is_pg, Job.id.in_(bindparam("claim_job_ids", expanding=True)))


@functools.cache
def _claim_head_many_statement(is_pg: bool) -> Any:
    """The first `claim_limit` jobs of the queue."""
    head = _window_statement(is_pg, 1).limit(bindparam("claim_limit", type_=Integer()))
    ids = head.with_only_columns(head.selected_columns[0])
    if is_pg:
        # Computed once: as a plain `IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` PostgreSQL may run
        # the subquery again while the UPDATE proceeds and claim more than n jobs.
        heads = ids.cte("heads").prefix_with("MATERIALIZED")
        return _claim(is_pg, Job.id.in_(select(heads.c.id)))
    return _claim(is_pg, Job.id.in_(ids))


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
    session: AsyncSession, job_id: str, worker_id: str, *, graph: dict[str, Any], external: dict[str, Any]
) -> Job | None:
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
    if job is not None:
        add_event(session, job_id, "submitted", {"status": "running", "attempt": job.attempts})
    return job


async def mark_started(session: AsyncSession, job_id: str, worker_id: str) -> bool:
    job = await _update_held(session, job_id, worker_id, heartbeat_at=utcnow())
    if job is not None:
        add_event(session, job_id, "started", {"status": "running"})
    return job is not None


async def record_progress(
    session: AsyncSession, job_id: str, worker_id: str, value: int, maximum: int
) -> bool:
    job = await _update_held(
        session, job_id, worker_id, progress_value=value, progress_max=maximum, heartbeat_at=utcnow()
    )
    if job is not None:
        add_event(session, job_id, "progress", {"value": value, "max": maximum})
    return job is not None


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


async def cancel_flags(session: AsyncSession, job_ids: Sequence[str]) -> set[str]:
    if not job_ids:
        return set()
    rows = await session.scalars(
        select(Job.id).where(Job.id.in_(list(job_ids)), Job.cancel_requested.is_(True))
    )
    return set(rows)


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
    add_event(
        session,
        job_id,
        "succeeded",
        {
            "status": "succeeded",
            "images": [{"id": i.id, "width": i.width, "height": i.height} for i in images],
        },
    )
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
    return job


async def mark_cancelled(session: AsyncSession, job_id: str, worker_id: str) -> Job | None:
    job = await _update_held(
        session, job_id, worker_id, status=JobStatus.cancelled, finished_at=utcnow(), claimed_by=None
    )
    if job is not None:
        add_event(session, job_id, "cancelled", {"status": "cancelled"})
    return job


async def release(
    session: AsyncSession, job_id: str, worker_id: str, *, reason: str, delay_s: float = 0.0
) -> Job | None:
    """Back to the queue (the prompt is known not to be in ComfyUI), after an optional back-off."""
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
        progress_value=0,
        progress_max=0,
    )
    if job is not None:
        add_event(session, job_id, "requeued", {"status": "queued", "reason": reason}, queued_kind=job.kind)
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


async def count_claimable(session: AsyncSession, kinds: Sequence[str]) -> dict[str, int]:
    """Queued jobs that could be claimed now, per kind (the overflow routing's backlog)."""
    now = utcnow()
    rows = await session.execute(
        select(Job.kind, func.count())
        .where(
            Job.status == JobStatus.queued,
            Job.kind.in_(list(kinds)),
            or_(Job.not_before.is_(None), Job.not_before <= now),
        )
        .group_by(Job.kind)
    )
    return {str(kind): int(n) for kind, n in rows.all()}


async def thumbnails_ready(session: AsyncSession, image_ids: Sequence[str]) -> None:
    """The thumbnails of these images are stored (made after their job succeeded)."""
    await session.execute(update(Image).where(Image.id.in_(image_ids)).values(thumb_ready=True))
