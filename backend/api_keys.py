"""Integration keys: made, counted and refused here; `auth.authenticate` calls in for a key.

A key reads `sk_studio_<public id>_<secret>`: the prefix lets `authenticate` tell it from a designer's
token, and lets listings and logs name a key without revealing it. Only the SHA-256 of the whole key is
stored: the secret is 256 random bits, so no salt or slow hash is needed to make reversing the digest
infeasible (a slow hash protects guessable passwords, not random keys), and an equality lookup on an
indexed digest stays one cheap statement.

Every request with a key runs one conditional UPDATE (`consume`) on the key's row, matching its digest,
not revoked, under its per-minute rate and (for a render) its daily quota; it counts the request and
stamps the last use. The counters are global, whatever the number of API processes, and revoking or
rotating (the old digest matches nothing) is effective on the next request in every process, without
waiting for the token cache to be told.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db import SessionMaker, read_session, writing
from backend.errors import RateLimited, Unauthorized
from backend.models import ApiKey, Designer, utcnow

KEY_PREFIX = "sk_studio_"
PUBLIC_ID_BYTES = 4
SECRET_BYTES = 32
SCOPES = ("read", "render")
DAY_S = 86_400
MINUTE_S = 60


@dataclass(frozen=True)
class KeyLimits:
    """The deployment's defaults (Settings); a key may only lower them."""

    rate_per_minute: int
    renders_per_day: int


@dataclass(frozen=True)
class KeyGrant:
    """What a key may do, as cached beside its designer."""

    key_id: str
    rate_per_minute: int | None
    renders_per_day: int | None

    def limits(self, defaults: KeyLimits) -> KeyLimits:
        return KeyLimits(
            min(self.rate_per_minute or defaults.rate_per_minute, defaults.rate_per_minute),
            min(self.renders_per_day or defaults.renders_per_day, defaults.renders_per_day),
        )


def is_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its public prefix (the part listings show)."""
    prefix = f"{KEY_PREFIX}{secrets.token_hex(PUBLIC_ID_BYTES)}"
    return f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}", prefix


def parse_scopes(scopes: str) -> frozenset[str]:
    return frozenset(s for s in scopes.split(",") if s)


async def lookup_key(sessionmaker: SessionMaker, key: str) -> tuple[ApiKey, Designer] | None:
    """The live key and its active designer, or None."""
    session = await read_session(sessionmaker)
    async with session:
        row = (
            await session.execute(
                select(ApiKey, Designer)
                .join(Designer, Designer.id == ApiKey.designer_id)
                .where(ApiKey.secret_hash == hash_key(key), ApiKey.revoked_at.is_(None))
                .where(Designer.is_active)
            )
        ).first()
    return (row[0], row[1]) if row is not None else None


def _windows(now_s: float) -> tuple[int, int]:
    return int(now_s // MINUTE_S), int(now_s // DAY_S)


async def consume(
    sessionmaker: SessionMaker, key: str, grant: KeyGrant, defaults: KeyLimits, *, render: bool
) -> None:
    """Count one request (and one render) against the key, or raise 401 (revoked, rotated) or 429."""
    limits = grant.limits(defaults)
    now_s = time.time()
    minute, day = _windows(now_s)
    values: dict[str, object] = {
        "rate_count": case((ApiKey.rate_window == minute, ApiKey.rate_count + 1), else_=1),
        "rate_window": minute,
        "last_used_at": utcnow(),
    }
    statement = update(ApiKey).where(
        ApiKey.secret_hash == hash_key(key),
        ApiKey.revoked_at.is_(None),
        or_(ApiKey.rate_window != minute, ApiKey.rate_count < limits.rate_per_minute),
    )
    if render:
        values["quota_count"] = case((ApiKey.quota_day == day, ApiKey.quota_count + 1), else_=1)
        values["quota_day"] = day
        statement = statement.where(or_(ApiKey.quota_day != day, ApiKey.quota_count < limits.renders_per_day))
    async with sessionmaker() as session, writing(session):
        counted = await session.scalar(statement.values(values).returning(ApiKey.id))
    if counted is None:
        await _refuse(sessionmaker, key, limits, now_s)


async def _refuse(sessionmaker: SessionMaker, key: str, limits: KeyLimits, now_s: float) -> None:
    """Why `consume` counted nothing: the key is gone (401), or a limit is reached (429)."""
    session = await read_session(sessionmaker)
    async with session:
        row = await _live_key(session, key)
    minute, day = _windows(now_s)
    if row is None:
        raise Unauthorized(
            "This API key is not valid (wrong, revoked or rotated).", headers={"WWW-Authenticate": "Bearer"}
        )
    if row.rate_window == minute and row.rate_count >= limits.rate_per_minute:
        raise RateLimited(
            f"This API key may make {limits.rate_per_minute} requests a minute; wait for the next minute.",
            headers={"Retry-After": str(max(1, math.ceil(MINUTE_S - now_s % MINUTE_S)))},
            code="key_rate_limited",
        )
    if row.quota_day != day or row.quota_count < limits.renders_per_day:  # a window turned meanwhile
        raise RateLimited(
            "Too many requests with this API key; retry.",
            headers={"Retry-After": "1"},
            code="key_rate_limited",
        )
    raise RateLimited(
        f"This API key may start {limits.renders_per_day} renders a day (UTC); it has used them all.",
        headers={"Retry-After": str(max(1, math.ceil(DAY_S - now_s % DAY_S)))},
        code="key_quota_exceeded",
    )


async def _live_key(session: AsyncSession, key: str) -> ApiKey | None:
    return await session.scalar(
        select(ApiKey).where(ApiKey.secret_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )
