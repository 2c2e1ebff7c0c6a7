"""A template's preview image: a lead picks one of their renders; whoever may see the template sees it.

The preview is the render's thumbnail, served through the template (`GET /api/templates/{name}/preview`),
so a designer who cannot read the lead's render itself still sees the card's picture, and nothing else
of the render (its prompt, settings and full-size file stay the lead's).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict

from backend import templates as service
from backend.api.deps import (
    CurrentDesigner,
    LeadDep,
    ReadSessionDep,
    SessionDep,
    SessionMakerDep,
    StorageDep,
)
from backend.api.images import ensure_thumbnail, serve_stored
from backend.api.template_views import summary
from backend.db import writing
from backend.errors import NotFound
from backend.models import Image
from backend.schemas import EntityId, is_entity_id
from backend.template_schemas import TemplateSummary

router = APIRouter(prefix="/api/templates", tags=["templates"])
ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "a lead's route (forbidden_role), or another lead's template (not_template_owner)"},
    404: {"description": "no such template, no such render of yours, or no preview set"},
}


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    image_id: EntityId


@router.put("/{name}/preview", response_model=TemplateSummary, responses=ERRORS, summary="Set the preview")
async def set_preview(name: str, body: PreviewRequest, session: SessionDep, lead: LeadDep) -> TemplateSummary:
    """The card's picture: one of the lead's own renders (typically one of this template's)."""
    async with writing(session):
        template = await service.visible(session, lead, name)
        service.require_changeable(lead, template, owner=False)
        image = await session.get(Image, body.image_id)
        if image is None or image.designer_id != lead.id:
            raise NotFound(
                "image_id does not name one of your renders",
                code="image_not_found",
                details=[{"field": "image_id", "message": "no such render"}],
            )
        template.preview_image_id = image.id
        return summary(template)


@router.get(
    "/{name}/preview",
    responses={**ERRORS, 307: {"description": "S3: presigned URL"}},
    response_class=Response,
    summary="The preview (JPEG)",
)
async def read_preview(
    name: str,
    storage: StorageDep,
    sessionmaker: SessionMakerDep,
    session: ReadSessionDep,
    designer: CurrentDesigner,
) -> Response:
    template = await service.visible(session, designer, name)
    image_id = template.preview_image_id
    image = await session.get(Image, image_id) if image_id and is_entity_id(image_id) else None
    if image is None:
        raise NotFound(f"Template {name!r} has no preview.", code="preview_not_found")
    await ensure_thumbnail(storage, sessionmaker, image)
    return await serve_stored(storage, image.thumb_key, f"template-{template.name}.jpg", "image/jpeg", False)
