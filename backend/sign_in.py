"""Email and password sign-in, its throttle, and the one-time links that set a password.

No enumeration: an unknown email, a wrong password, a disabled account and an account without a password
all answer the same 401 `invalid_credentials` after the same work (one argon2 verification, against a
dummy hash where there is no account, then one write of the throttle and the audit line). The throttle is
kept per email whether or not an account has it: after SIGN_IN_MAX_FAILURES failures in a row the email
is locked for SIGN_IN_LOCKOUT_S, doubling with each further failure up to SIGN_IN_LOCKOUT_MAX_S; a
success clears it. The audit log (admins only) records the true reason.

Links (an invitation or a reset, made by an admin) read `<STUDIO_URL>/?reset=<token>`: the token is
random, stored as SHA-256, works once (a conditional UPDATE claims it), expires after
PASSWORD_RESET_TTL_S and replaces the designer's earlier links. Setting a password ends every session.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend import audit, sessions
from backend.audit import Actor
from backend.config import Settings
from backend.db import SessionMaker, read_session, writing
from backend.errors import InvalidInput, NotFound, RateLimited, Unauthorized
from backend.models import Designer, PasswordReset, SignInSession, SignInThrottle, utcnow
from backend.passwords import hash_password, policy_problem, verify_password

RESET_PREFIX = "pwr_"
WRONG = "Wrong email or password."  # the one message of every refused sign-in


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _throttle_key(email: str) -> str:
    return hashlib.sha256(f"email:{normalize_email(email)}".encode()).hexdigest()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _locked_for(sessionmaker: SessionMaker, key: str) -> float:
    """Seconds the email stays locked (0: not locked)."""
    reader = await read_session(sessionmaker)
    async with reader:
        locked_until = await reader.scalar(
            select(SignInThrottle.locked_until).where(SignInThrottle.key_hash == key)
        )
    return 0.0 if locked_until is None else max(0.0, (locked_until - utcnow()).total_seconds())


async def sign_in(
    sessionmaker: SessionMaker, settings: Settings, email: str, password: str, ip: str
) -> tuple[str, SignInSession, Designer]:
    """A new session for the designer with this email and password; 401 or 429 otherwise."""
    key = _throttle_key(email)
    wait_s = await _locked_for(sessionmaker, key)
    if wait_s > 0:
        async with sessionmaker() as session, writing(session):
            audit.record(session, "sign_in", Actor(None), outcome="failure", reason="locked", ip=ip)
        raise RateLimited(
            "Too many failed sign-ins: try again later, or ask your studio admin for a reset link.",
            code="sign_in_locked",
            headers={"Retry-After": str(math.ceil(wait_s))},
        )
    reader = await read_session(sessionmaker)
    async with reader:
        designer = await reader.scalar(select(Designer).where(Designer.email == normalize_email(email)))
    matches = await verify_password(password, designer.password_hash if designer else None)
    async with sessionmaker() as session, writing(session):
        if designer is None or not matches or not designer.is_active:
            reason = _failure_reason(designer, matches)
            target = ("designer", designer.id) if designer else ("", "")
            await _count_failure(session, settings, key)
            audit.record(
                session, "sign_in", Actor(None), outcome="failure", reason=reason, target=target, ip=ip
            )
        else:
            await session.execute(delete(SignInThrottle).where(SignInThrottle.key_hash == key))
            designer = await session.get(Designer, designer.id)
            assert designer is not None  # designers are never deleted
            token, row = await sessions.start(
                session, designer, "password", settings.session_idle_s, settings.session_max_s
            )
            actor = Actor(designer.id, designer.name)
            audit.record(session, "sign_in", actor, target=("designer", designer.id), ip=ip,
                         details={"method": "password"})  # fmt: skip
            return token, row, designer
    raise Unauthorized(WRONG, code="invalid_credentials")


def _failure_reason(designer: Designer | None, matches: bool) -> str:
    if designer is None:
        return "unknown_account"
    if designer.password_hash is None:
        return "no_password"
    if not matches:
        return "wrong_password"
    return "disabled"


async def _count_failure(session: AsyncSession, settings: Settings, key: str) -> None:
    now = utcnow()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(SignInThrottle).values(key_hash=key, failures=1, updated_at=now)
    failures = await session.scalar(
        stmt.on_conflict_do_update(
            index_elements=[SignInThrottle.key_hash],
            set_={"failures": SignInThrottle.failures + 1, "updated_at": now},
        ).returning(SignInThrottle.failures)
    )
    over = (failures or 0) - settings.sign_in_max_failures
    if over >= 0:
        lock_s = min(settings.sign_in_lockout_s * 2**over, settings.sign_in_lockout_max_s)
        await session.execute(
            update(SignInThrottle)
            .where(SignInThrottle.key_hash == key)
            .values(locked_until=now + timedelta(seconds=lock_s))
        )


# --------------------------------------------------------------------- one-time links


async def create_link(
    session: AsyncSession, settings: Settings, designer: Designer, created_by: str | None
) -> tuple[str, datetime]:
    """A new one-time link for `designer` (its earlier ones stop working), in the caller's transaction."""
    now = utcnow()
    await session.execute(
        update(PasswordReset)
        .where(PasswordReset.designer_id == designer.id, PasswordReset.used_at.is_(None))
        .values(expires_at=now)
    )
    token = RESET_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=settings.password_reset_ttl_s)
    session.add(
        PasswordReset(
            designer_id=designer.id,
            token_hash=_hash(token),
            created_by=created_by,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return f"{settings.studio_url.rstrip('/')}/?{urlencode({'reset': token})}", expires_at


async def set_password(
    sessionmaker: SessionMaker, settings: Settings, token: str, password: str, ip: str
) -> str:
    """Set the password of a link's designer, using the link up; the designer's email."""
    # A 404: the link names no usable reset (a well-formed request about something that is not there).
    invalid = NotFound(
        "This link is not valid: it was used, it expired or a newer one replaced it. "
        "Ask your studio admin for a new one.",
        code="reset_link_invalid",
    )
    reader = await read_session(sessionmaker)
    async with reader:
        found = (
            await reader.execute(
                select(PasswordReset, Designer)
                .join(Designer, Designer.id == PasswordReset.designer_id)
                .where(PasswordReset.token_hash == _hash(token))
            )
        ).first()
    if found is None or found[0].used_at is not None or found[0].expires_at <= utcnow():
        raise invalid
    link, designer = found
    problem = policy_problem(
        password, settings.password_min_length, name=designer.name, email=designer.email or ""
    )
    if problem:
        raise InvalidInput(
            f"This password cannot be used: {problem}.",
            code="weak_password",
            details=[{"field": "password", "message": problem}],
        )
    password_hash = await hash_password(password)
    async with sessionmaker() as session, writing(session):
        claimed = await session.execute(
            update(PasswordReset)
            .where(
                PasswordReset.id == link.id,
                PasswordReset.used_at.is_(None),
                PasswordReset.expires_at > utcnow(),
            )
            .values(used_at=utcnow())
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise invalid  # used (or replaced) meanwhile
        await session.execute(
            update(Designer).where(Designer.id == designer.id).values(password_hash=password_hash)
        )
        await sessions.revoke_all(session, designer.id, "password_set")
        if designer.email:
            key = _throttle_key(designer.email)
            await session.execute(delete(SignInThrottle).where(SignInThrottle.key_hash == key))
        audit.record(session, "password_set", Actor(designer.id, designer.name),
                     target=("designer", designer.id), ip=ip)  # fmt: skip
    return designer.email or ""
