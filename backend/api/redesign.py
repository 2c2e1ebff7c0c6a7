"""A render as the photo of a new redesign: "Edit a region" from the gallery.

`POST /api/images/{image_id}/photo` makes a `photo` upload of one of the designer's images (its PNG,
processed as any photo upload is), so the photo templates (restyle, stage, edit) take it like a photo from
a phone. The same image again is the same upload (uploads are content-named per role).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from backend.api.deps import CurrentDesigner, SessionDep, SettingsDep, StorageDep
from backend.api.images import rejected, store_upload, upload_out
from backend.errors import NotFound
from backend.images import ImageRejected
from backend.models import Image, UploadRole
from backend.schemas import UploadOut, is_entity_id
from backend.upload_roles import prepare

router = APIRouter(prefix="/api", tags=["images"])


@router.post("/images/{image_id}/photo", status_code=201, response_model=UploadOut)
async def image_as_photo(
    image_id: str, settings: SettingsDep, storage: StorageDep, session: SessionDep, designer: CurrentDesigner
) -> UploadOut:
    """One of your renders (or passes) as a `photo` upload: to restyle it, stage it or edit a region of it."""
    async with session.begin():
        image = await session.get(Image, image_id) if is_entity_id(image_id) else None
        if image is None or image.designer_id != designer.id:
            raise NotFound(f"No image {image_id!r}.", code="image_not_found")
        key, job_id = image.storage_key, image.job_id
    data = await storage.load(key)
    try:
        prepared = await asyncio.to_thread(prepare, UploadRole.photo, data, settings)
    except ImageRejected as exc:
        raise rejected(exc) from exc
    upload = await store_upload(
        session, storage, designer, UploadRole.photo, prepared, f"render-{job_id}.png"
    )
    return upload_out(upload)
