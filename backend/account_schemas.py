"""Pydantic models of the accounts routes: sign-in, sign-out, one-time links, and the admin's users,
quotas, keys and audit log (`api/account.py`, `api/admin.py`, `api/admin_audit.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from backend.schemas import ApiKeyOut, Label

RoleName = Literal["designer", "lead", "admin"]
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,189}\.[^@\s\x00-\x1f\x7f.]{1,63}$"
Email = Annotated[
    str,
    Field(max_length=254, pattern=EMAIL_PATTERN, examples=["ana@studio.example"]),
    AfterValidator(str.lower),
]
# Long enough for any password the policy allows, refused at the edge beyond it (hashing is costly).
Password = Annotated[str, Field(min_length=1, max_length=1024, description="never stored, logged or audited")]


class SignIn(BaseModel):
    email: str = Field(min_length=1, max_length=254, description="matched without case or surrounding spaces")
    password: Password


class OidcSignIn(BaseModel):
    id_token: str = Field(
        min_length=1,
        max_length=8192,
        pattern=r"^[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]*$",
        description="the identity provider's ID token (a JWS in compact form: three base64url parts)",
    )
    nonce: str | None = Field(
        None, max_length=512, description="the nonce the sign-in request carried, if known"
    )


class PasswordSet(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="the `reset` parameter of the one-time link")
    password: Password


class Account(BaseModel):
    id: str
    name: str
    email: str | None
    role: RoleName


class SessionOut(BaseModel):
    token: str = Field(description="the session's bearer token: shown this once")
    expires_at: datetime = Field(description="pushed back by each request, up to the session's limit")
    designer: Account


class UserOut(Account):
    is_active: bool
    has_password: bool
    oidc_linked: bool = Field(description="signed in with the identity provider at least once")
    last_sign_in_at: datetime | None
    created_at: datetime
    max_active_jobs: int | None = Field(description="null: the deployment's MAX_ACTIVE_JOBS_PER_DESIGNER")
    max_uploads_per_hour: int | None = Field(description="null: the deployment's MAX_UPLOADS_PER_HOUR")


class UserList(BaseModel):
    items: list[UserOut]


class UserInvite(BaseModel):
    name: Label
    email: Email
    role: RoleName = "designer"


class PasswordLink(BaseModel):
    link: str = Field(
        description="one-time link to set a password: hand it to the designer, it is shown once"
    )
    expires_at: datetime


class UserInvited(BaseModel):
    user: UserOut
    password_link: PasswordLink


class UserUpdate(BaseModel):
    role: RoleName | None = None
    is_active: bool | None = Field(None, description="false: disabled, every session ends at once")


class Quotas(BaseModel):
    max_active_jobs: int | None = Field(None, ge=1, le=10_000, description="null: the deployment's default")
    max_uploads_per_hour: int | None = Field(None, ge=1, le=100_000, description="null: the deployment's")


class AdminKeyOut(ApiKeyOut):
    designer_id: str
    designer_name: str


class AdminKeyList(BaseModel):
    items: list[AdminKeyOut]


class AuditEventOut(BaseModel):
    id: int
    created_at: datetime
    action: str
    outcome: Literal["success", "failure"]
    reason: str
    actor_id: str | None
    actor_name: str
    target_type: str
    target_id: str
    ip: str
    details: dict[str, Any]


class AuditActions(BaseModel):
    actions: list[str] = Field(description="every action the audit log records, sorted")


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None = Field(description="pass as `cursor` for older lines; null: no more")
