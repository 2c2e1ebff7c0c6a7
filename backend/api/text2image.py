"""The drop-in `{DROPIN_PREFIX}/text2image`: the widely copied serverless Stable Diffusion API (API
Gateway + Lambda) and SageMaker JumpStart's text-to-image payload, answered by this studio.

A render goes through the job queue like any other (`jobs.start_job`, `Idempotency-Key` included, so
a client retrying after a timeout never renders twice); the request then waits for it, at most
DROPIN_WAIT_S (under the 29 s API gateways allow). Past that the answer is 202 with the job's
`Location`; a failed render is an error status with the error shape, never 200.
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image as PILImage
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.api.deps import (
    AvailabilityDep,
    CurrentDesigner,
    EngineDep,
    EventHubDep,
    ManifestDep,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from backend.api.image_links import image_url, storage_keys
from backend.api.jobs import IdempotencyKey, start_job
from backend.auth import Principal
from backend.availability import Availability
from backend.config import Settings
from backend.errors import AppError, Conflict
from backend.events import EventHub
from backend.job_wait import JobRead, wait_for_end
from backend.models import JobStatus
from backend.schemas import MAX_SEED, PROMPT_PATTERN, STYLE_PATTERN, JobCreate, Negative, Prompt, Side
from backend.storage import Storage
from contract.styles import Manifest

router = APIRouter(tags=["drop-in"])
JPEG_ACCEPT = "application/json;jpeg"
RETRY_AFTER_S = 5
JPEG_QUALITY = 90
STYLE = Field("none", pattern=STYLE_PATTERN, description="a style id from /api/styles")
M = TypeVar("M", bound=BaseModel)
RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "still rendering after DROPIN_WAIT_S: follow `Location` (the job)"},
    401: {"description": "missing or invalid token"},
    409: {"description": "cancelled, Idempotency-Key reused with a different body, or no server"},
    422: {"description": "invalid request (details per field)"},
    429: {"description": "too many active jobs (Retry-After)"},
    502: {"description": "the render failed"},
}


class RenderFailed(AppError):
    """The render failed."""

    status_code = 502
    code = "render_failed"


class DropInRequest(BaseModel):
    """The serverless Stable Diffusion API's body."""

    model_config = ConfigDict(extra="forbid")

    text: Prompt
    negative: Negative = ""
    style: str = STYLE
    width: Side = 768
    height: Side = 512
    steps: int = Field(25, ge=1, le=100)
    guidance: float = Field(7.0, ge=1.0, le=20.0)
    num_images: int = Field(1, ge=1, le=4)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)

    def job(self) -> JobCreate:
        return _validate(
            JobCreate,
            {"prompt": self.text, "negative_prompt": self.negative, "cfg": self.guidance}
            | self.model_dump(include={"style", "width", "height", "steps", "num_images", "seed"}),
        )


class JumpStartRequest(BaseModel):
    """SageMaker JumpStart's text-to-image payload."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompt
    negative_prompt: Negative = ""
    width: Side = 768
    height: Side = 512
    num_images_per_prompt: int = Field(1, ge=1, le=4)
    num_inference_steps: int = Field(25, ge=1, le=100)
    guidance_scale: float = Field(7.0, ge=1.0, le=20.0)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)

    def job(self) -> JobCreate:
        return _validate(
            JobCreate,
            {
                "prompt": self.prompt,
                "negative_prompt": self.negative_prompt,
                "width": self.width,
                "height": self.height,
                "num_images": self.num_images_per_prompt,
                "steps": self.num_inference_steps,
                "cfg": self.guidance_scale,
                "seed": self.seed,
            },
        )


def _parse(payload: dict[str, Any]) -> DropInRequest | JumpStartRequest:
    """JumpStart's payload is the one with `prompt` and no `text`."""
    if "prompt" in payload and "text" not in payload:
        return _validate(JumpStartRequest, payload)
    return _validate(DropInRequest, payload)


