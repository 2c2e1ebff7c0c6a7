"""Read-only questions about the queue: a job's position, a designer's active jobs, cancel flags.

Nothing here writes; the state machine (`job_queue`) and the claims (`claims`) own every change.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, Select, String, and_, bindparam, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from backend.models import Job, JobStatus, TemplateVersion, UTCDateTime

ACTIVE = (JobStatus.queued, JobStatus.running)
# template_versions.id -> its number: a version never changes, so every process may keep what it read.
_VERSION_NUMBERS: dict[str, int] = {}


async def queue_position(session: AsyncSession | AsyncConnection, job: Job) -> int | None:
    """1 = next to be claimed for its kind; None once the job left the queue."""
    if job.status != JobStatus.queued:
        return None
    params = {
        "pos_kind": job.lane,
        "pos_priority": job.priority,
        "pos_created": job.created_at,
        "pos_id": job.id,
    }
    ahead = await session.scalar(position_statement(), params)
    return int(ahead or 0) + 1


@functools.cache
def position_statement() -> Select[int]:
    """Queued jobs of a kind ahead of one (`ix_jobs_queue` covers it), built once."""
    priority = bindparam("pos_priority", type_=Integer())
    created = bindparam("pos_created", type_=UTCDateTime())
    return (
        select(func.count())
        .select_from(Job)
        .where(
            Job.status == JobStatus.queued,
            Job.lane == bindparam("pos_kind", type_=String()),
            or_(
                Job.priority > priority,
                and_(
                    Job.priority == priority,
                    tuple_(Job.created_at, Job.id) < tuple_(created, bindparam("pos_id", type_=String())),
                ),
            ),
        )
    )


def active_count(designer_id: Any) -> Select[int]:
    """The designer's jobs queued or running (`ix_jobs_designer_status`)."""
    return select(func.count()).select_from(Job).where(Job.designer_id == designer_id, Job.status.in_(ACTIVE))


async def active_jobs(session: AsyncSession, designer_id: str) -> int:
    n = await session.scalar(active_count(designer_id))
    return int(n or 0)


async def cancel_flags(session: AsyncSession, job_ids: Sequence[str]) -> set[str]:
    if not job_ids:
        return set()
    rows = await session.scalars(
        select(Job.id).where(Job.id.in_(list(job_ids)), Job.cancel_requested.is_(True))
    )
    return set(rows)


async def template_version_number(session: AsyncSession, version_id: str | None) -> int | None:
    """The number of a template version (None for a job older than templates)."""
    if version_id is None:
        return None
    number = _VERSION_NUMBERS.get(version_id)
    if number is None:
        number = await session.scalar(select(TemplateVersion.version).where(TemplateVersion.id == version_id))
        if number is not None:
            _VERSION_NUMBERS[version_id] = number
    return number
