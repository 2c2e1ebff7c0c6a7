"""Templates: designers list and read them; leads validate, draft, publish, roll back, retire, restore.

Validation (`template_validation`) talks to the instances' snapshot and the sandbox emulator before any
transaction opens; the service (`backend.templates`) then stores what it found. An invalid draft is kept
with its report (the lead reads it back) and answered 422 `template_invalid`, details = the problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from backend import audit
from backend import templates as service
from backend.api.account import client_ip
from backend.api.deps import (
    CurrentDesigner,
    HttpClientDep,
    InstancesDep,
    LeadDep,
    ManifestDep,
    ModelManifestDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
)
from backend.api.template_views import summary, template_out, version_out
from backend.auth import Principal
from backend.config import Settings
from backend.db import writing
from backend.errors import Conflict, InvalidInput
from backend.instances import InstanceMonitor
from backend.model_manifest import ModelManifest
from backend.template_schemas import (
    DraftOut,
    PublishOut,
    Report,
    RollbackRequest,
    TemplateList,
    TemplateOut,
    TemplateSummary,
    VersionOut,
)
from backend.template_validation import Validated, validate
from backend.templates import Publication
from contract.styles import Manifest

router = APIRouter(prefix="/api/templates", tags=["templates"])
ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "a lead's route (forbidden_role), or another lead's template (not_template_owner)"},
    404: {"description": "no such template (someone else's draft is not found either)"},
    409: {"description": "a built-in template, a name taken, or a state that does not allow it"},
    422: {"description": "template_invalid: details are the problems, each with its field path"},
}
Declaration = Annotated[
    dict[str, Any],
    Body(description="a template declaration: name, title, description, graph, inputs, outputs"),
]


def invalid(report: Report) -> InvalidInput:
    first = report.problems[0].message if report.problems else "invalid"
    more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
    return InvalidInput(
        f"The template is not valid: {first}{more}",
        code="template_invalid",
        details=[p.model_dump(exclude_none=True) for p in report.problems],
    )


@dataclass(frozen=True)
class Checker:
    """What validating a declaration reads: the instances, the manifests, the sandbox."""

    settings: Settings
    monitor: InstanceMonitor
    models: ModelManifest
    styles: Manifest
    http: httpx.AsyncClient

    async def __call__(self, doc: Any, *, fresh: bool = False) -> Validated:
        snapshot = await (self.monitor.fresh() if fresh else self.monitor.current())
        address = self.settings.template_dry_run_address
        return await validate(doc, snapshot, self.models, self.styles, self.http, address)


async def _checker(
    settings: SettingsDep,
    monitor: InstancesDep,
    models: ModelManifestDep,
    styles: ManifestDep,
    http: HttpClientDep,
) -> Checker:
    return Checker(settings, monitor, models, styles, http)


CheckerDep = Annotated[Checker, Depends(_checker)]


def _declared_name(doc: Any, validated: Validated) -> str:
    """The declaration's name when it is usable as one (else the report alone is answered)."""
    if validated.declaration is not None:
        return str(validated.declaration.name)
    raise invalid(validated.report)


@router.get("", response_model=TemplateList, summary="Templates one may run (a lead: and own drafts)")
async def list_templates(
    session: ReadSessionDep,
    designer: CurrentDesigner,
    include_retired: Annotated[bool, Query(description="list retired templates too")] = False,
) -> TemplateList:
    found = await service.listing(session, designer, include_retired)
    return TemplateList(items=[summary(t) for t in found])


@router.post(
    "/validate", response_model=Report, responses=ERRORS, summary="Validate a declaration (nothing stored)"
)
async def validate_template(doc: Declaration, check: CheckerDep, _lead: LeadDep) -> Report:
    """The report of a declaration against the instances now; `ok` false lists the problems (200). A
    document that is no declaration in the API format (it does not parse, or its graph is a UI workflow)
    has no report to read: 422 `template_invalid`, as POST /api/templates answers it."""
    validated = await check(doc)
    if not validated.readable:
        raise invalid(validated.report)
    return validated.report


@router.post("", status_code=201, response_model=DraftOut, responses=ERRORS, summary="Create a draft")
async def create_template(
    doc: Declaration, check: CheckerDep, session: SessionDep, lead: LeadDep
) -> DraftOut:
    """Validate and store a new template's draft (201 with the report); an invalid one is stored too
    and answered 422 `template_invalid`, so the lead can read it back and fix it."""
    validated = await check(doc)
    name = _declared_name(doc, validated)
    report = validated.report.model_dump(mode="json")
    async with writing(session):
        template = await service.create_draft(session, lead, name, doc, report)
        out = DraftOut(template=summary(template), report=validated.report)
    if not validated.report.ok:
        raise invalid(validated.report)
    return out


