"""Claim scheduling: which queued job runs next, and where (LoRA affinity, the claim statements).

A claim moves queued jobs to running for one dispatcher in one conditional statement (SKIP LOCKED on
PostgreSQL, BEGIN IMMEDIATE on SQLite), writing their `claimed` events in the same transaction. This is
where the throughput work happens (bench figure 4), so the statements are built once and reused; every
other state change is `job_queue`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Integer, Select, String, bindparam, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from backend import notify
from backend.models import Job, JobEvent, JobStatus, UTCDateTime, utcnow

AFFINITY_WINDOW = 16  # queued jobs looked at when preferring the LoRA an instance has loaded
AFFINITY_MAX_WAIT_S = 20.0  # the head of the queue is never passed over once it waited this long
_EVENTS = JobEvent.metadata.tables[JobEvent.__tablename__]  # Core inserts: no ORM unit of work


def _is_pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def has_claimable(session: AsyncSession, lanes: Sequence[str]) -> bool:
    """A cheap read before a claim's write transaction (idle dispatchers poll this)."""
    now = utcnow()
    found = await session.scalar(
        select(Job.id)
        .where(
            Job.status == JobStatus.queued,
            Job.lane.in_(list(lanes)),
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
    lanes: Sequence[str],
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
    params = _claim_params(lanes, now, worker_id, executor, instance)
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
    lanes: Sequence[str], now: datetime, worker_id: str, executor: str, instance: str | None
) -> dict[str, Any]:
    """The bind parameters every claim statement shares."""
    return {
        "claim_lanes": list(lanes),
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
    lanes: Sequence[str],
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
            lanes=lanes,
            executor=executor,
            instance=instance,
            preferred_lora=preferred_lora,
        )
        return [] if job is None else [job]
    now = utcnow()
    params = _claim_params(lanes, now, worker_id, executor, instance)
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


def _candidates(is_pg: bool, lanes: Any, now: Any, limit: int) -> Select[str, str, datetime]:
    """The first `limit` claimable jobs in claim order (`ix_jobs_claim`), locked on PostgreSQL."""
    queued = aliased(Job, name="candidate")  # not correlated with the UPDATE around the head's subquery
    query = (
        select(queued.id, queued.lora_name, queued.created_at)
        .where(
            queued.status == JobStatus.queued,
            queued.lane.in_(lanes),
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
    """`_candidates` with bind parameters (`claim_lanes`, `claim_now`), built once per size."""
    now = bindparam("claim_now", type_=UTCDateTime())
    return _candidates(is_pg, bindparam("claim_lanes", expanding=True), now, limit)


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


async def count_claimable(session: AsyncSession, lanes: Sequence[str]) -> dict[str, int]:
    """Queued jobs that could be claimed now, per lane (the overflow routing's backlog)."""
    now = utcnow()
    rows = await session.execute(
        select(Job.lane, func.count())
        .where(
            Job.status == JobStatus.queued,
            Job.lane.in_(list(lanes)),
            or_(Job.not_before.is_(None), Job.not_before <= now),
        )
        .group_by(Job.lane)
    )
    return {str(lane): int(n) for lane, n in rows.all()}
