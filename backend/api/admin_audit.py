"""The audit log for admins: a page of lines with filters, and the whole selection as JSON lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from backend import audit
from backend.account_schemas import AuditActions, AuditEventOut, AuditPage
from backend.api.deps import AdminDep, ReadSessionDep, SessionMakerDep
from backend.audit import AuditFilter
from backend.db import read_session

router = APIRouter(prefix="/api/admin", tags=["admin"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    403: {"description": "this needs the admin role (forbidden_role)"},
    422: {"description": "invalid request (details per field)"},
}
ACTION_PATTERN = "^(" + "|".join(sorted(audit.ACTIONS)) + ")$"
ID_FILTER = r"^[A-Za-z0-9_.:-]{1,100}$"


async def audit_page(session: AsyncSession, where: AuditFilter, limit: int) -> AuditPage:
    events = await audit.page(session, where, limit + 1)
    more = len(events) > limit
    items = [AuditEventOut(**audit.as_dict(e)) for e in events[:limit]]
    return AuditPage(items=items, next_cursor=str(items[-1].id) if more and items else None)


Outcome = Annotated[str | None, Query(pattern="^(success|failure)$")]
Cursor = Annotated[str | None, Query(pattern=r"^\d{1,18}$", description="next_cursor of the page before")]


def _filter(
    action: Annotated[str | None, Query(pattern=ACTION_PATTERN)] = None,
    outcome: Outcome = None,
    actor_id: Annotated[str | None, Query(pattern=ID_FILTER)] = None,
    target_id: Annotated[str | None, Query(pattern=ID_FILTER)] = None,
    since: Annotated[datetime | None, Query(description="from this time (ISO 8601, with its zone)")] = None,
    until: Annotated[datetime | None, Query(description="before this time")] = None,
) -> AuditFilter:
    return AuditFilter(action, outcome, actor_id, target_id, since, until)


FilterDep = Annotated[AuditFilter, Depends(_filter)]


@router.get(
    "/audit/actions",
    response_model=AuditActions,
    responses=ERRORS,
    summary="The actions the audit log records",
)
async def audit_actions(_admin: AdminDep) -> AuditActions:
    """Every value `action` takes (the admin page's filter lists them from here)."""
    return AuditActions(actions=sorted(audit.ACTIONS))


@router.get("/audit", response_model=AuditPage, responses=ERRORS, summary="The audit log, newest first")
async def list_audit(
    session: ReadSessionDep,
    _admin: AdminDep,
    where: FilterDep,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    return await audit_page(session, replace(where, before_id=int(cursor) if cursor else None), limit)


@router.get(
    "/audit/export",
    responses={
        **ERRORS,
        200: {"content": {"application/jsonl": {}}, "description": "one JSON object a line"},
    },
    response_class=StreamingResponse,
    summary="The audit log as JSON lines",
)
async def export_audit(
    sessionmaker: SessionMakerDep, _admin: AdminDep, where: FilterDep
) -> StreamingResponse:
    """Every line the filters select, newest first (the same filters as the listing)."""

    async def lines() -> AsyncIterator[bytes]:
        session = await read_session(sessionmaker)
        async with session:
            async for line in audit.export_lines(session, where):
                yield line

    headers = {"Content-Disposition": 'attachment; filename="audit.jsonl"'}
    return StreamingResponse(lines(), media_type="application/jsonl", headers=headers)
