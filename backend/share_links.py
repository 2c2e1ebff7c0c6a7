"""Clients' share links: made, listed, revoked by their designer; opened by anyone holding the link.

The token is 256-bit random and shown once; only its SHA-256 is stored (as designers' tokens are), so
a link cannot be read back from the database. A link's images are looked up when it is opened: a
project's are what is filed in it then; a selection's are its image ids. Each use bumps the link's
count and appends an audit event `share_link_used` (a use of a revoked or expired link too, as a
failure), in one transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend import audit, projects
from backend.models import Image, utcnow
from backend.project_models import Project, ShareLink
from backend.project_schemas import ShareLinkCreate, ShareLinkOut

TOKEN_BYTES = 32
MAX_LIFE = timedelta(days=90)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def state(link: ShareLink, now: datetime | None = None) -> str:
    """active, revoked or expired."""
    if link.revoked_at is not None:
        return "revoked"
    return "expired" if (now or utcnow()) >= link.expires_at else "active"


def link_out(link: ShareLink) -> ShareLinkOut:
    return ShareLinkOut(
        id=link.id,
        title=link.title,
        scope="project" if link.image_ids is None else "selection",
        project_id=link.project_id,
        image_ids=link.image_ids,
        created_at=link.created_at,
        expires_at=link.expires_at,
        revoked_at=link.revoked_at,
        access_count=link.access_count,
        last_access_at=link.last_access_at,
        active=state(link) == "active",
    )


def expiry(body: ShareLinkCreate, now: datetime) -> datetime | None:
    """When the link ends; None when `expires_at` is past or over 90 days ahead."""
    if body.expires_at is None:
        return now + timedelta(days=body.expires_in_days or 14)
    return body.expires_at if now < body.expires_at <= now + MAX_LIFE else None


def create(
    session: AsyncSession,
    designer_id: str,
    title: str,
    expires_at: datetime,
    scope: tuple[Project | None, list[Image] | None],
) -> tuple[ShareLink, str]:
    """A new link (and its token, never stored) in the session's open transaction. `scope`: the project,
    and the selection (None: the whole project)."""
    token = new_token()
    project, selection = scope
    link = ShareLink(
        designer_id=designer_id,
        project_id=project.id if project is not None else None,
        image_ids=None if selection is None else [i.id for i in selection],
        title=title[:100],
        token_hash=hash_token(token),
        created_at=utcnow(),
        expires_at=expires_at,
        access_count=0,
    )
    session.add(link)
    return link, token


async def by_token(session: AsyncSession, token: str) -> ShareLink | None:
    link: ShareLink | None = await session.scalar(
        select(ShareLink).where(ShareLink.token_hash == hash_token(token))
    )
    return link


async def images(session: AsyncSession, link: ShareLink) -> list[Image]:
    """What the link shows now: the project's renders, or the selection's images that still exist."""
    if link.image_ids is None:
        return await projects.project_images(session, link.project_id or "")
    ids = list(link.image_ids)
    rows = {
        i.id: i
        for i in await session.scalars(
            select(Image).where(Image.id.in_(ids), Image.designer_id == link.designer_id)
        )
    }
    return [rows[i] for i in ids if i in rows]


@dataclass(frozen=True)
class Access:
    what: str  # page, image or download
    ip: str
    image_id: str | None = None


def record_use(session: AsyncSession, link: ShareLink, access: Access, outcome: str) -> None:
    """One audit line for one use of the link ("failure" with the reason when it no longer works)."""
    details: dict[str, str] = {"what": access.what}
    if access.image_id:
        details["image_id"] = access.image_id
    audit.record(
        session,
        "share_link_used",
        audit.Actor(None, "share link"),
        outcome="success" if outcome == "active" else "failure",
        reason="" if outcome == "active" else outcome,
        target=("share_link", link.id),
        ip=access.ip,
        details=details,
    )


async def count_use(session: AsyncSession, link: ShareLink) -> None:
    await session.execute(
        update(ShareLink)
        .where(ShareLink.id == link.id)
        .values(access_count=ShareLink.access_count + 1, last_access_at=utcnow())
    )
