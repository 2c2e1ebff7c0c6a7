"""Templates as stored: drafts, immutable versions, the current one, retirement; who may see and change what.

Visibility: a published template that is not retired is everyone's; a retired one is listed on request
(`include_retired`) and still shown by name (its old jobs stay reproducible), but starts no job; a draft
never published is its owner's only (to anyone else, another lead included, it does not exist: 404).
Changes: a draft is written and published by its owner (or an admin); rollback, retire and restore by any
lead. The built-ins (`text`, `sketch`) ship in the repository and are published at start-up
(`publish_builtin`): the API refuses to change them (409 `template_builtin`).

Publishing identical content (graph, inputs, outputs: `content_sha256`) makes no new version: the
existing one becomes current. Every function here runs inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.errors import Conflict, Forbidden, NotFound
from backend.models import Designer, Role, Template, TemplateVersion, utcnow

SPEC_KEYS = ("graph", "inputs", "outputs")


def content_sha256(spec: Mapping[str, Any]) -> str:
    """The hash of a version's content: canonical JSON of its graph, inputs and outputs."""
    content = {key: spec.get(key) for key in SPEC_KEYS}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def not_found(name: str) -> NotFound:
    return NotFound(f"No template {name!r}.", code="template_not_found")


def is_admin(principal: Principal) -> bool:
    return principal.key is None and principal.role.at_least(Role.admin)


def is_lead(principal: Principal) -> bool:
    return principal.key is None and principal.role.at_least(Role.lead)


def can_see(principal: Principal, template: Template) -> bool:
    """A published template is everyone's; a draft never published only its owner's (and an admin's)."""
    if template.current_version is not None:
        return True
    return template.owner_id == principal.id or is_admin(principal)


async def find(session: AsyncSession, name: str) -> Template | None:
    return await session.scalar(select(Template).where(Template.name == name))


async def visible(session: AsyncSession, principal: Principal, name: str) -> Template:
    """The template by name as `principal` may see it, or 404 `template_not_found`."""
    template = await find(session, name)
    if template is None or not can_see(principal, template):
        raise not_found(name)
    return template


async def listing(session: AsyncSession, principal: Principal, include_retired: bool) -> list[Template]:
    """Published templates (not retired unless asked), and the caller's own drafts when a lead."""
    query = select(Template).order_by(Template.builtin.desc(), Template.name)
    if not include_retired:
        query = query.where(Template.retired_at.is_(None))
    found = (await session.scalars(query)).all()
    return [
        t for t in found if t.current_version is not None or (is_lead(principal) and can_see(principal, t))
    ]


async def versions(session: AsyncSession, template: Template) -> Sequence[TemplateVersion]:
    rows = await session.scalars(
        select(TemplateVersion)
        .where(TemplateVersion.template_id == template.id)
        .order_by(TemplateVersion.version)
    )
    return rows.all()


async def creators(session: AsyncSession, ids: set[str]) -> dict[str, str]:
    """Designer id -> name, for the versions list."""
    if not ids:
        return {}
    rows = await session.execute(select(Designer.id, Designer.name).where(Designer.id.in_(ids)))
    return {r.id: r.name for r in rows}


async def version(session: AsyncSession, template: Template, number: int) -> TemplateVersion:
    found = await session.scalar(
        select(TemplateVersion).where(
            TemplateVersion.template_id == template.id, TemplateVersion.version == number
        )
    )
    if found is None:
        raise NotFound(
            f"Template {template.name!r} has no version {number}.",
            code="template_version_not_found",
            details=[{"field": "version", "message": f"no version {number}"}],
        )
    return found


def require_changeable(principal: Principal, template: Template, *, owner: bool) -> None:
    """409 for a built-in; 403 when `owner` is needed and the caller is neither the owner nor an admin."""
    if template.builtin:
        raise Conflict(
            f"{template.name!r} is a built-in template: it ships with the studio and changes with it.",
            code="template_builtin",
        )
    if owner and template.owner_id != principal.id and not is_admin(principal):
        raise Forbidden(
            f"Only the lead who owns {template.name!r} may change its draft or publish it.",
            code="not_template_owner",
        )


def _title(declaration: Mapping[str, Any], fallback: str) -> str:
    title = declaration.get("title")
    return title if isinstance(title, str) and 0 < len(title) <= 100 else fallback


def _description(declaration: Mapping[str, Any]) -> str:
    description = declaration.get("description")
    return description if isinstance(description, str) and len(description) <= 2000 else ""


async def create_draft(
    session: AsyncSession,
    principal: Principal,
    name: str,
    declaration: dict[str, Any],
    report: dict[str, Any],
) -> Template:
    """A new template holding only a draft; 409 `template_exists` when the name is taken."""
    if await find(session, name) is not None:
        raise Conflict(
            f"A template named {name!r} exists already; change its draft (PUT /api/templates/{name}/draft).",
            code="template_exists",
            details=[{"field": "name", "message": "taken"}],
        )
    template = Template(
        name=name,
        title=_title(declaration, name),
        description=_description(declaration),
        owner_id=principal.id,
        draft=declaration,
        draft_report=report,
    )
    session.add(template)
    await session.flush()
    return template


def replace_draft(template: Template, declaration: dict[str, Any], report: dict[str, Any]) -> None:
    template.draft, template.draft_report = declaration, report
    if template.current_version is None:  # what a published template shows changes only when published
        template.title = _title(declaration, template.name)
        template.description = _description(declaration)
    template.updated_at = utcnow()


def set_draft_report(template: Template, report: dict[str, Any]) -> None:
    template.draft_report = report
    template.updated_at = utcnow()


@dataclass(frozen=True)
class Publication:
    """What publishing stores: the version's content and what validation found."""

    title: str
    description: str
    spec: dict[str, Any]
    needs: dict[str, Any]
    lane: str
    report: dict[str, Any]


async def publish(
    session: AsyncSession, template: Template, publication: Publication, created_by: str | None
) -> tuple[TemplateVersion, bool]:
    """Version N+1 made current, or the existing version with the same content (then False)."""
    sha = content_sha256(publication.spec)
    existing = await session.scalar(
        select(TemplateVersion).where(
            TemplateVersion.template_id == template.id, TemplateVersion.content_sha256 == sha
        )
    )
    created = existing is None
    if existing is None:
        last = await session.scalar(
            select(func.max(TemplateVersion.version)).where(TemplateVersion.template_id == template.id)
        )
        existing = TemplateVersion(
            template_id=template.id,
            version=(last or 0) + 1,
            spec=publication.spec,
            needs=publication.needs,
            report=publication.report,
            lane=publication.lane,
            content_sha256=sha,
            created_by=created_by,
        )
        session.add(existing)
        await session.flush()
    template.current_version = existing.version
    template.title, template.description = publication.title, publication.description
    template.draft, template.draft_report = None, None
    template.updated_at = utcnow()
    return existing, created


async def rollback(session: AsyncSession, template: Template, number: int) -> TemplateVersion:
    """Make an earlier (or later) published version current again."""
    target = await version(session, template, number)
    template.current_version = target.version
    template.updated_at = utcnow()
    return target


def retire(template: Template) -> None:
    if template.current_version is None:
        raise Conflict(f"{template.name!r} was never published.", code="template_not_published")
    if template.retired_at is None:
        template.retired_at = utcnow()
        template.updated_at = template.retired_at


def restore(template: Template) -> None:
    if template.retired_at is not None:
        template.retired_at = None
        template.updated_at = utcnow()


async def runnable(
    session: AsyncSession, name: str, number: int | None, *, pinned: bool = False
) -> tuple[Template, TemplateVersion]:
    """The template and version a new job runs: 404 for an unknown or never-published template, 409
    `template_retired` for a retired one (unless `pinned`: render again of an old job still works)."""
    template = await find(session, name)
    if template is None or template.current_version is None:
        raise not_found(name)
    if template.retired_at is not None and not pinned:
        raise Conflict(
            f"The template {name!r} was retired; it starts no new renders.",
            code="template_retired",
            details=[{"field": "template", "message": "retired"}],
        )
    chosen = await version(session, template, number or template.current_version)
    return template, chosen
