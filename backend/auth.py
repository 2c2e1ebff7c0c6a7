"""Designers' bearer tokens: random, shown once, stored as SHA-256 (they are 256-bit random, so no salt
or slow hash is needed to make them infeasible to reverse). `authenticate` is behind
`api.deps.CurrentDesigner`, which guards every /api route; it also takes integrations' API keys
(`api_keys.py`), which carry scopes and limits where a designer's token may do everything, and the
browsers' sign-in sessions (`sessions.py`), which act as the designer's own token until they end."""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend import api_keys, sessions
from backend.api_keys import KeyGrant, KeyLimits
from backend.db import SessionMaker, read_session
from backend.errors import Forbidden, Unauthorized
from backend.models import Designer, Role, utcnow

TOKEN_BYTES = 32
CACHE_TTL_S = 30.0  # a revoked token's entry lives at most this long where the revocation's notice is lost
DESIGNER_SCOPES = frozenset({"read", "render", "keys"})  # "keys" (managing keys): never an API key's


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    """token hash → (principal, expiry): spares a query on every request.

    Safe under revocation: `users.py disable|rotate` and the key routes notify every API process
    (`notify.DESIGNERS`), whose caches then `forget` the designer at once; the TTL bounds an entry whose
    notice was lost (a worker's notification connection down at that moment). An API key is also
    checked against the database on each request (`api_keys.consume`), so its entry never outlives it.
    `key_limits` are the deployment's limits of API keys (Settings)."""

    def __init__(self, key_limits: KeyLimits | None = None, session_idle_s: float = 8 * 3600) -> None:
        self._entries: dict[str, tuple[Principal, float]] = {}
        self.key_limits = key_limits or KeyLimits(rate_per_minute=60, renders_per_day=500)
        self.session_idle_s = session_idle_s

    def get(self, token_hash: str) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None or entry[1] < time.monotonic():
            self._entries.pop(token_hash, None)
            return None
        return entry[0]

    def forget(self, designer_id: str) -> None:
        stale = [h for h, entry in self._entries.items() if entry[0].id == designer_id]
        for token_hash in stale:
            self._entries.pop(token_hash, None)

    def put(self, token_hash: str, principal: Principal, ttl_s: float = CACHE_TTL_S) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[token_hash] = (principal, time.monotonic() + min(ttl_s, CACHE_TTL_S))


class Principal:
    """Who is calling: a designer, with their own token or a sign-in session (every scope) or with one of
    their API keys. `quotas`: the limits an admin set for the designer (None: the deployment's)."""

    __slots__ = (
        "id",
        "key",
        "max_active_jobs",
        "max_uploads_per_hour",
        "name",
        "role",
        "scopes",
        "session_id",
    )

    def __init__(
        self,
        designer_id: str,
        name: str,
        scopes: frozenset[str] = DESIGNER_SCOPES,
        key: KeyGrant | None = None,
        role: Role = Role.designer,
        session_id: str | None = None,
        quotas: tuple[int | None, int | None] = (None, None),
    ) -> None:
        self.id = designer_id
        self.name = name
        self.scopes = scopes
        self.key = key
        self.role = role
        self.session_id = session_id
        self.max_active_jobs, self.max_uploads_per_hour = quotas

    @classmethod
    def of(cls, designer: Designer, session_id: str | None = None) -> Principal:
        """The designer acting with their own token or a sign-in session."""
        quotas = (designer.max_active_jobs, designer.max_uploads_per_hour)
        return cls(designer.id, designer.name, role=Role(designer.role), session_id=session_id, quotas=quotas)

    def require_role(self, role: Role) -> None:
        """403 unless the designer's own token carries `role` or above (an API key acts as a designer)."""
        if self.key is None and self.role.at_least(role):
            return
        raise Forbidden(
            f"This needs the {role.value} role; an API key acts as a designer."
            if self.key is not None
            else f"This needs the {role.value} role.",
            code="forbidden_role",
            details=[{"field": "role", "message": f"requires {role.value}"}],
        )

    def require(self, scope: str) -> None:
        # "render" includes "read": a key that may start renders may follow them.
        if scope in self.scopes or (scope == "read" and "render" in self.scopes):
            return
        raise Forbidden(
            f"This API key lacks the {scope!r} scope." if self.key else f"This needs the {scope!r} scope.",
            code="insufficient_scope",
            details=[{"field": "scope", "message": f"requires {scope}"}],
        )


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def lookup(session: AsyncSession, token: str) -> Designer | None:
    designer = await session.scalar(select(Designer).where(Designer.token_hash == hash_token(token)))
    return designer if designer is not None and designer.is_active else None


async def authenticate(
    cache: TokenCache,
    sessionmaker: SessionMaker,
    token: str | None,
    scope: str = "read",
    *,
    render: bool = False,
) -> Principal:
    """The caller of a request that needs `scope` (`render`: it starts a render, counted by a key's quota)."""
    if not token:
        raise Unauthorized(
            "Send your designer token or API key as 'Authorization: Bearer <token>' "
            "(or the key as 'x-api-key: <key>').",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token_hash = hash_token(token)
    principal = cache.get(token_hash) or await _look_up(cache, sessionmaker, token, token_hash)
    principal.require(scope)
    if principal.key is not None:
        await api_keys.consume(sessionmaker, token, principal.key, cache.key_limits, render=render)
    return principal


async def _look_up(cache: TokenCache, sessionmaker: SessionMaker, token: str, token_hash: str) -> Principal:
    ttl_s = CACHE_TTL_S
    if sessions.is_session_token(token):
        grant = await sessions.lookup(sessionmaker, token, cache.session_idle_s)
        principal = None if grant is None else Principal.of(grant.designer, session_id=grant.session_id)
        if grant is not None:  # the cache never outlives the session
            ttl_s = (grant.expires_at - utcnow()).total_seconds()
    elif api_keys.is_api_key(token):
        principal = await _key_principal(sessionmaker, token)
    else:
        principal = await _designer_principal(sessionmaker, token)
    if principal is None:
        raise Unauthorized(
            "This token is not valid (wrong, revoked or expired).", headers={"WWW-Authenticate": "Bearer"}
        )
    cache.put(token_hash, principal, ttl_s)
    return principal


async def _key_principal(sessionmaker: SessionMaker, token: str) -> Principal | None:
    found = await api_keys.lookup_key(sessionmaker, token)
    if found is None:
        return None
    key, designer = found
    grant = KeyGrant(key.id, key.rate_limit_per_minute, key.renders_per_day)
    return Principal(designer.id, designer.name, api_keys.parse_scopes(key.scopes), grant)


async def _designer_principal(sessionmaker: SessionMaker, token: str) -> Principal | None:
    session = await read_session(sessionmaker)
    async with session:
        designer = await lookup(session, token)
    return None if designer is None else Principal.of(designer)
