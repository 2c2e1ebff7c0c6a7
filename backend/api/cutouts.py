"""Adjusting a product's cut-out: threshold and edge erosion, from the stored photo and matte (no network).

Uploads are immutable (a queued job names its image by content), so an adjustment is a new upload
`derived_from` the product upload: the designer keeps the one they approve. Adjustments are absolute: the
same ones on any upload of the product give the same cut-out (and the same upload).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from backend.api.deps import CurrentDesigner, SessionDep, SettingsDep, StorageDep
from backend.api.images import ERRORS, own_upload, rejected, store_upload, upload_out
from backend.cutout import Adjustments, adjust
from backend.db import reading
from backend.errors import Conflict, NotFound
from backend.images import ImageRejected
from backend.models import UploadRole
from backend.schemas import CutoutAdjust, UploadOut
from backend.storage import StorageError
from backend.upload_roles import prepared_cutout

router = APIRouter(prefix="/api", tags=["images"])


@router.post(
    "/uploads/{upload_id}/cutout",
    status_code=201,
    response_model=UploadOut,
    summary="Adjust a product's cut-out (a new upload)",
    responses={
        **ERRORS,
        409: {"description": "the upload is not a product photo"},
        422: {"description": "out-of-range adjustments, or nothing of the product left after them"},
    },
)
async def adjust_cutout(
    upload_id: str,
    settings: SettingsDep,
    storage: StorageDep,
    session: SessionDep,
    designer: CurrentDesigner,
    body: CutoutAdjust | None = None,
) -> UploadOut:
    """The product's photo cut out again from its stored matte with these adjustments; see the result's
    `preview_url` (on a checkerboard) and use its id in a render. No body: the defaults (soft edge, no
    erosion)."""
    body = body or CutoutAdjust()
    async with reading(session):
        upload = await own_upload(session, designer, upload_id)
    if upload.role != UploadRole.product or not (upload.source_key and upload.matte_key and upload.cutout):
        raise Conflict(
            f"Upload {upload_id} is {upload.role.replace('_', ' ')}, not a product photo: only a product's "
            "cut-out can be adjusted.",
            code="not_a_product",
        )
    try:
        source, matte = await storage.load(upload.source_key), await storage.load(upload.matte_key)
    except StorageError as exc:
        raise NotFound("The product's photo is missing from storage.", code="file_missing") from exc
    adjustments = Adjustments(body.threshold, body.erode_px)
    try:
        cut = await asyncio.to_thread(adjust, source, matte, adjustments, str(upload.cutout["method"]))
    except ImageRejected as exc:
        raise rejected(exc, field="threshold" if body.threshold is not None else "erode_px") from exc
    adjusted = await store_upload(
        session,
        storage,
        designer,
        UploadRole.product,
        prepared_cutout(cut),
        upload.original_name,
        source_key=upload.source_key,
        matte_key=upload.matte_key,
        derived_from=upload.derived_from or upload.id,
    )
    return upload_out(adjusted)
