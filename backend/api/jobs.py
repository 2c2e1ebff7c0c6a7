"""Jobs: create (idempotent), list (cursor pages), get, cancel, retry. Validation, then `job_queue`."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Response
from pydantic import Discriminator, StringConstraints, Tag
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import lazyload

from backend import job_queries, job_queue, job_wait, projects, template_jobs
from backend.api import job_reads
from backend.api.common import CURSOR_PATTERN, decode_cursor, encode_cursor, job_out, job_view
from backend.api.deps import (
    AvailabilityDep,
    CurrentDesigner,
    EngineDep,
    EventHubDep,
    ManifestDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
)
from backend.api.webhooks import checked_webhook_url
from backend.auth import Principal
from backend.availability import Availability
from backend.config import Settings
from backend.db import reading, single_reads, writing
from backend.errors import Conflict, InvalidInput, NotFound, RateLimited
from backend.models import Job, JobStatus, Upload
from backend.schemas import ID_PATTERN, MAX_SEED, Day, JobCreate, JobOut, JobPage, RetryRequest, is_entity_id
from backend.template_jobs import RunnableVersion
from backend.template_schemas import NAME_PATTERN, TemplateJobCreate
from contract.styles import Manifest

router = APIRouter(prefix="/api", tags=["jobs"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    404: {"description": "no such job, or no such upload (upload_id), for this designer"},
    422: {"description": "invalid request (details per field)"},
    429: {"description": "too many active jobs (Retry-After)"},
}
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=200, pattern=r"^[\x21-\x7e]+$")
]


def _body_kind(value: Any) -> str:
    """A body naming a `template` is a template job; any other is the legacy text/sketch body."""
    has_template = isinstance(value, dict) and "template" in value
    return "template_body" if has_template or isinstance(value, TemplateJobCreate) else "legacy_body"


# The tags are left out of error field paths (`errors.UNION_TAGS`): `prompt`, `inputs.steps`.
JobBody = Annotated[
    Annotated[JobCreate, Tag("legacy_body")] | Annotated[TemplateJobCreate, Tag("template_body")],
    Discriminator(_body_kind),
    Body(description="the legacy body (kind text|sketch + params) or a template's (template + inputs)"),
]
Prefer = Annotated[
    str | None,
    Header(alias="Prefer", max_length=200, description="`wait=N`: answer when the job ended or N s passed"),
]


async def get_job(session: AsyncSession, designer: Principal, job_id: str) -> Job:
    """The designer's job, or 404 (someone else's job is a 404 too: nothing leaks).

    Its images are not loaded here: `job_view` loads them only for a succeeded job (none has any other)."""
    job = await session.get(Job, job_id, options=[lazyload(Job.images)]) if is_entity_id(job_id) else None
    if job is None or job.designer_id != designer.id:
        raise _not_found(job_id)
    return job


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"No job {job_id!r}.", code="job_not_found")


def _check_style(manifest: Manifest, style: str) -> None:
    if style not in manifest.styles:
        names = ", ".join(manifest.ids)
        raise InvalidInput(
            f"style must be one of {names}",
            code="invalid_style",
            details=[{"field": "style", "message": f"unknown style {style!r}"}],
        )


def _build_job(
    manifest: Manifest,
    designer: Principal,
    params: dict[str, Any],
    builtin: RunnableVersion,
    uploads: dict[str, Upload],
    *,
    idempotency_key: str | None = None,
    retry_of: str | None = None,
) -> Job:
    """A legacy body's job: the built-in template of its kind, the params as its input values (already
    validated by `JobCreate`), the filled graph stored on it (nothing is written yet)."""
    _check_style(manifest, params["style"])
    seed = params["seed"] if params.get("seed") is not None else secrets.randbelow(MAX_SEED + 1)
    shown = {**params, "seed": seed}
    values = template_jobs.legacy_values(shown)
    job = template_jobs.build(builtin, designer, values, uploads, manifest, params=shown, retry_of=retry_of)
    job.params_hash = job_queue.params_hash(params)
    job.idempotency_key = idempotency_key
    return job


async def _legacy_job(
    session: AsyncSession,
    manifest: Manifest,
    designer: Principal,
    params: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    retry_of: str | None = None,
    version_id: str | None = None,
) -> Job:
    """A legacy body's job on the built-in's current version (or `version_id`: render again pins it)."""
    _check_style(manifest, params["style"])
    builtin = await template_jobs.load_version(session, version_id) if version_id else None
    if builtin is None:
        builtin = await template_jobs.resolve(session, params["kind"], None, pinned=True)
    # A 404 like the upload's own URL answers when it is not the designer's: the body is well formed.
    uploads = await template_jobs.image_uploads(session, designer, builtin, params)
    return _build_job(
        manifest, designer, params, builtin, uploads, idempotency_key=idempotency_key, retry_of=retry_of
    )


async def _template_job(
    session: AsyncSession,
    manifest: Manifest,
    designer: Principal,
    version: RunnableVersion,
    values: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    retry_of: str | None = None,
) -> Job:
    """A template body's job: values validated by the version's model, uploads and style checked."""
    values = template_jobs.validated_inputs(version, values, manifest.ids)
    style = template_jobs.style_of(version, values)
    _check_style(manifest, style)
    uploads = await template_jobs.image_uploads(session, designer, version, values)
    return template_jobs.build(
        version, designer, values, uploads, manifest, idempotency_key=idempotency_key, retry_of=retry_of
    )


def max_active_jobs(settings: Settings, designer: Principal) -> int:
    """The designer's cap on queued and running renders: an admin's quota, or the deployment's."""
    return designer.max_active_jobs or settings.max_active_jobs_per_designer


