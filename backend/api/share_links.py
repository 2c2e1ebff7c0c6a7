"""Share links: a designer makes, lists and revokes them (`/api/share-links`); a client opens one
without an account (`/s/{token}`: an HTML page, and its images under `/s/{token}/images/{image_id}`).

The public routes answer only what the link names: its renders, large, and their PNGs. Someone else's
link (or one that does not exist) is a 404 for its designer's routes; a revoked link is a 404 and an
expired one a 410 for the client, and every use, working or not, is an audit event.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend import audit, projects, share_links
from backend.api.account import client_ip
from backend.api.deps import CurrentDesigner, ReadSessionDep, SessionDep, StorageDep
from backend.api.images import serve_stored
from backend.db import writing
from backend.errors import AppError, InvalidInput, NotFound
from backend.models import utcnow
from backend.project_models import Project, ShareLink
from backend.project_schemas import ShareLinkCreate, ShareLinkCreated, ShareLinkList, ShareLinkOut
from backend.schemas import ID_PATTERN, is_entity_id
from backend.share_page import HEADERS, gone_page, render_page

router = APIRouter(prefix="/api", tags=["share links"])
public = APIRouter(tags=["share links"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    404: {"description": "no such project, image or link for this designer"},
}


class ShareLinkExpired(AppError):
    """This link has expired; ask your designer for a new one."""

    status_code = 410
    code = "share_link_expired"


# Any text: a malformed link is simply not found (a page, not a validation error, for the client's browser).
Token = Annotated[str, Path(max_length=200, description="the link's secret")]


@router.post(
    "/share-links",
    status_code=201,
    response_model=ShareLinkCreated,
    responses={**ERRORS, 422: {"description": "no scope, or an expiry out of range"}},
    summary="Make a read-only link to a project or a selection of renders, for a client",
)
async def create_share_link(
    body: ShareLinkCreate, request: Request, session: SessionDep, designer: CurrentDesigner
) -> ShareLinkCreated:
    now = utcnow()
    expires_at = share_links.expiry(body, now)
    if expires_at is None:
        raise InvalidInput(
            "expires_at must be in the future and at most 90 days ahead.",
            code="invalid_expiry",
            details=[{"field": "expires_at", "message": "in the future, at most 90 days ahead"}],
        )
    async with writing(session):
        project = selection = None
        if body.project_id is not None:
            project = await projects.own_project(session, designer.id, body.project_id)
        if body.image_ids is not None:
            selection = await projects.own_images(session, designer.id, body.image_ids)
        default = "Selected renders" if project is None else project.name
        link, token = share_links.create(
            session, designer.id, body.title or default, expires_at, (project, selection)
        )
        await session.flush()
        audit.record(
            session,
            "share_link_created",
            audit.Actor(designer.id, designer.name),
            target=("share_link", link.id),
            ip=client_ip(request),
            details={"project_id": link.project_id or "", "images": len(link.image_ids or [])},
        )
        out = share_links.link_out(link)
    url = f"{str(request.base_url).rstrip('/')}/s/{token}"
    return ShareLinkCreated(**out.model_dump(), url=url)


@router.get(
    "/share-links", response_model=ShareLinkList, responses=ERRORS, summary="The designer's share links"
)
async def list_share_links(
    session: ReadSessionDep,
    designer: CurrentDesigner,
    project_id: Annotated[str | None, Query(pattern=ID_PATTERN, description="only this project's")] = None,
) -> ShareLinkList:
    query = select(ShareLink).where(ShareLink.designer_id == designer.id)
    if project_id is not None:
        query = query.where(ShareLink.project_id == project_id)
    links = await session.scalars(query.order_by(ShareLink.created_at.desc()))
    return ShareLinkList(items=[share_links.link_out(link) for link in links])


@router.delete(
    "/share-links/{link_id}",
    response_model=ShareLinkOut,
    responses=ERRORS,
    summary="Revoke a share link: it stops working at once (revoking it again changes nothing)",
)
async def revoke_share_link(
    link_id: str, request: Request, session: SessionDep, designer: CurrentDesigner
) -> ShareLinkOut:
    async with writing(session):
        link = await session.get(ShareLink, link_id) if is_entity_id(link_id) else None
        if link is None or link.designer_id != designer.id:
            raise NotFound(f"No share link {link_id!r}.", code="share_link_not_found")
        if link.revoked_at is None:
            link.revoked_at = utcnow()
            audit.record(
                session,
                "share_link_revoked",
                audit.Actor(designer.id, designer.name),
                target=("share_link", link.id),
                ip=client_ip(request),
            )
        return share_links.link_out(link)


async def _open(
    session: AsyncSession, token: str, access: share_links.Access
) -> tuple[ShareLink | None, str]:
    """The link and its state, the use counted (when it works) and recorded (whenever the link exists)."""
    link = await share_links.by_token(session, token)
    if link is None:
        return None, "unknown"
    status = share_links.state(link)
    share_links.record_use(session, link, access, status)
    if status == "active" and access.what != "image":  # a page and its images are one visit
        await share_links.count_use(session, link)
    return link, status


@public.get(
    "/s/{token}",
    response_class=HTMLResponse,
    responses={
        404: {"description": "unknown or revoked link", "content": {"text/html": {}}},
        410: {"description": "expired link", "content": {"text/html": {}}},
    },
    summary="A share link's page: the renders large, each with its download (no account needed)",
)
async def share_page(token: Token, request: Request, session: SessionDep) -> HTMLResponse:
    async with writing(session):
        link, status = await _open(session, token, share_links.Access("page", client_ip(request)))
        if link is None or status != "active":
            code = 410 if status == "expired" else 404
            return HTMLResponse(gone_page(status == "expired"), status_code=code, headers=HEADERS)
        images = await share_links.images(session, link)
        project = await session.get(Project, link.project_id) if link.project_id else None
    subtitle = " · ".join(x for x in (project.client, project.room) if x) if project else ""
    shown = [(i.id, i.width, i.height) for i in images]
    return HTMLResponse(render_page(link.title, subtitle, shown, f"/s/{token}"), headers=HEADERS)


@public.get(
    "/s/{token}/images/{image_id}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the render, full size"},
        404: {"description": "unknown or revoked link, or an image it does not show"},
        410: {"description": "expired link"},
    },
    summary="A render a share link shows (no account needed)",
)
async def share_image(
    token: Token,
    image_id: str,
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    download: Annotated[bool, Query(description="as an attachment")] = False,
) -> Response:
    access = share_links.Access("download" if download else "image", client_ip(request), image_id[:36])
    async with writing(session):  # the use is recorded, whatever the answer
        link, status = await _open(session, token, access)
        works = link is not None and status == "active"
        shown = {i.id: i for i in await share_links.images(session, link)} if link and works else {}
    if link is None or status == "revoked":
        raise NotFound("This link is not valid.", code="share_link_not_found")
    if status == "expired":
        raise ShareLinkExpired()
    image = shown.get(image_id)
    if image is None:
        raise NotFound(f"No image {image_id!r} behind this link.", code="image_not_found")
    name = f"render-{image.index + 1}-{image.id[:8]}.png"
    response = await serve_stored(storage, image.storage_key, name, "image/png", download)
    response.headers["Cache-Control"] = "no-store"  # a revoked link stops showing it at once
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
