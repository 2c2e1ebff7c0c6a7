"""GET /api/jobs/{id}'s read of one job: one statement for the job and its queue position, its images
only when it succeeded, on a bare connection.

Integrations poll job status, so this path is kept lean: no ORM session (no identity map, no unit of
work, no `Job` objects), only the columns the response shows (not the stored graph), and no
transaction of its own (`db.single_reads`): the job row and its position come from one statement,
so they agree; a succeeded job's images were committed with its status and never change.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, String, and_, bindparam, case, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.db import single_reads
from backend.models import Image, Job, JobStatus, TemplateVersion

_JOBS = Job.__table__
_IMAGES = Image.__table__
_VERSIONS = TemplateVersion.__table__
JOB_COLUMNS = (
    "id",
    "designer_id",
    "status",
    "kind",
    "lane",
    "style",
    "params",
    "seed",
    "priority",
    "progress_value",
    "progress_max",
    "error_code",
    "error_message",
    "attempts",
    "retry_of",
    "cancel_requested",
    "created_at",
    "started_at",
    "finished_at",
)
IMAGE_COLUMNS = ("id", "index", "width", "height", "seed", "size_bytes", "role", "node_id", "label")
_JOB_ID = bindparam("job_id", type_=String())


@functools.cache
def _job_statement() -> Select[Any]:
    """The job's shown columns and `queue_position` (queued jobs of its lane ahead of it, plus one; NULL
    unless queued): the same count as `job_queries.queue_position`, correlated instead of bound."""
    job = _JOBS.alias("job")
    ahead = _JOBS.alias("ahead")
    count = (
        select(func.count())
        .select_from(ahead)
        .where(
            ahead.c.status == JobStatus.queued,
            ahead.c.lane == job.c.lane,
            or_(
                ahead.c.priority > job.c.priority,
                and_(
                    ahead.c.priority == job.c.priority,
                    tuple_(ahead.c.created_at, ahead.c.id) < tuple_(job.c.created_at, job.c.id),
                ),
            ),
        )
        .scalar_subquery()
    )
    position = case((job.c.status == JobStatus.queued, count + 1), else_=None).label("queue_position")
    version = (
        select(_VERSIONS.c.version)
        .where(_VERSIONS.c.id == job.c.template_version_id)
        .scalar_subquery()
        .label("template_version")
    )
    return select(*(job.c[name] for name in JOB_COLUMNS), position, version).where(job.c.id == _JOB_ID)


@functools.cache
def _images_statement() -> Select[Any]:
    return (
        select(*(_IMAGES.c[name] for name in IMAGE_COLUMNS))
        .where(_IMAGES.c.job_id == _JOB_ID)
        .order_by(_IMAGES.c.index)
    )


async def job_row(conn: AsyncConnection, job_id: str) -> Row[Any] | None:
    row: Row[Any] | None = (await conn.execute(_job_statement(), {"job_id": job_id})).first()
    return row


async def image_rows(conn: AsyncConnection, job_id: str) -> Sequence[Row[Any]]:
    rows: Sequence[Row[Any]] = (await conn.execute(_images_statement(), {"job_id": job_id})).all()
    return rows


async def read_job(engine: AsyncEngine, job_id: str) -> tuple[Row[Any], Sequence[Row[Any]]] | None:
    """The job's row (with `queue_position`) and its images' rows, or None if there is no such job."""
    async with single_reads(engine) as conn:
        row = await job_row(conn, job_id)
        if row is None:
            return None
        images = await image_rows(conn, job_id) if row.status == JobStatus.succeeded else ()
        return row, images
