"""The reliability figure "auth bypass attempts tried: N, succeeded: 0", on SQLite and PostgreSQL.

The attempts: the role matrix's walk (every OpenAPI route × anonymous, each role, an API key, another
designer's resource: `tests/backend/test_role_matrix.walk`), then what a sign-in could be abused with:
a session after its sign-out, after its account is disabled, after its role is lowered; forged or
misdirected ID tokens (no signature, HMAC keyed with the public key, another key, another audience or
issuer, expired, a tampered subject, an unverified email for an invited account); a one-time link used
twice; and a wrong password for an existing account. Each must be refused; the tally is printed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.backend.test_role_matrix import people_of, walk
from tests.support.accounts import PASSWORD, make_account, session_client, sign_in
from tests.support.backend import Stack, start_stack
from tests.support.oidc import CLIENT_ID, Issuer


@pytest.fixture
def oidc_stack(db_url: str, tmp_path: Path, issuer: Issuer) -> Iterator[Stack]:
    with start_stack(db_url, tmp_path, None, oidc_issuer=issuer.url, oidc_client_id=CLIENT_ID) as stack:
        yield stack


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def forged_id_tokens(issuer: Issuer) -> dict[str, str]:
    """ID tokens naming the invited admin (root) that must not sign anyone in."""
    admin = {"sub": "root-sub", "email": "root@studio.test"}
    claims = issuer.claims(**admin)
    hmac_input = _unsigned({"alg": "HS256", "kid": "k1"}, claims)
    public_pem = issuer.key.as_pem(private=False)
    hmac_signature = hmac.new(public_pem, hmac_input.encode(), hashlib.sha256).digest()
    genuine_signature = issuer.token(sub="someone", email="nobody@elsewhere.test").split(".")[2]
    now = int(time.time())
    return {
        "alg none": _unsigned({"alg": "none", "kid": "k1"}, claims) + ".",
        "hmac keyed with the public key": f"{hmac_input}.{_b64(hmac_signature)}",
        "another key": issuer.token(key=RSAKey.generate_key(2048, parameters={"kid": "k1"}), **admin),
        "another audience": issuer.token(aud="someone-else", **admin),
        "another issuer": issuer.token(iss="https://evil.example", **admin),
        "expired": issuer.token(exp=now - 3600, iat=now - 7200, **admin),
        "a tampered subject": f"{_unsigned({'alg': 'RS256', 'kid': 'k1'}, claims)}.{genuine_signature}",
        "an unverified email of an invited account": issuer.token(email_verified=False, **admin),
    }


def test_auth_bypass_attempts_tried_and_none_succeeded(oidc_stack: Stack, issuer: Issuer) -> None:
    people = people_of(oidc_stack)
    try:
        tried, bypassed = walk(people)
        bypassed_more: list[str] = []

        def attempt(what: str, refused: Callable[[], bool]) -> None:
            nonlocal tried
            tried += 1
            if not refused():
                bypassed_more.append(what)

        url = oidc_stack.url
        # sessions that ended must not work at their next request
        make_account(oidc_stack.settings, "dana", role="admin")
        with session_client(url, "dana@studio.test") as dana, session_client(url, "alice@studio.test") as old:
            assert old.post("/api/auth/sign-out").status_code == 204
            for path in ("/api/me", "/api/jobs", "/api/keys"):
                attempt(f"signed-out session {path}", lambda p=path: old.get(p).status_code == 401)
            lena_id = next(
                u["id"] for u in dana.get("/api/admin/users").json()["items"] if u["name"] == "lena"
            )
            with session_client(url, "lena@studio.test") as lena:
                dana.patch(f"/api/admin/users/{lena_id}", json={"role": "designer"})
                attempt("session after its role was lowered", lambda: lena.get("/api/me").status_code == 401)
            with session_client(url, "lena@studio.test") as lena:
                dana.patch(f"/api/admin/users/{lena_id}", json={"is_active": False})
                attempt("session of a disabled account", lambda: lena.get("/api/me").status_code == 401)
                attempt(
                    "password sign-in of a disabled account",
                    lambda: sign_in(url, "lena@studio.test").status_code == 401,
                )
            invited = dana.post("/api/admin/users", json={"name": "erin", "email": "erin@studio.test"}).json()
            reset = invited["password_link"]["link"].split("reset=", 1)[1]
            body = {"token": reset, "password": "walnut veneer by the window"}
            with httpx.Client(base_url=url, timeout=30) as anon:
                assert anon.post("/api/auth/password", json=body).status_code == 204
                again = {**body, "password": "someone else's choice 2026"}
                attempt(
                    "a one-time link used twice",
                    lambda: anon.post("/api/auth/password", json=again).status_code == 404,
                )
                attempt(
                    "a wrong password",
                    lambda: sign_in(url, "root@studio.test", PASSWORD + "x").status_code == 401,
                )
                for what, token in forged_id_tokens(issuer).items():
                    attempt(
                        f"ID token: {what}",
                        lambda t=token: (
                            anon.post("/api/auth/oidc", json={"id_token": t}).status_code in (401, 403)
                        ),
                    )
        print(f"\nauth bypass attempts tried: {tried}, succeeded: {len(bypassed) + len(bypassed_more)}")  # noqa: T201
        assert bypassed == [] and bypassed_more == []
        assert tried > 150
    finally:
        for c in people.values():
            c.close()
