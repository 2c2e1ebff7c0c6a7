"""Download a selection of renders (or a whole project) as one ZIP of full-size PNGs with a contact
sheet, streamed (`backend.downloads`). Too many images, or too many bytes, is a 413 before any byte."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from backend import downloads, projects
from backend.api.deps import CurrentDesigner, ReadSessionDep, StorageDep
from backend.errors import TooLarge
from backend.models import Image, Job
from backend.project_schemas import ZipRequest

router = APIRouter(prefix="/api", tags=["images"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    404: {"description": "no such image or project for this designer"},
    413: {"description": "more images or bytes than one ZIP holds"},
}


def check_size(images: list[Image]) -> None:
    total = sum(i.size_bytes for i in images)
    if len(images) > downloads.ZIP_MAX_IMAGES or total > downloads.ZIP_MAX_BYTES:
        raise TooLarge(
            f"A ZIP holds at most {downloads.ZIP_MAX_IMAGES} renders and "
            f"{downloads.ZIP_MAX_BYTES // (1024 * 1024)} MB; this selection has {len(images)} "
            f"({total / (1024 * 1024):.0f} MB). Choose fewer renders.",
            code="zip_too_large",
            details=[{"field": "image_ids", "message": f"{len(images)} images, {total} bytes"}],
        )


@router.post(
    "/images/zip",
    response_class=StreamingResponse,
    responses={**ERRORS, 200: {"content": {"application/zip": {}}, "description": "the ZIP"}},
    summary="A ZIP of full-size PNGs and contact-sheet.png: a selection of renders or a whole project",
)
async def download_zip(
    body: ZipRequest, session: ReadSessionDep, storage: StorageDep, designer: CurrentDesigner
) -> StreamingResponse:
    name = "renders"
    if body.project_id is not None:
        project = await projects.own_project(session, designer.id, body.project_id)
        images = await projects.project_images(session, project.id)
        name = "".join(c if c.isalnum() else "-" for c in project.name.lower()).strip("-") or name
    else:
        images = await projects.own_images(session, designer.id, body.image_ids or [])
    check_size(images)
    job_ids = list({i.job_id for i in images})
    rows = await session.execute(select(Job.id, Job.params, Job.kind).where(Job.id.in_(job_ids)))
    settings = {row.id: {**row.params, "kind": row.kind} for row in rows}
    renders = [
        downloads.Render(
            i.storage_key,
            downloads.file_name(i.job_id, i.index, i.seed),
            {**settings.get(i.job_id, {}), "seed": i.seed, "width": i.width, "height": i.height},
        )
        for i in images
    ]
    return StreamingResponse(
        downloads.zip_stream(storage, renders),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}.zip"'},
    )
