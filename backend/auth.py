"""Designers' bearer tokens: random, shown once, stored as SHA-256 (they are 256-bit random, so no salt
or slow hash is needed to make them infeasible to reverse). `authenticate` is behind
`api.deps.CurrentDesigner`, which guards every /api route."""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db import SessionMaker, read_session
from backend.errors import Unauthorized
from backend.models import Designer

TOKEN_BYTES = 32
CACHE_TTL_S = 30.0  # a revoked token's entry lives at most this long where the revocation's notice is lost


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    """token hash → (designer id, name, expiry): spares a query on every request.

    Safe under revocation: `users.py disable|rotate` notifies every API process (`notify.DESIGNERS`),
    whose caches then `forget` the designer at once; the TTL bounds an entry whose notice was lost
    (a worker's notification connection down at that moment)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, str, float]] = {}

    def get(self, token_hash: str) -> tuple[str, str] | None:
        entry = self._entries.get(token_hash)
        if entry is None or entry[2] < time.monotonic():
            self._entries.pop(token_hash, None)
            return None
        return entry[0], entry[1]

    def forget(self, designer_id: str) -> None:
        stale = [h for h, entry in self._entries.items() if entry[0] == designer_id]
        for token_hash in stale:
            self._entries.pop(token_hash, None)

    def put(self, token_hash: str, designer_id: str, name: str) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[token_hash] = (designer_id, name, time.monotonic() + CACHE_TTL_S)


class Principal:
    __slots__ = ("id", "name")

    def __init__(self, designer_id: str, name: str) -> None:
        self.id = designer_id
        self.name = name


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def lookup(session: AsyncSession, token: str) -> Designer | None:
    designer = await session.scalar(select(Designer).where(Designer.token_hash == hash_token(token)))
    return designer if designer is not None and designer.is_active else None


async def authenticate(cache: TokenCache, sessionmaker: SessionMaker, token: str | None) -> Principal:
    if not token:
        raise Unauthorized(
            "Send your designer token as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token_hash = hash_token(token)
    hit = cache.get(token_hash)
    if hit is not None:
        return Principal(*hit)
    session = await read_session(sessionmaker)
    async with session:
        designer = await lookup(session, token)
    if designer is None:
        raise Unauthorized(
            "This token is not valid (wrong, revoked or expired).", headers={"WWW-Authenticate": "Bearer"}
        )
    cache.put(token_hash, designer.id, designer.name)
    return Principal(designer.id, designer.name)
