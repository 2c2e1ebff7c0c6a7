"""Image URLs that work without an `Authorization` header, and expire: what the drop-in text2image answers.

S3 storage: a presigned URL (S3_PRESIGN_TTL_S). Local storage: this API's `/api/images/{id}/shared`,
signed by `backend.signed_urls` (IMAGE_URL_TTL_S). Either way the object is the image's
content-addressed key (`images/ab/<sha256>.png`), so two renders never share a name unless they are
the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.api.deps import EngineDep, SettingsDep, StorageDep
from backend.config import Settings
from backend.db import single_reads
from backend.errors import NotFound
from backend.models import Image
from backend.schemas import is_entity_id
from backend.signed_urls import sign, verify
from backend.storage import Storage

router = APIRouter(prefix="/api", tags=["images"])


async def storage_keys(engine: AsyncEngine, image_ids: Sequence[str]) -> dict[str, str]:
    async with single_reads(engine) as conn:
        rows = await conn.execute(select(Image.id, Image.storage_key).where(Image.id.in_(image_ids)))
        return {row.id: row.storage_key for row in rows}


async def image_url(settings: Settings, storage: Storage, base_url: str, image_id: str, key: str) -> str:
    """An absolute URL of the image's PNG that a browser opens as it is, until it expires."""
    if storage.local_path(key) is None:
        return await storage.presigned_url(key, f"render-{image_id}.png", False)
    signed = sign(settings.image_url_secret, image_id, settings.image_url_ttl_s)
    return f"{base_url.rstrip('/')}/api/images/{image_id}/shared?{signed.query()}"


@router.get(
    "/images/{image_id}/shared",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the render"},
        403: {"description": "invalid signature or expired link"},
        404: {"description": "no such image"},
    },
    summary="A render through a signed, expiring link (no token needed)",
)
async def shared_image(
    image_id: str,
    expires: Annotated[int, Query(ge=0, le=2**62)],
    signature: Annotated[str, Query(max_length=128)],
    settings: SettingsDep,
    storage: StorageDep,
    engine: EngineDep,
) -> Response:
    verify(settings.image_url_secret, image_id, expires, signature)
    keys = await storage_keys(engine, [image_id]) if is_entity_id(image_id) else {}
    path = storage.local_path(keys[image_id]) if image_id in keys else None
    if path is None or not path.is_file():
        raise NotFound(f"No image {image_id!r}.", code="image_not_found")
    return FileResponse(
        path,
        media_type="image/png",
        filename=f"render-{image_id}.png",
        content_disposition_type="inline",
        headers={"Cache-Control": f"private, max-age={max(0, min(expires - int(time.time()), 86400))}"},
    )