async def _store(
    settings: Settings, engine: AsyncEngine, session: AsyncSession, job: Job, max_active: int
) -> JobOut:
    """Write the job (two INSERTs: on SQLite the write lock is held for those only), then show it.

    The per-designer cap is checked by the second INSERT (`job_queue.enqueue_ranked`). It counts the
    queue position too on PostgreSQL; on SQLite that count (as long as the queue) would hold the write
    lock other processes wait for, so it is one statement after the commit, outside any transaction.
    """
    async with writing(session):
        position = await job_queue.enqueue_ranked(
            session, job, max_active=max_active, rank=not settings.is_sqlite
        )
        if position is None:
            raise RateLimited(
                f"You already have {max_active} renders queued or running; wait for some to finish.",
                headers={"Retry-After": "10"},
                code="too_many_active_jobs",
            )
    if settings.is_sqlite:
        async with single_reads(engine) as conn:
            position = await job_queries.queue_position(conn, job)
    return job_out(job, position, template_version=template_jobs.number_of(job.template_version_id))


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobOut,
    responses={
        **ERRORS,
        409: {"description": "Idempotency-Key reused with a different body, or no server can render it"},
    },
    summary="Start a render",
)
async def create_job(
    body: JobBody,
    settings: SettingsDep,
    engine: EngineDep,
    manifest: ManifestDep,
    session: SessionDep,
    designer: CurrentDesigner,
    availability: AvailabilityDep,
    hub: EventHubDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    prefer: Prefer = None,
) -> JobOut:
    """Queue a render: a template's (`template`, `version` (default: current), `inputs` by key; a
    retired template is a 409 `template_retired`, an unknown one a 404) or the legacy body, which runs
    the built-in `text` or `sketch` template. With `Idempotency-Key`, a retried POST returns
    the job the first one created (and a different body with the same key is a 409). A style whose
    files no ComfyUI server of that kind has is a 409 `style_unavailable` (or `models_missing`); a
    `webhook_url` gets the job's end, signed (see `GET /api/jobs/{id}/webhooks`).
    With `Prefer: wait=N` (RFC 7240) the answer comes when the job has ended or N seconds (at most
    PREFER_WAIT_MAX_S) have passed, with `Preference-Applied`."""
    job = await start_job(body, settings, engine, manifest, session, designer, availability, idempotency_key)
    wait_s = job_wait.prefer_wait(prefer)
    if wait_s is None:
        return job
    wait_s = min(wait_s, int(settings.prefer_wait_max_s))
    response.headers["Preference-Applied"] = f"wait={wait_s}"
    row, images = await job_wait.wait_for_end(hub, engine, job.id, wait_s)
    return availability.annotate(job_out(row, row.queue_position, images))


