"""Styles from the LoRA manifest, and the designer's own account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from backend import job_queries
from backend.api.deps import AvailabilityDep, CurrentDesigner, ManifestDep, ReadSessionDep, SettingsDep
from backend.errors import NotFound
from backend.schemas import DesignerOut, StyleAvailability, StyleOut

router = APIRouter(prefix="/api", tags=["styles"])


@router.get("/styles", response_model=list[StyleOut], summary="The styles a render can use")
async def list_styles(
    manifest: ManifestDep, _designer: CurrentDesigner, availability: AvailabilityDep
) -> list[StyleOut]:
    """Every style, each with whether the ComfyUI servers can render it now for each job kind."""
    kinds = await availability.styles()
    return [
        StyleOut(
            id=s.id,
            name=s.display_name,
            description=s.description,
            trigger_words=list(s.trigger_words),
            strength_model=s.strength_model,
            strength_clip=s.strength_clip,
            has_lora=s.has_lora,
            version=s.version,
            preview_url=f"/api/styles/{s.id}/preview",
            **_availability_fields(kinds[s.id]),
        )
        for s in manifest.styles.values()
    ]


def _availability_fields(kinds: dict[str, StyleAvailability]) -> dict[str, Any]:
    reasons = list(dict.fromkeys(k.reason for k in kinds.values() if k.reason))
    return {
        "available": all(k.available for k in kinds.values()),
        "unavailable_reason": " ".join(reasons) or None,
        "kinds": kinds,
    }


@router.get(
    "/styles/{style_id}/preview",
    response_class=FileResponse,
    summary="A style's preview image",
    responses={404: {"description": "no such style or no preview"}},
)
async def style_preview(style_id: str, manifest: ManifestDep, _designer: CurrentDesigner) -> FileResponse:
    if style_id not in manifest.styles:
        raise NotFound(f"No style {style_id!r}.", code="style_not_found")
    path = manifest.preview_path(style_id)
    if not path.is_file():
        raise NotFound(f"Style {style_id!r} has no preview image yet.", code="preview_missing")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/me", response_model=DesignerOut, summary="Who the token belongs to, and their limits")
async def me(settings: SettingsDep, session: ReadSessionDep, designer: CurrentDesigner) -> DesignerOut:
    return DesignerOut(
        id=designer.id,
        name=designer.name,
        active_jobs=await job_queries.active_jobs(session, designer.id),
        max_active_jobs=designer.max_active_jobs or settings.max_active_jobs_per_designer,
        role=designer.role.value,
    )