def _validate(model: type[M], payload: dict[str, Any]) -> M:
    """`payload` as `model`, or the API's 422 naming each field."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _wants_jpeg(accept: str | None) -> bool:
    return JPEG_ACCEPT in (accept or "").replace(" ", "").lower()


def _still_running(row: Any) -> dict[str, str]:
    """The headers of a 202: where the job is, and when to look again."""
    return {"Location": f"/api/jobs/{row.id}", "Retry-After": str(RETRY_AFTER_S)}


def _check_ended_well(row: Any) -> None:
    if row.status == JobStatus.failed:
        raise RenderFailed(
            f"The render failed: {row.error_message or row.error_code}",
            code="render_failed",
            details=[{"field": "job", "message": f"job {row.id}: {row.error_code}"}],
            headers={"Location": f"/api/jobs/{row.id}"},
        )
    if row.status == JobStatus.cancelled:
        raise Conflict(f"The render (job {row.id}) was cancelled.", code="job_cancelled")


@dataclass(frozen=True)
class Renderer:
    """What one drop-in request needs to queue a render, wait for it and show its images."""

    settings: Settings
    engine: AsyncEngine
    manifest: Manifest
    session: AsyncSession
    designer: Principal
    availability: Availability
    hub: EventHub
    storage: Storage

    async def render(self, job: JobCreate, idempotency_key: str | None) -> JobRead:
        out = await start_job(
            job,
            self.settings,
            self.engine,
            self.manifest,
            self.session,
            self.designer,
            self.availability,
            idempotency_key,
        )
        return await wait_for_end(self.hub, self.engine, out.id, self.settings.dropin_wait_s)

    async def urls(self, request: Request, read: JobRead) -> list[str]:
        ids = [image.id for image in read[1]]
        keys = await storage_keys(self.engine, ids)
        base = str(request.base_url)
        return [await image_url(self.settings, self.storage, base, i, keys[i]) for i in ids]

    async def jpegs(self, read: JobRead) -> list[str]:
        keys = await storage_keys(self.engine, [image.id for image in read[1]])
        pngs = [await self.storage.load(keys[image.id]) for image in read[1]]
        return [await asyncio.to_thread(_to_jpeg, png) for png in pngs]


def _to_jpeg(png: bytes) -> str:
    with PILImage.open(io.BytesIO(png)) as img:
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY)
    return base64.b64encode(out.getvalue()).decode()


def _body_schema() -> dict[str, Any]:
    """The request body as OpenAPI shows it: either payload (the route reads a plain object to tell them
    apart by their fields, which gives clearer errors than a union would)."""
    variants = [DropInRequest.model_json_schema(), JumpStartRequest.model_json_schema()]
    schema = {"oneOf": [{**v, "title": v.get("description", "")} for v in variants]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/text2image",
    openapi_extra=_body_schema(),
    responses={200: {"description": "`{statusCode: 200, body: <image URL>}`, or JumpStart's"}, **RESPONSES},
    summary="Drop-in text-to-image (serverless Stable Diffusion API, SageMaker JumpStart)",
)
async def text2image(
    request: Request,
    payload: Annotated[dict[str, Any], Body()],
    settings: SettingsDep,
    engine: EngineDep,
    manifest: ManifestDep,
    session: SessionDep,
    designer: CurrentDesigner,
    availability: AvailabilityDep,
    hub: EventHubDep,
    storage: StorageDep,
    accept: Annotated[str | None, Header()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """`{"text": ...}` answers `{"statusCode": 200, "body": "<image URL>"}` (a URL that works without a
    token, until it expires). JumpStart's payload (`prompt`, ...) with `Accept: application/json;jpeg`
    answers `{"generated_images": [<base64 JPEG>...], "prompt": ...}`."""
    body = _parse(payload)
    renderer = Renderer(settings, engine, manifest, session, designer, availability, hub, storage)
    read = await renderer.render(body.job(), idempotency_key)
    row = read[0]
    if row.status not in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled):
        content = {"job_id": row.id, "status": row.status, "location": f"/api/jobs/{row.id}"}
        return JSONResponse(content, 202, headers=_still_running(row))
    _check_ended_well(row)
    if isinstance(body, JumpStartRequest) and _wants_jpeg(accept):
        images = await renderer.jpegs(read)
        return JSONResponse({"generated_images": images, "prompt": body.prompt})
    urls = await renderer.urls(request, read)
    return JSONResponse({"statusCode": 200, "body": urls[0], "images": urls})


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>{content}</body></html>
"""


def _page(
    title: str, content: str, status_code: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), content=content), status_code, headers)


@router.get(
    "/text2image",
    response_class=HTMLResponse,
    responses={200: {"description": "an HTML page showing the render"}, **RESPONSES},
    summary="Drop-in text-to-image as a page",
)
async def text2image_page(
    request: Request,
    prompt: Annotated[
        str, Query(min_length=1, max_length=2000, json_schema_extra={"pattern": PROMPT_PATTERN})
    ],
    settings: SettingsDep,
    engine: EngineDep,
    manifest: ManifestDep,
    session: SessionDep,
    designer: CurrentDesigner,
    availability: AvailabilityDep,
    hub: EventHubDep,
    storage: StorageDep,
    style: Annotated[str, Query(pattern=STYLE_PATTERN)] = "none",
    seed: Annotated[int | None, Query(ge=0, le=MAX_SEED)] = None,
    idempotency_key: IdempotencyKey = None,
) -> HTMLResponse:
    """The page the serverless API's GET answered, with the prompt escaped (that one injected it raw)."""
    body = _validate(DropInRequest, {"text": prompt, "style": style, "seed": seed})
    renderer = Renderer(settings, engine, manifest, session, designer, availability, hub, storage)
    read = await renderer.render(body.job(), idempotency_key)
    row, text = read[0], html.escape(body.text)
    if row.status not in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled):
        link = html.escape(f"/api/jobs/{row.id}")
        content = f'<p>{text}</p><p>Still rendering: <a href="{link}">job {html.escape(row.id)}</a>.</p>'
        return _page("Rendering", content, 202, _still_running(row))
    _check_ended_well(row)
    urls = await renderer.urls(request, read)
    images = "".join(f'<img src="{html.escape(url)}" alt="{text}">' for url in urls)
    return _page("Render", f"<p>{text}</p>{images}")