async def start_job(
    body: JobCreate | TemplateJobCreate,
    settings: Settings,
    engine: AsyncEngine,
    manifest: Manifest,
    session: AsyncSession,
    designer: Principal,
    availability: Availability,
    idempotency_key: str | None,
) -> JobOut:
    """Create the job (or find the one an earlier request with `idempotency_key` created) and show it."""
    params = body.model_dump(exclude={"webhook_url"})
    if isinstance(body, TemplateJobCreate) and body.version is None:
        params.pop("version")
    # The webhook is not a render setting, but a retried POST must name the same one.
    request = {**params, "webhook_url": body.webhook_url} if body.webhook_url else params
    if idempotency_key:
        existing = await _by_idempotency_key(session, designer, idempotency_key, request)
        if existing is not None:
            return existing
    if isinstance(body, TemplateJobCreate):
        version = await template_jobs.resolve(session, body.template, body.version)
        job = await _template_job(
            session, manifest, designer, version, body.inputs, idempotency_key=idempotency_key
        )
    else:
        job = await _legacy_job(session, manifest, designer, params, idempotency_key=idempotency_key)
    job.webhook_url = await checked_webhook_url(settings, body.webhook_url)
    job.params_hash = job_queue.params_hash(request)
    if job.lane in availability_kinds():
        await availability.require(job.lane, job.style)
    try:
        return availability.annotate(
            await _store(settings, engine, session, job, max_active_jobs(settings, designer))
        )
    except IntegrityError:
        if not idempotency_key:
            raise
        await session.rollback()
        existing = await _by_idempotency_key(session, designer, idempotency_key, request)
        if existing is None:
            raise
        return existing


async def _by_idempotency_key(
    session: SessionDep, designer: Principal, key: str, params: dict[str, Any]
) -> JobOut | None:
    """The job an earlier POST with this key created, as the API shows it; 409 if the body differs."""
    async with reading(session):
        job = await session.scalar(
            select(Job)
            .where(Job.designer_id == designer.id, Job.idempotency_key == key)
            .options(lazyload(Job.images))
        )
        if job is None:
            return None
        if job.params_hash != job_queue.params_hash(params):
            raise Conflict(
                "This Idempotency-Key was already used with a different request.",
                code="idempotency_key_reused",
            )
        return await job_view(session, job)


@router.get("/jobs", response_model=JobPage, responses=ERRORS, summary="The designer's jobs, newest first")
async def list_jobs(
    session: ReadSessionDep,
    designer: CurrentDesigner,
    availability: AvailabilityDep,
    status: Annotated[
        list[Literal["queued", "running", "succeeded", "failed", "cancelled"]] | None, Query()
    ] = None,
    style: Annotated[str | None, Query(max_length=32)] = None,
    kind: Annotated[
        list[Annotated[str, StringConstraints(pattern=NAME_PATTERN)]] | None,
        Query(description="made by these templates (text, sketch, product, restyle, stage, edit, …)"),
    ] = None,
    created_from: Annotated[Day | None, Query(description="first day (UTC), inclusive")] = None,
    created_to: Annotated[Day | None, Query(description="last day (UTC), inclusive")] = None,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="a `next_cursor` this API returned")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    project: Annotated[str | None, Query(pattern=ID_PATTERN, description="filed in this project")] = None,
    favourite: Annotated[bool | None, Query(description="marked as a favourite (or not)")] = None,
) -> JobPage:
    query = projects.filter_jobs(select(Job).where(Job.designer_id == designer.id), project, favourite)
    if status:
        query = query.where(Job.status.in_(status))
    if style:
        query = query.where(Job.style == style)
    if kind:
        query = query.where(Job.kind.in_(kind))
    if created_from:
        query = query.where(Job.created_at >= datetime.combine(created_from, time.min, UTC))
    if created_to:
        query = query.where(Job.created_at < datetime.combine(created_to + timedelta(days=1), time.min, UTC))
    if cursor:
        created_at, job_id = decode_cursor(cursor)
        query = query.where(tuple_(Job.created_at, Job.id) < (created_at, job_id))
    jobs = list(
        (await session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))).all()
    )
    more = len(jobs) > limit
    jobs = jobs[:limit]
    items = [availability.annotate(await job_view(session, j)) for j in jobs]
    items = await projects.with_organisation(session, items)
    return JobPage(items=items, next_cursor=encode_cursor(jobs[-1].created_at, jobs[-1].id) if more else None)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERRORS, summary="One job")
