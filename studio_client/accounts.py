"""Accounts: signing in (email and password, an identity provider's ID token), the one-time password
links, signing out, and the admin's routes (users, quotas, every API key, sign-ins, the audit log).

    anonymous = StudioClient("http://studio:8000")
    session = anonymous.sign_in("ana@studio.example", "correct horse battery staple")
    with StudioClient("http://studio:8000", session.token) as studio:   # a short-lived backend session
        studio.me()
        studio.sign_out()

`AccountCalls` and `AsyncAccountCalls` are mixed into StudioClient and AsyncStudioClient: they use the
client's own `request` (its retries and its one error type, StudioError).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field

Role = Literal["designer", "lead", "admin"]
AUDIT_FILTERS = ("action", "outcome", "actor_id", "target_id", "since", "until")


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Account(_Shape):
    id: str
    name: str
    email: str | None = None
    role: Role = "designer"


class SignInSession(_Shape):
    """A backend session: send `token` as the bearer token; it ends at sign-out, when idle, or when an
    admin disables the account or changes its role."""

    token: str
    expires_at: datetime
    designer: Account


class User(Account):
    is_active: bool
    has_password: bool
    oidc_linked: bool = False
    last_sign_in_at: datetime | None = None
    created_at: datetime
    max_active_jobs: int | None = None
    max_uploads_per_hour: int | None = None


class PasswordLink(_Shape):
    link: str  # one-time: hand it to the designer; it is not shown again
    expires_at: datetime


class Invited(_Shape):
    user: User
    password_link: PasswordLink


class AdminKey(_Shape):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    designer_id: str
    designer_name: str
    created_at: datetime
    last_used_at: datetime | None = None
    rate_limit_per_minute: int | None = None
    renders_per_day: int | None = None


class AuditEvent(_Shape):
    id: int
    created_at: datetime
    action: str
    outcome: Literal["success", "failure"]
    reason: str = ""
    actor_id: str | None = None
    actor_name: str = ""
    target_type: str = ""
    target_id: str = ""
    ip: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class AuditPage(_Shape):
    items: list[AuditEvent]
    next_cursor: str | None = None


def audit_params(
    filters: dict[str, Any], cursor: str | None = None, limit: int | None = None
) -> dict[str, Any]:
    """Query parameters of the audit routes: the filters given (datetimes as ISO 8601), cursor, limit."""
    unknown = set(filters) - set(AUDIT_FILTERS)
    if unknown:
        raise TypeError(f"unknown audit filters: {sorted(unknown)}")
    params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items() if v}
    if cursor:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = limit
    return params


def user_update(role: Role | None, is_active: bool | None) -> dict[str, Any]:
    return {k: v for k, v in (("role", role), ("is_active", is_active)) if v is not None}


class _Sync(Protocol):
    def request(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response: ...


class _Async(Protocol):
    async def request(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response: ...


class AccountCalls:
    """Sign-in, sign-out, password links and the admin's routes (blocking)."""

    def sign_in(self: _Sync, email: str, password: str) -> SignInSession:
        """A backend session for this email and password (not retried: a failure counts toward a lockout)."""
        body = {"email": email, "password": password}
        r = self.request("POST", "/api/auth/sign-in", idempotent=False, json=body)
        return SignInSession.model_validate(r.json())

    def oidc_sign_in(self: _Sync, id_token: str, nonce: str | None = None) -> SignInSession:
        """A backend session for the designer an identity provider's ID token names (the server checks it)."""
        body = {"id_token": id_token, "nonce": nonce}
        r = self.request("POST", "/api/auth/oidc", idempotent=True, json=body)
        return SignInSession.model_validate(r.json())

    def set_password(self: _Sync, link_token: str, password: str) -> None:
        """Use a one-time link (its `reset` parameter): the account's password becomes `password`."""
        body = {"token": link_token, "password": password}
        self.request("POST", "/api/auth/password", idempotent=False, json=body)

    def sign_out(self: _Sync) -> None:
        """End the session this client's token is (a designer token or an API key: nothing to end)."""
        self.request("POST", "/api/auth/sign-out", idempotent=True)

    # --- admin
    def users(self: _Sync) -> list[User]:
        r = self.request("GET", "/api/admin/users", idempotent=True)
        return [User.model_validate(u) for u in r.json()["items"]]

    def invite_user(self: _Sync, name: str, email: str, role: Role = "designer") -> Invited:
        body = {"name": name, "email": email, "role": role}
        r = self.request("POST", "/api/admin/users", idempotent=False, json=body)
        return Invited.model_validate(r.json())

    def update_user(
        self: _Sync, user_id: str, *, role: Role | None = None, is_active: bool | None = None
    ) -> User:
        """A new role, or disabled (is_active=False) / enabled: the designer's sessions end at once."""
        body = user_update(role, is_active)
        r = self.request("PATCH", f"/api/admin/users/{user_id}", idempotent=True, json=body)
        return User.model_validate(r.json())

    def set_quotas(
        self: _Sync, user_id: str, max_active_jobs: int | None, max_uploads_per_hour: int | None
    ) -> User:
        """None: the deployment's default."""
        body = {"max_active_jobs": max_active_jobs, "max_uploads_per_hour": max_uploads_per_hour}
        r = self.request("PUT", f"/api/admin/users/{user_id}/quotas", idempotent=True, json=body)
        return User.model_validate(r.json())

    def password_link(self: _Sync, user_id: str) -> PasswordLink:
        """A new one-time link to (re)set the designer's password; earlier links stop working."""
        r = self.request("POST", f"/api/admin/users/{user_id}/password-link", idempotent=False)
        return PasswordLink.model_validate(r.json())

    def all_api_keys(self: _Sync) -> list[AdminKey]:
        r = self.request("GET", "/api/admin/keys", idempotent=True)
        return [AdminKey.model_validate(k) for k in r.json()["items"]]

    def revoke_any_api_key(self: _Sync, key_id: str) -> None:
        self.request("DELETE", f"/api/admin/keys/{key_id}", idempotent=True)

    def sign_ins(
        self: _Sync, *, outcome: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> AuditPage:
        params = audit_params({"outcome": outcome}, cursor, limit)
        r = self.request("GET", "/api/admin/sign-ins", idempotent=True, params=params)
        return AuditPage.model_validate(r.json())

    def audit(self: _Sync, *, cursor: str | None = None, limit: int = 100, **filters: Any) -> AuditPage:
        """One page of the audit log, newest first; filters: action, outcome, actor_id, target_id,
        since, until (datetimes)."""
        params = audit_params(filters, cursor, limit)
        r = self.request("GET", "/api/admin/audit", idempotent=True, params=params)
        return AuditPage.model_validate(r.json())

    def audit_actions(self: _Sync) -> list[str]:
        """Every action the audit log records (the values `action` takes)."""
        r = self.request("GET", "/api/admin/audit/actions", idempotent=True)
        return list(r.json()["actions"])

    def audit_export(self: _Sync, **filters: Any) -> bytes:
        """Every line the filters select, as JSON lines (one object a line)."""
        params = audit_params(filters)
        return self.request("GET", "/api/admin/audit/export", idempotent=True, params=params).content


class AsyncAccountCalls:
    """AccountCalls' asyncio twin."""

    async def sign_in(self: _Async, email: str, password: str) -> SignInSession:
        body = {"email": email, "password": password}
        r = await self.request("POST", "/api/auth/sign-in", idempotent=False, json=body)
        return SignInSession.model_validate(r.json())

    async def oidc_sign_in(self: _Async, id_token: str, nonce: str | None = None) -> SignInSession:
        body = {"id_token": id_token, "nonce": nonce}
        r = await self.request("POST", "/api/auth/oidc", idempotent=True, json=body)
        return SignInSession.model_validate(r.json())

    async def set_password(self: _Async, link_token: str, password: str) -> None:
        body = {"token": link_token, "password": password}
        await self.request("POST", "/api/auth/password", idempotent=False, json=body)

    async def sign_out(self: _Async) -> None:
        await self.request("POST", "/api/auth/sign-out", idempotent=True)

    async def users(self: _Async) -> list[User]:
        r = await self.request("GET", "/api/admin/users", idempotent=True)
        return [User.model_validate(u) for u in r.json()["items"]]

    async def invite_user(self: _Async, name: str, email: str, role: Role = "designer") -> Invited:
        body = {"name": name, "email": email, "role": role}
        r = await self.request("POST", "/api/admin/users", idempotent=False, json=body)
        return Invited.model_validate(r.json())

    async def update_user(
        self: _Async, user_id: str, *, role: Role | None = None, is_active: bool | None = None
    ) -> User:
        body = user_update(role, is_active)
        r = await self.request("PATCH", f"/api/admin/users/{user_id}", idempotent=True, json=body)
        return User.model_validate(r.json())

    async def set_quotas(
        self: _Async, user_id: str, max_active_jobs: int | None, max_uploads_per_hour: int | None
    ) -> User:
        body = {"max_active_jobs": max_active_jobs, "max_uploads_per_hour": max_uploads_per_hour}
        r = await self.request("PUT", f"/api/admin/users/{user_id}/quotas", idempotent=True, json=body)
        return User.model_validate(r.json())

    async def password_link(self: _Async, user_id: str) -> PasswordLink:
        r = await self.request("POST", f"/api/admin/users/{user_id}/password-link", idempotent=False)
        return PasswordLink.model_validate(r.json())

    async def all_api_keys(self: _Async) -> list[AdminKey]:
        r = await self.request("GET", "/api/admin/keys", idempotent=True)
        return [AdminKey.model_validate(k) for k in r.json()["items"]]

    async def revoke_any_api_key(self: _Async, key_id: str) -> None:
        await self.request("DELETE", f"/api/admin/keys/{key_id}", idempotent=True)

    async def sign_ins(
        self: _Async, *, outcome: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> AuditPage:
        params = audit_params({"outcome": outcome}, cursor, limit)
        r = await self.request("GET", "/api/admin/sign-ins", idempotent=True, params=params)
        return AuditPage.model_validate(r.json())

    async def audit(
        self: _Async, *, cursor: str | None = None, limit: int = 100, **filters: Any
    ) -> AuditPage:
        params = audit_params(filters, cursor, limit)
        r = await self.request("GET", "/api/admin/audit", idempotent=True, params=params)
        return AuditPage.model_validate(r.json())

    async def audit_actions(self: _Async) -> list[str]:
        r = await self.request("GET", "/api/admin/audit/actions", idempotent=True)
        return list(r.json()["actions"])

    async def audit_export(self: _Async, **filters: Any) -> bytes:
        params = audit_params(filters)
        r = await self.request("GET", "/api/admin/audit/export", idempotent=True, params=params)
        return r.content
