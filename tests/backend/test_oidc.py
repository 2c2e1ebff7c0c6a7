"""ID tokens from an identity provider, verified by the backend itself against a real issuer on loopback
(discovery document and JWKS over HTTP, keys generated here): one test per way a token must fail, then
the subject → designer mapping through POST /api/auth/oidc on both databases."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from backend.oidc import IdTokenVerifier, InvalidIdToken
from backend.users import disable_designer
from tests.support.accounts import make_account
from tests.support.api import assert_error
from tests.support.backend import Stack, start_stack
from tests.support.oidc import CLIENT_ID, Issuer


@pytest.fixture
async def verifier(issuer: Issuer) -> AsyncIterator[IdTokenVerifier]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield IdTokenVerifier(issuer.url, CLIENT_ID, http, jwks_ttl_s=3600)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


async def _refused(verifier: IdTokenVerifier, token: str, reason: str, nonce: str | None = None) -> None:
    with pytest.raises(InvalidIdToken) as caught:
        await verifier.verify(token, nonce)
    assert caught.value.details[0]["message"] == reason
    assert caught.value.status_code == 401


async def test_a_valid_token_names_its_subject(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    claims = await verifier.verify(issuer.token(nonce="n-1"), nonce="n-1")
    assert (claims.subject, claims.email, claims.email_verified) == ("user-1", "ana@studio.test", True)
    await verifier.verify(issuer.token())  # cached keys: the JWKS is fetched once
    assert issuer.jwks_requests == 1


async def test_wrong_audience(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    await _refused(verifier, issuer.token(aud="another-client"), "aud")


async def test_several_audiences_need_the_studio_as_authorized_party(
    issuer: Issuer, verifier: IdTokenVerifier
) -> None:
    await _refused(verifier, issuer.token(aud=[CLIENT_ID, "other"], azp="other"), "azp")


async def test_wrong_issuer(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    await _refused(verifier, issuer.token(iss="https://evil.example"), "iss")


async def test_expired(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    now = int(time.time())
    await _refused(verifier, issuer.token(iat=now - 900, exp=now - 300), "expired")


async def test_not_yet_valid(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    await _refused(verifier, issuer.token(nbf=int(time.time()) + 600), "nbf")


async def test_bad_signature(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # the issuer's key id, another key
    await _refused(verifier, issuer.token(key=impostor), "signature")
    tampered = _unsigned({"alg": "RS256", "kid": "k1"}, issuer.claims(sub="admin"))  # a genuine signature
    await _refused(verifier, f"{tampered}.{issuer.token().split('.')[2]}", "signature")


async def test_unknown_key_id(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    await verifier.verify(issuer.token())
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k9"})
    await _refused(verifier, issuer.token(key=stranger), "unknown_key")


async def test_a_header_without_kid_is_checked_with_the_only_key(issuer: Issuer) -> None:
    """oidc-provider-mock (and some providers) leave `kid` out when their JWKS has one key."""
    no_kid = jwt.encode({"alg": "RS256"}, issuer.claims(), issuer.key)
    impostor = jwt.encode({"alg": "RS256"}, issuer.claims(sub="admin"), RSAKey.generate_key(2048))
    async with httpx.AsyncClient(timeout=5) as http:
        one_key = IdTokenVerifier(issuer.url, CLIENT_ID, http, jwks_ttl_s=3600)
        assert (await one_key.verify(no_kid)).subject == "user-1"
        await _refused(one_key, impostor, "signature")
        issuer.published.append(RSAKey.generate_key(2048, parameters={"kid": "k2"}))
        two_keys = IdTokenVerifier(issuer.url, CLIENT_ID, http, jwks_ttl_s=3600)
        await _refused(two_keys, no_kid, "unknown_key")  # which key? not guessed


async def test_alg_none(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    token = _unsigned({"alg": "none", "kid": "k1"}, issuer.claims()) + "."
    await _refused(verifier, token, "algorithm")


async def test_hmac_with_the_public_key_as_secret(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    public_pem = issuer.key.as_pem(private=False)
    signing_input = _unsigned({"alg": "HS256", "kid": "k1"}, issuer.claims())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    await _refused(verifier, f"{signing_input}.{_b64(signature)}", "algorithm")


async def test_a_nonce_must_match_when_given(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    await _refused(verifier, issuer.token(nonce="n-1"), "nonce", nonce="n-2")


async def test_rotated_keys_are_fetched_again(issuer: Issuer, verifier: IdTokenVerifier) -> None:
    await verifier.verify(issuer.token())
    verifier._fetched_at -= 120  # the last fetch is older than REFETCH_MIN_S
    rotated = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    issuer.published.append(rotated)
    await verifier.verify(issuer.token(key=rotated))
    assert issuer.jwks_requests == 2


# --------------------------------------------------------------------- the designer a subject signs in


@pytest.fixture
def oidc_stack(db_url: str, tmp_path: Path, issuer: Issuer) -> Iterator[Stack]:
    settings = {"oidc_issuer": issuer.url, "oidc_client_id": CLIENT_ID, "oidc_allowed_domains": "firm.test"}
    with start_stack(db_url, tmp_path, None, **settings) as stack:
        yield stack


def _oidc(stack: Stack, token: str) -> httpx.Response:
    with httpx.Client(base_url=stack.url, timeout=30) as anon:
        return anon.post("/api/auth/oidc", json={"id_token": token})


def test_an_invited_email_is_linked_then_its_subject_signs_in(oidc_stack: Stack, issuer: Issuer) -> None:
    make_account(oidc_stack.settings, "ana", email="ana@studio.test", password=None, role="lead")
    first = _oidc(oidc_stack, issuer.token())
    assert first.status_code == 200, first.text
    assert first.json()["designer"] == {**first.json()["designer"], "name": "ana", "role": "lead"}
    headers = {"Authorization": f"Bearer {first.json()['token']}"}
    assert httpx.get(f"{oidc_stack.url}/api/me", headers=headers).json()["role"] == "lead"
    renamed = _oidc(oidc_stack, issuer.token(email="ana.new@elsewhere.test"))  # the subject, not the email
    assert renamed.json()["designer"]["name"] == "ana"


def test_an_allowed_domain_gets_an_account_with_the_default_role(oidc_stack: Stack, issuer: Issuer) -> None:
    r = _oidc(oidc_stack, issuer.token(sub="new-1", email="Bo@Firm.test", name="Bo"))
    assert r.status_code == 200, r.text
    assert (r.json()["designer"]["name"], r.json()["designer"]["role"]) == ("Bo", "designer")


def test_others_are_refused(oidc_stack: Stack, issuer: Issuer) -> None:
    assert_error(_oidc(oidc_stack, issuer.token(sub="x", email="eve@gmail.test")), 403, "not_invited")
    unverified = issuer.token(sub="y", email="cy@firm.test", email_verified=False)
    assert_error(_oidc(oidc_stack, unverified), 403, "not_invited")
    assert_error(_oidc(oidc_stack, issuer.token(aud="another-client")), 401, "invalid_id_token")
    make_account(oidc_stack.settings, "ana", email="ana@studio.test")
    with httpx.Client(base_url=oidc_stack.url) as anon:
        assert _oidc(oidc_stack, issuer.token()).status_code == 200

    asyncio.run(disable_designer(oidc_stack.settings, "ana"))
    assert_error(_oidc(oidc_stack, issuer.token()), 403, "account_disabled")
    assert anon