@router.put("/{name}/draft", response_model=DraftOut, responses=ERRORS, summary="Replace the draft")
async def put_draft(
    name: str, doc: Declaration, check: CheckerDep, session: SessionDep, lead: LeadDep
) -> DraftOut:
    validated = await check(doc)
    if validated.declaration is not None and validated.declaration.name != name:
        raise InvalidInput(
            f"The declaration is named {validated.declaration.name!r}, not {name!r}.",
            code="template_name_mismatch",
            details=[{"field": "name", "message": f"must be {name!r}"}],
        )
    async with writing(session):
        template = await service.visible(session, lead, name)
        service.require_changeable(lead, template, owner=True)
        service.replace_draft(template, doc, validated.report.model_dump(mode="json"))
        out = DraftOut(template=summary(template), report=validated.report)
    if not validated.report.ok:
        raise invalid(validated.report)
    return out


@router.post(
    "/{name}/publish",
    status_code=201,
    response_model=PublishOut,
    responses={**ERRORS, 200: {"description": "identical content: the existing version, made current"}},
    summary="Publish the draft as the next version",
)
async def publish_template(
    name: str, check: CheckerDep, session: SessionDep, lead: LeadDep, request: Request, response: Response
) -> PublishOut:
    """The draft re-validated against the instances now, then version N+1 made current (201); the same
    content as an existing version makes that one current instead (200)."""
    async with writing(session):
        template = await service.visible(session, lead, name)
        service.require_changeable(lead, template, owner=True)
        draft = template.draft
    if draft is None:
        raise Conflict(f"{name!r} has no draft to publish.", code="template_no_draft")
    validated = await check(draft, fresh=True)
    report = validated.report
    async with writing(session):
        template = await service.visible(session, lead, name)
        if not report.ok or validated.declaration is None:
            service.set_draft_report(template, report.model_dump(mode="json"))
        else:
            publication = Publication(
                title=validated.declaration.title,
                description=validated.declaration.description,
                spec=validated.spec(),
                needs=report.needs,
                lane=report.lane or "",
                report=report.model_dump(mode="json"),
            )
            version, created = await service.publish(session, template, publication, lead.id)
            _audit(session, "template_published", lead, request, template.name,
                   {"version": version.version, "new_version": created})  # fmt: skip
            out = PublishOut(
                template=summary(template), version=version.version, created=created, report=report
            )
    if not report.ok:
        raise invalid(report)
    response.status_code = 201 if created else 200
    return out


@router.post(
    "/{name}/rollback", response_model=TemplateSummary, responses=ERRORS, summary="Make a version current"
)
async def rollback_template(
    name: str, body: RollbackRequest, session: SessionDep, lead: LeadDep, request: Request
) -> TemplateSummary:
    async with writing(session):
        template = await _changeable(session, lead, name)
        before = template.current_version
        await service.rollback(session, template, body.version)
        _audit(session, "template_rolled_back", lead, request, template.name,
               {"from": before, "to": body.version})  # fmt: skip
        return summary(template)


@router.post("/{name}/retire", response_model=TemplateSummary, responses=ERRORS, summary="Retire")
async def retire_template(name: str, session: SessionDep, lead: LeadDep, request: Request) -> TemplateSummary:
    """No new job may start from it; its jobs stay readable and reproducible."""
    async with writing(session):
        template = await _changeable(session, lead, name)
        if template.retired_at is None and template.current_version is not None:
            _audit(session, "template_retired", lead, request, template.name)
        service.retire(template)
        return summary(template)


@router.post("/{name}/restore", response_model=TemplateSummary, responses=ERRORS, summary="Restore")
async def restore_template(
    name: str, session: SessionDep, lead: LeadDep, request: Request
) -> TemplateSummary:
    async with writing(session):
        template = await _changeable(session, lead, name)
        if template.retired_at is not None:
            _audit(session, "template_restored", lead, request, template.name)
        service.restore(template)
        return summary(template)


def _audit(
    session: AsyncSession,
    action: str,
    lead: Principal,
    request: Request,
    name: str,
    details: dict[str, Any] | None = None,
) -> None:
    """The change's audit line, in its own transaction (it commits or rolls back with it)."""
    audit.record(session, action, audit.Actor(lead.id, lead.name), target=("template", name),
                 ip=client_ip(request), details=details)  # fmt: skip


async def _changeable(session: AsyncSession, lead: Principal, name: str) -> Any:
    template = await service.visible(session, lead, name)
    service.require_changeable(lead, template, owner=False)
    return template


@router.get("/{name}", response_model=TemplateOut, responses=ERRORS, summary="One template")
async def read_template(name: str, session: ReadSessionDep, designer: CurrentDesigner) -> TemplateOut:
    template = await service.visible(session, designer, name)
    return await template_out(session, designer, template)


@router.get("/{name}/versions/{number}", response_model=VersionOut, responses=ERRORS, summary="One version")
async def read_version(
    name: str, number: int, session: ReadSessionDep, designer: CurrentDesigner
) -> VersionOut:
    """Its inputs and outputs; for a lead also its graph and the report it was published with."""
    template = await service.visible(session, designer, name)
    found = await service.version(session, template, number)
    return version_out(template, found, lead=service.is_lead(designer))
