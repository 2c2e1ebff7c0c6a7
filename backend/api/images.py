"""Uploads in (checked, processed as their role says, stored) and results out (full-size PNG, thumbnails).

An upload's `role` (form field, default sketch) says what it is for: a sketch, a product photo (cut out of
its background at once: `backend.cutout`; adjusted by `api/cutouts.py`), a style photo, a composition or
a room photo (`backend.upload_roles`).

Local storage streams the file; S3 storage answers a redirect to a short-lived presigned URL.
Someone else's upload or image is a 404, like one that does not exist.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend import job_queue
from backend.api.deps import (
    CurrentDesigner,
    ReadSessionDep,
    SessionDep,
    SessionMakerDep,
    SettingsDep,
    StorageDep,
)
from backend.auth import Principal
from backend.cutout import CutoutUnavailable
from backend.db import SessionMaker, writing
from backend.errors import (
    AppError,
    InvalidInput,
    NotFound,
    RateLimited,
    TooLarge,
    Unavailable,
    UnsupportedMedia,
)
from backend.images import (
    ImageRejected,
    control_preview,
    cutout_preview,
    edges_preview,
    photo_preview,
    save_thumbnail,
)
from backend.models import Image, Upload, UploadRole, utcnow
from backend.schemas import CutoutOut, UploadOut, is_entity_id
from backend.storage import Storage, StorageError, content_key
from backend.upload_roles import Prepared, prepare

router = APIRouter(prefix="/api", tags=["images"])
ACCEPTED = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
ACCEPTED_TYPES = set(ACCEPTED)
# A part sent without a type of its own (curl -F without ;type=, many HTTP clients): its bytes decide, as
# they do for every upload (process_sketch refuses what is not PNG, JPEG or WebP with 415).
UNDECLARED_TYPES = {"", "application/octet-stream"}
READ_CHUNK = 1 << 20
REJECTION_ERRORS: dict[str, type[AppError]] = {
    "image_too_large": TooLarge,
    "not_an_image": UnsupportedMedia,
    "unsupported_image_format": UnsupportedMedia,
}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    404: {"description": "no such item for this designer"},
}
CUTOUT_RETRY_AFTER_S = 300  # model sync runs at the API's start; a missing model is an operator's fix


def rejected(exc: ImageRejected, field: str = "file") -> AppError:
    """An image refused by its checks, as the API answers it (the field named)."""
    cls = REJECTION_ERRORS.get(exc.code, InvalidInput)
    return cls(str(exc), code=exc.code, details=[{"field": field, "message": str(exc)}])


def unavailable(exc: CutoutUnavailable) -> AppError:
    return Unavailable(str(exc), code=exc.code, headers={"Retry-After": str(CUTOUT_RETRY_AFTER_S)})


def upload_out(upload: Upload) -> UploadOut:
    mask = upload.role == UploadRole.mask
    return UploadOut(
        id=upload.id,
        role=UploadRole(upload.role),
        width=upload.width,
        height=upload.height,
        size_bytes=upload.size_bytes,
        dark_lines=upload.dark_lines,
        created_at=upload.created_at,
        url=f"/api/uploads/{upload.id}/image",
        preview_url=f"/api/uploads/{upload.id}/preview",
        cutout=CutoutOut.model_validate(upload.cutout) if upload.cutout and not mask else None,
        derived_from=upload.derived_from,
        coverage=float(upload.cutout["coverage"]) if upload.cutout and mask else None,
    )


def _declared_type(file: UploadFile) -> str:
    return (file.content_type or "").split(";")[0].strip().lower()


async def _read_limited(file: UploadFile, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await file.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"The file is larger than {limit // (1024 * 1024)} MB.", code="upload_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def _check_upload_quota(session: SessionDep, designer: Principal, per_hour: int) -> None:
    since = utcnow() - timedelta(hours=1)
    count = await session.scalar(
        select(func.count())
        .select_from(Upload)
        # An adjusted cut-out is not an upload of the designer's: moving a slider never uses up the quota.
        .where(Upload.designer_id == designer.id, Upload.created_at > since, Upload.derived_from.is_(None))
    )
    if int(count or 0) >= per_hour:
        raise RateLimited(
            f"At most {per_hour} uploads an hour; try again later.",
            headers={"Retry-After": "600"},
            code="upload_quota_exceeded",
        )


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadOut,
    summary="Upload an image: a sketch, a product photo, a style photo, a composition or a room photo",
    responses={
        **ERRORS,
        413: {"description": "too large"},
        415: {"description": "not PNG/JPEG/WebP"},
        422: {"description": "corrupt or unusable image (no product found, a sketch as a style photo...)"},
        429: {"description": "upload quota"},
        503: {"description": "a product photo, and no background-removal model on this server"},
    },
    # The part's types, in the schema: a client (or a generator of test requests) learns what to send.
    openapi_extra={
        "requestBody": {
            "content": {"multipart/form-data": {"encoding": {"file": {"contentType": ", ".join(ACCEPTED)}}}}
        }
    },
)
async def create_upload(
    file: UploadFile,
    settings: SettingsDep,
    storage: StorageDep,
    session: SessionDep,
    designer: CurrentDesigner,
    request: Request,
    role: Annotated[UploadRole, Form(description="what the image is for")] = UploadRole.sketch,
) -> UploadOut:
    """PNG, JPEG, WebP or HEIC (phone photos); EXIF orientation applied, re-encoded as PNG. A sketch is
    flattened to greyscale; a mask is kept binary with its coverage; a product photo is cut out of its
    background (RGBA: see its preview on a checkerboard, adjust it with `POST /api/uploads/{id}/cutout`;
    a PNG with transparency is kept as cut out); the photos are RGB."""
    if (await request.form()).get(
        "role"
    ) == "":  # a form treats an empty field as absent; the schema does not
        raise InvalidInput(
            f"role must be one of {', '.join(UploadRole)} (or left out: sketch).",
            details=[{"field": "role", "message": "empty"}],
        )
    if _declared_type(file) not in ACCEPTED_TYPES | UNDECLARED_TYPES:
        raise UnsupportedMedia(
            f"Content type {file.content_type!r} is not accepted: send PNG, JPEG, WebP or HEIC.",
            code="unsupported_media_type",
        )
    data = await _read_limited(file, settings.upload_max_bytes)
    if not data:
        raise InvalidInput(
            "The file is empty.", code="empty_upload", details=[{"field": "file", "message": "empty"}]
        )
    try:
        prepared = await asyncio.to_thread(prepare, role, data, settings)
    except ImageRejected as exc:
        raise rejected(exc) from exc
    except CutoutUnavailable as exc:
        raise unavailable(exc) from exc
    quota = designer.max_uploads_per_hour or settings.max_uploads_per_hour
    name = (file.filename or "")[:200]
    return upload_out(await store_upload(session, storage, designer, role, prepared, name, quota=quota))


async def store_upload(
    session: AsyncSession,
    storage: Storage,
    designer: Principal,
    role: UploadRole,
    prepared: Prepared,
    original_name: str,
    *,
    quota: int | None = None,
    source_key: str | None = None,
    matte_key: str | None = None,
    derived_from: str | None = None,
) -> Upload:
    """Its files stored (content-named), then its row; the same image in the same role again is the
    upload already there. `quota`: uploads an hour the designer may make (None: not counted)."""
    if prepared.source_png:
        source_key, _ = content_key("uploads/sources", prepared.source_png, "png")
        await storage.save(source_key, prepared.source_png, "image/png")
    if prepared.matte_png:
        matte_key, _ = content_key("uploads/mattes", prepared.matte_png, "png")
        await storage.save(matte_key, prepared.matte_png, "image/png")
    key, digest = content_key("uploads", prepared.png, "png")
    await storage.save(key, prepared.png, "image/png")
    try:
        async with session.begin():
            existing = await _upload_by_digest(session, designer, role, digest)
            if existing is not None:
                return existing
            if quota is not None:
                await _check_upload_quota(session, designer, quota)
            upload = Upload(
                designer_id=designer.id,
                role=role,
                sha256=digest,
                storage_key=key,
                original_name=original_name,
                width=prepared.width,
                height=prepared.height,
                size_bytes=len(prepared.png),
                dark_lines=prepared.dark_lines,
                source_key=source_key,
                matte_key=matte_key,
                cutout=prepared.cutout,
                derived_from=derived_from,
            )
            session.add(upload)
    except IntegrityError:
        # The same image uploaded twice at once: the other request stored it first; answer with that one.
        async with session.begin():
            existing = await _upload_by_digest(session, designer, role, digest)
        if existing is None:
            raise
        return existing
    return upload


async def _upload_by_digest(
    session: AsyncSession, designer: Principal, role: UploadRole, digest: str
) -> Upload | None:
    upload: Upload | None = await session.scalar(
        select(Upload).where(Upload.designer_id == designer.id, Upload.role == role, Upload.sha256 == digest)
    )
    return upload


async def own_upload(session: AsyncSession, designer: Principal, upload_id: str) -> Upload:
    upload = await session.get(Upload, upload_id) if is_entity_id(upload_id) else None
    if upload is None or upload.designer_id != designer.id:
        raise NotFound(f"No upload {upload_id!r}.", code="upload_not_found")
    return upload


@router.get("/uploads/{upload_id}", response_model=UploadOut, responses=ERRORS, summary="One upload")
async def read_upload(upload_id: str, session: ReadSessionDep, designer: CurrentDesigner) -> UploadOut:
    return upload_out(await own_upload(session, designer, upload_id))


@router.get(
    "/uploads/{upload_id}/image",
    responses=ERRORS,
    summary="The stored image (PNG: a product's is its RGBA cut-out)",
    response_class=Response,
)
async def upload_image(
    upload_id: str, storage: StorageDep, session: ReadSessionDep, designer: CurrentDesigner
) -> Response:
    upload = await own_upload(session, designer, upload_id)
    name = f"{upload.role.replace('_', '-')}-{upload.id}.png"
    return await serve_stored(storage, upload.storage_key, name, "image/png", False)


@router.get(
    "/uploads/{upload_id}/preview",
    responses=ERRORS,
    response_class=Response,
    summary="How the render gets the upload: a sketch as ControlNet does, a cut-out on a checkerboard",
)
async def upload_preview(
    upload_id: str,
    storage: StorageDep,
    session: ReadSessionDep,
    designer: CurrentDesigner,
    width: Annotated[int, Query(ge=256, le=1024, multiple_of=8)] = 768,
    height: Annotated[int, Query(ge=256, le=1024, multiple_of=8)] = 512,
) -> Response:
    """A sketch: inverted when it is dark lines on light paper, centre-cropped and scaled to the render size.
    A product: its cut-out whole, on a checkerboard (what is transparent shows as squares). A photo:
    centre-cropped and scaled to the render size. A composition: its edges, as the canny ControlNet sees
    them."""
    upload = await own_upload(session, designer, upload_id)
    png = await storage.load(upload.storage_key)
    if upload.role == UploadRole.sketch:
        preview = await asyncio.to_thread(
            control_preview, png, width=width, height=height, invert=upload.dark_lines
        )
    elif upload.role == UploadRole.product:
        preview = await asyncio.to_thread(cutout_preview, png, width=width, height=height)
    elif upload.role == UploadRole.composition:
        preview = await asyncio.to_thread(edges_preview, png, width=width, height=height)
    else:
        preview = await asyncio.to_thread(photo_preview, png, width=width, height=height)
    return Response(preview, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


async def _own_image(session: ReadSessionDep, designer: Principal, image_id: str) -> Image:
    image = await session.get(Image, image_id) if is_entity_id(image_id) else None
    if image is None or image.designer_id != designer.id:
        raise NotFound(f"No image {image_id!r}.", code="image_not_found")
    return image


async def serve_stored(
    storage: Storage, key: str, filename: str, media_type: str, download: bool
) -> Response:
    """A stored file: from the local disk, or a presigned redirect to S3."""
    path = storage.local_path(key)
    if path is None:
        return RedirectResponse(await storage.presigned_url(key, filename, download), status_code=307)
    if not path.is_file():
        raise NotFound("The file is missing from storage.", code="file_missing")
    disposition = "attachment" if download else "inline"
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        content_disposition_type=disposition,
        headers={"Cache-Control": "private, max-age=86400"},
    )


@router.get(
    "/images/{image_id}",
    responses={**ERRORS, 307: {"description": "S3: presigned URL"}},
    response_class=Response,
    summary="A render, full size (PNG)",
)
async def read_image(
    image_id: str,
    storage: StorageDep,
    session: ReadSessionDep,
    designer: CurrentDesigner,
    download: Annotated[bool, Query(description="as an attachment")] = False,
) -> Response:
    image = await _own_image(session, designer, image_id)
    name = f"render-{image.job_id[:8]}-{image.index + 1}-seed{image.seed}.png"
    return await serve_stored(storage, image.storage_key, name, "image/png", download)


@router.get(
    "/images/{image_id}/thumbnail",
    responses={**ERRORS, 307: {"description": "S3: presigned URL"}},
    response_class=Response,
    summary="A render's thumbnail (JPEG)",
)
async def read_thumbnail(
    image_id: str,
    storage: StorageDep,
    sessionmaker: SessionMakerDep,
    session: ReadSessionDep,
    designer: CurrentDesigner,
) -> Response:
    image = await _own_image(session, designer, image_id)
    await ensure_thumbnail(storage, sessionmaker, image)
    return await serve_stored(storage, image.thumb_key, f"thumb-{image.id}.jpg", "image/jpeg", False)


async def ensure_thumbnail(storage: Storage, sessionmaker: SessionMaker, image: Image) -> None:
    """The dispatcher makes thumbnails after a job succeeded; one it has not (yet) stored is made here."""
    if image.thumb_ready:
        return
    try:
        png = await storage.load(image.storage_key)
    except StorageError as exc:
        raise NotFound("The file is missing from storage.", code="file_missing") from exc
    await save_thumbnail(storage, image, png)
    async with sessionmaker() as session, writing(session):
        await job_queue.thumbnails_ready(session, [image.id])


@router.get("/images/{image_id}/meta", responses=ERRORS, summary="Everything needed to redo the render")
async def read_image_meta(
    image_id: str, session: ReadSessionDep, designer: CurrentDesigner
) -> dict[str, Any]:
    image = await _own_image(session, designer, image_id)
    return {
        "id": image.id,
        "job_id": image.job_id,
        "sha256": image.sha256,
        "width": image.width,
        "height": image.height,
        "render_s": image.render_s,
        **image.meta,
    }
