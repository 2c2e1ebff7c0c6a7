"""Template rows → the templates API's responses (who sees a draft, a graph, a report is decided here)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend import templates as service
from backend.auth import Principal
from backend.models import Template, TemplateVersion
from backend.template_schemas import (
    Report,
    TemplateInputOut,
    TemplateOut,
    TemplateSummary,
    VersionOut,
    VersionSummary,
)


def summary(template: Template) -> TemplateSummary:
    return TemplateSummary(
        name=template.name,
        title=template.title,
        description=template.description,
        builtin=template.builtin,
        current_version=template.current_version,
        retired=template.retired_at is not None,
        has_draft=template.draft is not None,
        preview_url=f"/api/templates/{template.name}/preview" if template.preview_image_id else None,
        updated_at=template.updated_at,
    )


def inputs_out(spec: dict[str, Any]) -> list[TemplateInputOut]:
    """The declared inputs with their effective constraints (stored with the version at publish)."""
    effective = spec.get("effective_constraints") or {}
    found = []
    for decl in spec.get("inputs") or []:
        values = {k: v for k, v in decl.items() if k not in ("targets", "constraints")}
        constraints = effective.get(decl["key"], decl.get("constraints") or {})
        found.append(TemplateInputOut(**{"label": decl["key"], **values, "constraints": constraints}))
    return found


def _report(raw: dict[str, Any] | None) -> Report | None:
    return Report.model_validate(raw) if raw else None


async def template_out(session: AsyncSession, principal: Principal, template: Template) -> TemplateOut:
    found = await service.versions(session, template)
    names = await service.creators(session, {v.created_by for v in found if v.created_by})
    current = next((v for v in found if v.version == template.current_version), None)
    spec = current.spec if current is not None else {}
    own = template.owner_id == principal.id or service.is_admin(principal)
    return TemplateOut(
        **summary(template).model_dump(),
        retired_at=template.retired_at,
        inputs=inputs_out(spec),
        outputs=spec.get("outputs") or {},
        versions=[
            VersionSummary(
                version=v.version,
                lane=v.lane,
                created_at=v.created_at,
                created_by=names.get(v.created_by or ""),
                current=v.version == template.current_version,
            )
            for v in found
        ],
        draft=template.draft if own else None,
        draft_report=_report(template.draft_report) if own else None,
    )


def version_out(template: Template, version: TemplateVersion, *, lead: bool) -> VersionOut:
    return VersionOut(
        name=template.name,
        version=version.version,
        lane=version.lane,
        created_at=version.created_at,
        current=version.version == template.current_version,
        inputs=inputs_out(version.spec),
        outputs=version.spec.get("outputs") or {},
        needs=version.needs,
        graph=version.spec.get("graph") if lead else None,
        report=_report(version.report) if lead else None,
    )
