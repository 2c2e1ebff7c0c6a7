"""Browsers' backend sessions: what a designer holds after signing in (password or identity provider).

A session token reads `ses_<random>`; only its SHA-256 is stored (`SignInSession`). It lives
SESSION_IDLE_S past its last request (pushed back at most every TOUCH_S, not on every request) and never
past SESSION_MAX_S after sign-in. Sign-out revokes one session; disabling an account or changing its role
revokes all of them (`revoke_all`, in the transaction of the change), and the API processes' token caches
drop the designer's entries at commit (`notify.designer_changed`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend import notify
from backend.db import SessionMaker, read_session, writing
from backend.models import Designer, SignInSession, utcnow

SESSION_PREFIX = "ses_"
TOKEN_BYTES = 32
TOUCH_S = 60.0  # a session's expiry is pushed back at most this often (each push is a write)


def is_session_token(token: str) -> bool:
    return token.startswith(SESSION_PREFIX)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionGrant:
    """A live session as the token cache keeps it."""

    session_id: str
    designer: Designer
    expires_at: datetime


async def start(
    session: AsyncSession, designer: Designer, method: str, idle_s: float, max_s: float
) -> tuple[str, SignInSession]:
    """A new session for `designer` (in the caller's transaction): its token, shown once, and its row."""
    token = SESSION_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    row = SignInSession(
        designer_id=designer.id,
        token_hash=_hash(token),
        method=method,
        created_at=now,
        last_seen_at=now,
        expires_at=min(now + timedelta(seconds=idle_s), now + timedelta(seconds=max_s)),
        max_expires_at=now + timedelta(seconds=max_s),
    )
    session.add(row)
    designer.last_sign_in_at = now
    return token, row


async def lookup(sessionmaker: SessionMaker, token: str, idle_s: float) -> SessionGrant | None:
    """The live session of `token` and its active designer (its expiry pushed back if due), or None."""
    reader = await read_session(sessionmaker)
    async with reader:
        found = (
            await reader.execute(
                select(SignInSession, Designer)
                .join(Designer, Designer.id == SignInSession.designer_id)
                .where(SignInSession.token_hash == _hash(token))
            )
        ).first()
    if found is None:
        return None
    row, designer = found
    now = utcnow()
    if row.revoked_at is not None or row.expires_at <= now or not designer.is_active:
        return None
    if (now - row.last_seen_at).total_seconds() >= TOUCH_S:
        row.expires_at = await _touch(sessionmaker, row, now, idle_s)
    return SessionGrant(row.id, designer, row.expires_at)


async def _touch(sessionmaker: SessionMaker, row: SignInSession, now: datetime, idle_s: float) -> datetime:
    expires_at = min(now + timedelta(seconds=idle_s), row.max_expires_at)
    async with sessionmaker() as session, writing(session):
        await session.execute(
            update(SignInSession)
            .where(SignInSession.id == row.id, SignInSession.revoked_at.is_(None))
            .values(last_seen_at=now, expires_at=expires_at)
        )
    return expires_at


async def revoke(session: AsyncSession, session_id: str, designer_id: str, reason: str) -> None:
    """End one session (in the caller's transaction)."""
    await session.execute(
        update(SignInSession)
        .where(SignInSession.id == session_id, SignInSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    notify.designer_changed(session, designer_id)


async def revoke_all(session: AsyncSession, designer_id: str, reason: str) -> None:
    """End every session of a designer (in the caller's transaction): disabled, role changed, new password."""
    await session.execute(
        update(SignInSession)
        .where(SignInSession.designer_id == designer_id, SignInSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    notify.designer_changed(session, designer_id)
