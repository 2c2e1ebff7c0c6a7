"""Model → response conversions and small helpers shared by the routers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from backend import job_queries
from backend.models import Image, Job, JobStatus
from backend.schemas import ErrorInfo, ImageOut, JobOut, PassOut, Progress, TemplateRef


def image_out(image: Image | Row[Any]) -> ImageOut:
    return ImageOut(
        id=image.id,
        index=image.index,
        width=image.width,
        height=image.height,
        seed=image.seed,
        size_bytes=image.size_bytes,
        url=f"/api/images/{image.id}",
        thumbnail_url=f"/api/images/{image.id}/thumbnail",
    )


def pass_out(image: Image | Row[Any]) -> PassOut:
    return PassOut(
        id=image.id,
        node_id=image.node_id,
        label=image.label,
        width=image.width,
        height=image.height,
        url=f"/api/images/{image.id}",
        thumbnail_url=f"/api/images/{image.id}/thumbnail",
    )


def job_out(
    job: Job | Row[Any],
    queue_position: int | None = None,
    images: Sequence[Image | Row[Any]] | None = None,
    template_version: int | None = None,
) -> JobOut:
    """`job` is a `Job`, or a row of its columns (`api.job_reads`, with `template_version`) with its
    `images` rows beside it. Images of role `pass` are shown apart from the renders."""
    error = ErrorInfo(code=job.error_code, message=job.error_message or "") if job.error_code else None
    every = job.images if images is None else images
    version = getattr(job, "template_version", None) if template_version is None else template_version
    out = JobOut(
        id=job.id,
        status=job.status,
        kind=job.kind,
        style=job.style,
        params=job.params,
        seed=job.seed,
        queue_position=queue_position,
        progress=Progress(value=job.progress_value, max=job.progress_max),
        error=error,
        images=[image_out(i) for i in every if getattr(i, "role", "result") != "pass"],
        passes=[pass_out(i) for i in every if getattr(i, "role", "result") == "pass"],
        template=TemplateRef(name=job.kind, version=version),
        attempts=job.attempts,
        retry_of=job.retry_of,
        cancel_requested=job.cancel_requested,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        events_url=f"/api/jobs/{job.id}/events",
    )
    out._lane = job.lane
    return out


async def load_images(session: AsyncSession, job: Job) -> None:
    """Make `job.images` readable: only a succeeded job has images (`job_queue.finish` stores them with
    that status), so any other job's are known to be empty without a query."""
    if "images" not in inspect(job).unloaded:
        return
    if job.status == JobStatus.succeeded:
        await session.refresh(job, attribute_names=["images"])
    else:
        set_committed_value(job, "images", [])


async def job_view(session: AsyncSession, job: Job) -> JobOut:
    """The job as the API shows it (images loaded, queue position computed) inside the open transaction."""
    await load_images(session, job)
    version = await job_queries.template_version_number(session, job.template_version_id)
    return job_out(job, await job_queries.queue_position(session, job), template_version=version)


CURSOR_PATTERN = r"^[0-9]{1,17}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(created_at: datetime, job_id: str) -> str:
    """`<microseconds since the epoch>_<job id>`: the list's position, in a form the OpenAPI document's
    pattern describes whole, so every cursor it allows is a place in the list (17 digits reach the
    year 5138, inside what a datetime holds)."""
    return f"{(created_at - _EPOCH) // timedelta(microseconds=1)}_{job_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The cursor's position; the route's pattern has already checked its form."""
    micros, job_id = cursor.split("_", 1)
    return _EPOCH + timedelta(microseconds=int(micros)), job_id
