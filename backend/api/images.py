"""Uploads in (sketches: checked, re-encoded, stored) and results out (full-size PNG, thumbnails).

Local storage streams the file; S3 storage answers a redirect to a short-lived presigned URL.
Someone else's upload or image is a 404, like one that does not exist.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, UploadFile
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
from backend.db import SessionMaker, writing
from backend.errors import AppError, InvalidInput, NotFound, RateLimited, TooLarge, UnsupportedMedia
from backend.images import ImageRejected, control_preview, process_sketch, save_thumbnail
from backend.models import Image, Upload, utcnow
from backend.schemas import UploadOut, is_entity_id
from backend.storage import Storage, StorageError, content_key

router = APIRouter(prefix="/api", tags=["images"])
ACCEPTED = ("image/png", "image/jpeg", "image/webp")
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


def upload_out(upload: Upload) -> UploadOut:
    return UploadOut(
        id=upload.id,
        width=upload.width,
        height=upload.height,
        size_bytes=upload.size_bytes,
        dark_lines=upload.dark_lines,
        created_at=upload.created_at,
        url=f"/api/uploads/{upload.id}/image",
        preview_url=f"/api/uploads/{upload.id}/preview",
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
        .where(Upload.designer_id == designer.id, Upload.created_at > since)
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
    summary="Upload a sketch",
    responses={
        **ERRORS,
        413: {"description": "too large"},
        415: {"description": "not PNG/JPEG/WebP"},
        422: {"description": "corrupt or unusable image"},
        429: {"description": "upload quota"},
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
) -> UploadOut:
    """A sketch (PNG, JPEG or WebP): EXIF orientation applied, flattened to greyscale, re-encoded as PNG."""
    if _declared_type(file) not in ACCEPTED_TYPES | UNDECLARED_TYPES:
        raise UnsupportedMedia(
            f"Content type {file.content_type!r} is not accepted: send PNG, JPEG or WebP.",
            code="unsupported_media_type",
        )
    data = await _read_limited(file, settings.upload_max_bytes)
    if not data:
        raise InvalidInput(
            "The file is empty.", code="empty_upload", details=[{"field": "file", "message": "empty"}]
        )
    try:
        sketch = await asyncio.to_thread(
            process_sketch, data, max_pixels=settings.upload_max_pixels, max_side=settings.upload_max_side
        )
    except ImageRejected as exc:
        cls = REJECTION_ERRORS.get(exc.code, InvalidInput)
        raise cls(str(exc), code=exc.code, details=[{"field": "file", "message": str(exc)}]) from exc
    key, digest = content_key("uploads", sketch.png, "png")
    await storage.save(key, sketch.png, "image/png")
    try:
        async with session.begin():
            existing = await _upload_by_digest(session, designer, digest)
            if existing is not None:
                return upload_out(existing)
            await _check_upload_quota(session, designer, settings.max_uploads_per_hour)
            upload = Upload(
                designer_id=designer.id,
                sha256=digest,
                storage_key=key,
                original_name=(file.filename or "")[:200],
                width=sketch.width,
                height=sketch.height,
                size_bytes=len(sketch.png),
                dark_lines=sketch.dark_lines,
            )
            session.add(upload)
    except IntegrityError:
        # The same sketch uploaded twice at once: the other request stored it first; answer with that one.
        async with session.begin():
            existing = await _upload_by_digest(session, designer, digest)
        if existing is None:
            raise
        return upload_out(existing)
    return upload_out(upload)


async def _upload_by_digest(session: AsyncSession, designer: Principal, digest: str) -> Upload | None:
    upload: Upload | None = await session.scalar(
        select(Upload).where(Upload.designer_id == designer.id, Upload.sha256 == digest)
    )
    return upload


async def _own_upload(session: ReadSessionDep, designer: Principal, upload_id: str) -> Upload:
    upload = await session.get(Upload, upload_id) if is_entity_id(upload_id) else None
    if upload is None or upload.designer_id != designer.id:
        raise NotFound(f"No upload {upload_id!r}.", code="upload_not_found")
    return upload


@router.get("/uploads/{upload_id}", response_model=UploadOut, responses=ERRORS, summary="One upload")
async def read_upload(upload_id: str, session: ReadSessionDep, designer: CurrentDesigner) -> UploadOut:
    return upload_out(await _own_upload(session, designer, upload_id))


@router.get(
    "/uploads/{upload_id}/image", responses=ERRORS, summary="The stored sketch (PNG)", response_class=Response
)
async def upload_image(
    upload_id: str, storage: StorageDep, session: ReadSessionDep, designer: CurrentDesigner
) -> Response:
    upload = await _own_upload(session, designer, upload_id)
    return await _serve(storage, upload.storage_key, f"sketch-{upload.id}.png", "image/png", False)


@router.get(
    "/uploads/{upload_id}/preview",
    responses=ERRORS,
    response_class=Response,
    summary="The sketch as ControlNet gets it",
)
async def upload_preview(
    upload_id: str,
    storage: StorageDep,
    session: ReadSessionDep,
    designer: CurrentDesigner,
    width: Annotated[int, Query(ge=256, le=1024, multiple_of=8)] = 768,
    height: Annotated[int, Query(ge=256, le=1024, multiple_of=8)] = 512,
) -> Response:
    """Inverted when it is dark lines on light paper, centre-cropped and scaled to the render size."""
    upload = await _own_upload(session, designer, upload_id)
    png = await storage.load(upload.storage_key)
    preview = await asyncio.to_thread(
        control_preview, png, width=width, height=height, invert=upload.dark_lines
    )
    return Response(preview, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


async def _own_image(session: ReadSessionDep, designer: Principal, image_id: str) -> Image:
    image = await session.get(Image, image_id) if is_entity_id(image_id) else None
    if image is None or image.designer_id != designer.id:
        raise NotFound(f"No image {image_id!r}.", code="image_not_found")
    return image


async def _serve(storage: Storage, key: str, filename: str, media_type: str, download: bool) -> Response:
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
    return await _serve(storage, image.storage_key, name, "image/png", download)


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
    if not image.thumb_ready:
        await _make_thumbnail(storage, sessionmaker, image)
    return await _serve(storage, image.thumb_key, f"thumb-{image.id}.jpg", "image/jpeg", False)


async def _make_thumbnail(storage: Storage, sessionmaker: SessionMaker, image: Image) -> None:
    """The dispatcher makes thumbnails after a job succeeded; one it has not (yet) stored is made here."""
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
