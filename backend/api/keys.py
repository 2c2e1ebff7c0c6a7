"""API keys: a designer makes, lists, rotates and revokes their own (with their designer token only).

The key itself is in the answer to create and rotate, and nowhere else. Rotating and revoking tell every
API process's token cache (`notify.designer_changed`), and `api_keys.consume` refuses the old secret
on its next request in any case.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend import audit, notify
from backend.api.deps import KeyManager, ReadSessionDep, SessionDep, SettingsDep
from backend.api_keys import hash_key, new_key
from backend.audit import Actor
from backend.auth import Principal
from backend.config import Settings
from backend.db import writing
from backend.errors import InvalidInput, NotFound
from backend.models import ApiKey, utcnow
from backend.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyOut, is_entity_id

router = APIRouter(prefix="/api", tags=["keys"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    403: {"description": "an API key cannot manage keys (insufficient_scope)"},
    404: {"description": "no such key for this designer"},
    422: {"description": "invalid request (details per field)"},
}


def key_out(key: ApiKey, settings: Settings) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=sorted(s for s in key.scopes.split(",") if s),
        rate_limit_per_minute=key.rate_limit_per_minute or settings.api_key_rate_per_minute,
        renders_per_day=key.renders_per_day or settings.api_key_renders_per_day,
        created_at=key.created_at,
        rotated_at=key.rotated_at,
        last_used_at=key.last_used_at,
    )


def _check_limits(body: ApiKeyCreate, settings: Settings) -> None:
    for field, value, most in (
        ("rate_limit_per_minute", body.rate_limit_per_minute, settings.api_key_rate_per_minute),
        ("renders_per_day", body.renders_per_day, settings.api_key_renders_per_day),
    ):
        if value is not None and value > most:
            raise InvalidInput(
                f"{field} may be at most {most} (this deployment's limit)",
                code="key_limit_too_high",
                details=[{"field": field, "message": f"at most {most}"}],
            )


async def _own_key(session: AsyncSession, designer: Principal, key_id: str) -> ApiKey:
    """The designer's live key, or 404 (someone else's key is a 404 too: nothing leaks)."""
    key = await session.get(ApiKey, key_id) if is_entity_id(key_id) else None
    if key is None or key.designer_id != designer.id or key.revoked_at is not None:
        raise NotFound(f"No API key {key_id!r}.", code="key_not_found")
    return key


def _audit(session: AsyncSession, action: str, designer: Principal, key: ApiKey) -> None:
    details = {"name": key.name, "prefix": key.prefix, "scopes": key.scopes}  # the prefix is public
    audit.record(
        session, action, Actor(designer.id, designer.name), target=("api_key", key.id), details=details
    )


@router.post(
    "/keys", status_code=201, response_model=ApiKeyCreated, responses=ERRORS, summary="Make an API key"
)
async def create_key(
    body: ApiKeyCreate, settings: SettingsDep, session: SessionDep, designer: KeyManager
) -> ApiKeyCreated:
    """The answer's `key` is shown this once: only its SHA-256 is stored."""
    _check_limits(body, settings)
    secret, prefix = new_key()
    key = ApiKey(
        designer_id=designer.id,
        name=body.name,
        prefix=prefix,
        secret_hash=hash_key(secret),
        scopes=",".join(sorted(set(body.scopes))),
        rate_limit_per_minute=body.rate_limit_per_minute,
        renders_per_day=body.renders_per_day,
        created_at=utcnow(),
    )
    async with writing(session):
        session.add(key)
        await session.flush()
        _audit(session, "key_created", designer, key)
    return ApiKeyCreated(**key_out(key, settings).model_dump(), key=secret)


@router.get("/keys", response_model=ApiKeyList, responses=ERRORS, summary="The designer's live API keys")
async def list_keys(settings: SettingsDep, session: ReadSessionDep, designer: KeyManager) -> ApiKeyList:
    keys = await session.scalars(
        select(ApiKey)
        .where(ApiKey.designer_id == designer.id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return ApiKeyList(items=[key_out(k, settings) for k in keys])


@router.post(
    "/keys/{key_id}/rotate", response_model=ApiKeyCreated, responses=ERRORS, summary="A new secret for a key"
)
async def rotate_key(
    key_id: str, settings: SettingsDep, session: SessionDep, designer: KeyManager
) -> ApiKeyCreated:
    """Same name, scopes and limits; the old secret stops working at once."""
    secret, prefix = new_key()
    async with writing(session):
        key = await _own_key(session, designer, key_id)
        key.secret_hash, key.prefix, key.rotated_at = hash_key(secret), prefix, utcnow()
        notify.designer_changed(session, designer.id)
        _audit(session, "key_rotated", designer, key)
    return ApiKeyCreated(**key_out(key, settings).model_dump(), key=secret)


@router.delete("/keys/{key_id}", status_code=204, responses=ERRORS, summary="Revoke an API key")
async def revoke_key(key_id: str, session: SessionDep, designer: KeyManager) -> Response:
    async with writing(session):
        key = await _own_key(session, designer, key_id)
        key.revoked_at = utcnow()
        notify.designer_changed(session, designer.id)
        _audit(session, "key_revoked", designer, key)
    return Response(status_code=204)
