"""The admin's routes: designer accounts (invite, role, disable, quotas, password links), every
designer's API keys, recent sign-ins. Each change writes its audit line in its own transaction, and a
role change or a disabling ends the designer's sessions there too (`sessions.revoke_all`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from backend import audit, notify, sessions, sign_in
from backend.account_schemas import (
    AdminKeyList,
    AdminKeyOut,
    AuditPage,
    PasswordLink,
    Quotas,
    UserInvite,
    UserInvited,
    UserList,
    UserOut,
    UserUpdate,
)
from backend.api.account import client_ip
from backend.api.admin_audit import Cursor, Outcome, audit_page
from backend.api.deps import AdminDep, ReadSessionDep, SessionDep, SettingsDep
from backend.api.keys import key_out
from backend.audit import Actor, AuditFilter
from backend.auth import Principal, hash_token, new_token
from backend.db import writing
from backend.errors import Conflict, NotFound
from backend.models import ApiKey, Designer, utcnow
from backend.schemas import is_entity_id

router = APIRouter(prefix="/api/admin", tags=["admin"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    403: {"description": "this needs the admin role (forbidden_role)"},
    404: {"description": "no such designer or key"},
    409: {"description": "the name or email is taken (account_exists)"},
    422: {"description": "invalid request (details per field)"},
}


def user_out(d: Designer) -> UserOut:
    return UserOut(
        id=d.id,
        name=d.name,
        email=d.email,
        role=d.role,
        is_active=d.is_active,
        has_password=d.password_hash is not None,
        oidc_linked=d.oidc_subject is not None,
        last_sign_in_at=d.last_sign_in_at,
        created_at=d.created_at,
        max_active_jobs=d.max_active_jobs,
        max_uploads_per_hour=d.max_uploads_per_hour,
    )


def _actor(admin: Principal) -> Actor:
    return Actor(admin.id, admin.name)


async def _designer(session: AsyncSession, designer_id: str) -> Designer:
    designer = await session.get(Designer, designer_id) if is_entity_id(designer_id) else None
    if designer is None:
        raise NotFound(f"No designer {designer_id!r}.", code="designer_not_found")
    return designer


@router.get("/users", response_model=UserList, responses=ERRORS, summary="Every designer account")
async def list_users(session: ReadSessionDep, _admin: AdminDep) -> UserList:
    designers = await session.scalars(select(Designer).order_by(Designer.name))
    return UserList(items=[user_out(d) for d in designers])


@router.post(
    "/users", status_code=201, response_model=UserInvited, responses=ERRORS, summary="Invite a designer"
)
async def invite_user(
    body: UserInvite, request: Request, settings: SettingsDep, session: SessionDep, admin: AdminDep
) -> UserInvited:
    """A new account and its one-time link to set a password (it may also sign in with the identity
    provider, by this email, once the provider says it is verified)."""
    async with writing(session):
        taken = await session.scalar(
            select(Designer.id).where((Designer.name == body.name) | (Designer.email == body.email))
        )
        if taken is not None:
            raise Conflict("A designer has this name or email already.", code="account_exists")
        designer = Designer(
            name=body.name, email=body.email, role=body.role, token_hash=hash_token(new_token())
        )
        designer.created_at = utcnow()
        session.add(designer)
        await session.flush()
        link, expires_at = await sign_in.create_link(session, settings, designer, admin.id)
        audit.record(session, "user_invited", _actor(admin), target=("designer", designer.id),
                     ip=client_ip(request), details={"role": body.role, "email": body.email})  # fmt: skip
    return UserInvited(user=user_out(designer), password_link=PasswordLink(link=link, expires_at=expires_at))


@router.patch(
    "/users/{designer_id}", response_model=UserOut, responses=ERRORS, summary="Change a role, disable"
)
async def update_user(
    designer_id: str, body: UserUpdate, request: Request, session: SessionDep, admin: AdminDep
) -> UserOut:
    """A new role or a disabling ends every session of the designer at once (other API processes drop
    the designer's cached tokens when this commits)."""
    async with writing(session):
        designer = await _designer(session, designer_id)
        ip, target = client_ip(request), ("designer", designer.id)
        if body.role is not None and body.role != designer.role:
            details = {"from": designer.role, "to": body.role}
            designer.role = body.role
            await sessions.revoke_all(session, designer.id, "role_changed")
            audit.record(session, "role_changed", _actor(admin), target=target, ip=ip, details=details)
        if body.is_active is not None and body.is_active != designer.is_active:
            designer.is_active = body.is_active
            await sessions.revoke_all(session, designer.id, "disabled" if not body.is_active else "enabled")
            action = "user_enabled" if body.is_active else "user_disabled"
            audit.record(session, action, _actor(admin), target=target, ip=ip)
    return user_out(designer)


@router.put(
    "/users/{designer_id}/quotas", response_model=UserOut, responses=ERRORS, summary="A designer's quotas"
)
async def set_quotas(
    designer_id: str, body: Quotas, request: Request, session: SessionDep, admin: AdminDep
) -> UserOut:
    async with writing(session):
        designer = await _designer(session, designer_id)
        before = {
            "max_active_jobs": designer.max_active_jobs,
            "max_uploads_per_hour": designer.max_uploads_per_hour,
        }
        designer.max_active_jobs, designer.max_uploads_per_hour = (
            body.max_active_jobs,
            body.max_uploads_per_hour,
        )
        notify.designer_changed(session, designer.id)  # cached principals carry the quotas
        audit.record(session, "quota_changed", _actor(admin), target=("designer", designer.id),
                     ip=client_ip(request), details={"from": before, "to": body.model_dump()})  # fmt: skip
    return user_out(designer)


@router.post(
    "/users/{designer_id}/password-link",
    status_code=201,
    response_model=PasswordLink,
    responses=ERRORS,
    summary="A one-time link to (re)set a password",
)
async def password_link(
    designer_id: str, request: Request, settings: SettingsDep, session: SessionDep, admin: AdminDep
) -> PasswordLink:
    """The designer's earlier links stop working; the password changes only when the link is used."""
    async with writing(session):
        designer = await _designer(session, designer_id)
        link, expires_at = await sign_in.create_link(session, settings, designer, admin.id)
        audit.record(session, "password_link_created", _actor(admin), target=("designer", designer.id),
                     ip=client_ip(request))  # fmt: skip
    return PasswordLink(link=link, expires_at=expires_at)


@router.get("/keys", response_model=AdminKeyList, responses=ERRORS, summary="Every designer's live API keys")
async def list_keys(settings: SettingsDep, session: ReadSessionDep, _admin: AdminDep) -> AdminKeyList:
    rows = await session.execute(
        select(ApiKey, Designer.name)
        .join(Designer, Designer.id == ApiKey.designer_id)
        .where(ApiKey.revoked_at.is_(None))
        .order_by(Designer.name, ApiKey.created_at.desc())
    )
    return AdminKeyList(
        items=[
            AdminKeyOut(
                **key_out(key, settings).model_dump(), designer_id=key.designer_id, designer_name=name
            )
            for key, name in rows
        ]
    )


@router.delete("/keys/{key_id}", status_code=204, responses=ERRORS, summary="Revoke any designer's API key")
async def revoke_key(key_id: str, request: Request, session: SessionDep, admin: AdminDep) -> Response:
    async with writing(session):
        key = await session.get(ApiKey, key_id) if is_entity_id(key_id) else None
        if key is None or key.revoked_at is not None:
            raise NotFound(f"No API key {key_id!r}.", code="key_not_found")
        key.revoked_at = utcnow()
        notify.designer_changed(session, key.designer_id)
        audit.record(session, "key_revoked", _actor(admin), target=("api_key", key.id), ip=client_ip(request),
                     details={"designer_id": key.designer_id, "prefix": key.prefix})  # fmt: skip
    return Response(status_code=204)


@router.get("/sign-ins", response_model=AuditPage, responses=ERRORS, summary="Recent sign-ins")
async def recent_sign_ins(
    session: ReadSessionDep,
    _admin: AdminDep,
    outcome: Outcome = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditPage:
    """Sign-ins, successful and failed (with the reason), newest first."""
    where = AuditFilter(action="sign_in", outcome=outcome, before_id=int(cursor) if cursor else None)
    return await audit_page(session, where, limit)