async def read_job(
    job_id: str, engine: EngineDep, designer: CurrentDesigner, availability: AvailabilityDep
) -> JobOut:
    found = await job_reads.read_job(engine, job_id) if is_entity_id(job_id) else None
    if found is None or found[0].designer_id != designer.id:
        raise _not_found(job_id)  # someone else's job too, as in get_job
    row, images = found
    return availability.annotate(job_out(row, row.queue_position, images))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses={**ERRORS, 409: {"description": "already ended"}},
    summary="Cancel a job",
)
async def cancel_job(job_id: str, session: SessionDep, designer: CurrentDesigner) -> JobOut:
    """Queued: cancelled at once. Running: interrupted in ComfyUI (status turns `cancelled` shortly)."""
    async with session.begin():
        job = await get_job(session, designer, job_id)
        if job_queue.is_final(job.status):
            if job.status == JobStatus.cancelled:
                return await job_view(session, job)
            raise Conflict(f"The job already {job.status}.", code="job_already_ended")
        job = await job_queue.request_cancel(session, job)
        if job_queue.is_final(job.status) and job.status != JobStatus.cancelled:
            raise Conflict(f"The job already {job.status}.", code="job_already_ended")
        return await job_view(session, job)


@router.post(
    "/jobs/{job_id}/retry",
    status_code=201,
    response_model=JobOut,
    responses={**ERRORS, 409: {"description": "no server can render it now"}},
    summary="Render again with the same settings",
)
async def retry_job(
    job_id: str,
    settings: SettingsDep,
    engine: EngineDep,
    manifest: ManifestDep,
    session: SessionDep,
    designer: CurrentDesigner,
    availability: AvailabilityDep,
    body: RetryRequest | None = None,
) -> JobOut:
    """A new job with the same parameters (and seed, unless `new_seed`)."""
    async with reading(session):
        original = await get_job(session, designer, job_id)
    params = dict(original.params)
    new_seed = body is not None and body.new_seed
    version = (
        await template_jobs.load_version(session, original.template_version_id)
        if original.template_version_id
        else None
    )
    if version is None or version.name in availability_kinds():
        # A built-in's job (or one older than templates): its params are the legacy body's.
        if new_seed:
            params["seed"] = None
        version_id = version.version_id if version is not None else None
        job = await _legacy_job(
            session, manifest, designer, params, retry_of=original.id, version_id=version_id
        )
    else:
        key = template_jobs.seed_key(version)
        if new_seed and key is not None:
            params[key] = None
        job = await _template_job(session, manifest, designer, version, params, retry_of=original.id)
    job.webhook_url = original.webhook_url
    if job.lane in availability_kinds():
        await availability.require(job.lane, job.style)
    return availability.annotate(
        await _store(settings, engine, session, job, max_active_jobs(settings, designer))
    )


def availability_kinds() -> tuple[str, ...]:
    """The built-ins' lanes, which the availability check knows the files of."""
    return ("text", "sketch")
