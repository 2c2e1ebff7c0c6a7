"""Signing in and out: email and password, an identity provider's ID token, the one-time password links.

These routes (but sign-out) take no token: they are how a browser gets one, a backend session
(`sessions.py`) whose token the studio then sends as `Authorization: Bearer ses_...`. Designers' own
tokens and API keys stay, for scripts and integrations.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from starlette.requests import HTTPConnection, Request

from backend import audit, oidc_accounts, sessions, sign_in
from backend.account_schemas import Account, OidcSignIn, PasswordSet, SessionOut, SignIn
from backend.api.deps import CurrentDesigner, SessionDep, SessionMakerDep, SettingsDep
from backend.audit import Actor
from backend.db import writing
from backend.errors import NotFound
from backend.models import Designer, SignInSession
from backend.oidc import IdTokenVerifier

router = APIRouter(prefix="/api/auth", tags=["accounts"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "wrong email or password (invalid_credentials), or an ID token not valid"},
    403: {"description": "an identity not invited (not_invited) or a disabled account (account_disabled)"},
    422: {"description": "invalid request (details per field)"},
    429: {"description": "too many failed sign-ins for this email (sign_in_locked, Retry-After)"},
}


def client_ip(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else ""


async def _oidc(conn: HTTPConnection) -> IdTokenVerifier | None:
    verifier: IdTokenVerifier | None = conn.app.state.oidc
    return verifier


OidcDep = Annotated[IdTokenVerifier | None, Depends(_oidc)]


def _session_out(token: str, row: SignInSession, designer: Designer) -> SessionOut:
    account = Account(id=designer.id, name=designer.name, email=designer.email, role=designer.role)
    return SessionOut(token=token, expires_at=row.expires_at, designer=account)


@router.post(
    "/sign-in", response_model=SessionOut, responses=ERRORS, summary="Sign in with email and password"
)
async def password_sign_in(
    body: SignIn, conn: Request, settings: SettingsDep, sessionmaker: SessionMakerDep
) -> SessionOut:
    """A backend session for the studio. Every refusal answers the same, whether or not the email has an
    account; an email with too many failures in a row is locked for a while (429)."""
    token, row, designer = await sign_in.sign_in(
        sessionmaker, settings, body.email, body.password, client_ip(conn)
    )
    return _session_out(token, row, designer)


@router.post(
    "/oidc",
    response_model=SessionOut,
    responses={**ERRORS, 404: {"description": "this studio has no identity provider (oidc_not_configured)"}},
    summary="Sign in with an ID token",
)
async def oidc_sign_in(
    body: OidcSignIn,
    conn: Request,
    settings: SettingsDep,
    sessionmaker: SessionMakerDep,
    verifier: OidcDep,
) -> SessionOut:
    """The ID token the identity provider gave the studio, verified here (signature, issuer, audience,
    lifetime, nonce): a backend session for the designer it names."""
    if verifier is None:
        raise NotFound("This studio has no identity provider (OIDC_ISSUER).", code="oidc_not_configured")
    claims = await verifier.verify(body.id_token, body.nonce)
    token, row, designer = await oidc_accounts.sign_in(sessionmaker, settings, claims, client_ip(conn))
    return _session_out(token, row, designer)


@router.post("/sign-out", status_code=204, responses=ERRORS, summary="End this sign-in session")
async def sign_out(conn: Request, session: SessionDep, designer: CurrentDesigner) -> Response:
    """Ends the session whose token the request carries (a designer token or an API key: nothing to end)."""
    if designer.session_id is not None:
        async with writing(session):
            await sessions.revoke(session, designer.session_id, designer.id, "signed_out")
            audit.record(session, "sign_out", Actor(designer.id, designer.name),
                         target=("designer", designer.id), ip=client_ip(conn))  # fmt: skip
    return Response(status_code=204)


@router.post(
    "/password",
    status_code=204,
    responses={**ERRORS, 404: {"description": "the link was used, expired or replaced (reset_link_invalid)"}},
    summary="Set a password with a one-time link",
)
async def set_password(
    body: PasswordSet, conn: Request, settings: SettingsDep, sessionmaker: SessionMakerDep
) -> Response:
    """The link's token (its `reset` parameter) and the new password: the designer's sessions end."""
    await sign_in.set_password(sessionmaker, settings, body.token, body.password, client_ip(conn))
    return Response(status_code=204)
