"""Which designer a verified ID token signs in (`oidc.IdTokenVerifier` verified it first).

1. A designer already linked to the token's subject (`designers.oidc_subject` = "<issuer> <sub>").
2. Else an invited designer (an admin made the account with this email) not yet linked to any subject,
   when the provider says the email is verified (`email_verified: true`: an unverified email claim, as
   some providers let users edit, would let anyone take an invited account): the subject is linked.
3. Else, when the verified email's domain is one of OIDC_ALLOWED_DOMAINS, a new designer with
   OIDC_DEFAULT_ROLE.
Anything else is refused (403 `not_invited`), as is a disabled account (403 `account_disabled`); both
are audited with their reason.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend import audit, sessions
from backend.audit import Actor
from backend.auth import hash_token, new_token
from backend.config import Settings
from backend.db import SessionMaker, writing
from backend.errors import Forbidden
from backend.models import Designer, SignInSession
from backend.oidc import IdClaims
from backend.sign_in import normalize_email


def allowed_domains(settings: Settings) -> frozenset[str]:
    return frozenset(
        d.strip().lower().lstrip("@") for d in settings.oidc_allowed_domains.split(",") if d.strip()
    )


async def _unique_name(session: AsyncSession, wanted: str) -> str:
    base = (wanted or "designer")[:90]
    name, n = base, 1
    while await session.scalar(select(Designer.id).where(Designer.name == name)) is not None:
        n += 1
        name = f"{base}-{n}"
    return name


async def _match(session: AsyncSession, settings: Settings, claims: IdClaims) -> tuple[Designer | None, str]:
    """The designer of `claims` (linked or made here), or None and why not."""
    subject = f"{claims.issuer} {claims.subject}"
    designer = await session.scalar(select(Designer).where(Designer.oidc_subject == subject))
    if designer is not None:
        return designer, ""
    email = normalize_email(claims.email) if claims.email and claims.email_verified else None
    if email is None:
        return None, "no_verified_email"
    designer = await session.scalar(select(Designer).where(Designer.email == email))
    if designer is not None:
        if designer.oidc_subject is not None:
            return None, "email_linked_to_another_subject"
        designer.oidc_subject = subject
        return designer, ""
    if email.rsplit("@", 1)[-1] not in allowed_domains(settings):
        return None, "not_invited"
    designer = Designer(
        name=await _unique_name(session, claims.name or email.split("@")[0]),
        email=email,
        oidc_subject=subject,
        role=settings.oidc_default_role,
        token_hash=hash_token(new_token()),  # a token nobody knows: this account signs in with OIDC
    )
    session.add(designer)
    await session.flush()
    return designer, ""


async def sign_in(
    sessionmaker: SessionMaker, settings: Settings, claims: IdClaims, ip: str
) -> tuple[str, SignInSession, Designer]:
    async with sessionmaker() as session, writing(session):
        designer, reason = await _match(session, settings, claims)
        if designer is not None and designer.is_active:
            token, row = await sessions.start(
                session, designer, "oidc", settings.session_idle_s, settings.session_max_s
            )
            actor = Actor(designer.id, designer.name)
            audit.record(session, "sign_in", actor, target=("designer", designer.id), ip=ip,
                         details={"method": "oidc", "issuer": claims.issuer})  # fmt: skip
            return token, row, designer
        reason = reason or "disabled"
        target = ("designer", designer.id) if designer is not None else ("", "")
        audit.record(session, "sign_in", Actor(None), outcome="failure", reason=reason, target=target, ip=ip,
                     details={"method": "oidc", "issuer": claims.issuer})  # fmt: skip
    if reason == "disabled":
        raise Forbidden("This account is disabled. Ask your studio admin.", code="account_disabled")
    raise Forbidden(
        "This identity is not invited to the studio. Ask your studio admin for an invitation.",
        code="not_invited",
    )
