"""OpenID Connect: the backend verifies an identity provider's ID token itself, whatever the UI says.

The studio signs in with the provider (Streamlit's `st.login`, Authlib, authorization code flow) and hands
the backend the ID token it received (`expose_tokens = ["id"]`); `IdTokenVerifier.verify` checks it:
- the header: an asymmetric algorithm only (RS*, PS*, ES*, EdDSA): `alg: none` and HMAC, whose "secret"
  could be the provider's public key, are refused before anything else;
- the signature, with the key of the header's `kid` from the issuer's JWKS (its URL from the discovery
  document `<issuer>/.well-known/openid-configuration`, fetched on first use, never at import, cached for
  OIDC_JWKS_TTL_S; an unknown `kid` fetches it again, at most once per REFETCH_MIN_S: keys rotate); a
  header without `kid` is accepted only when the JWKS holds one key (OIDC Core 10.1), as some providers do;
- the claims: `iss` is OIDC_ISSUER, `aud` names OIDC_CLIENT_ID (with several audiences, `azp` must be it),
  `exp` in the future and `nbf`/`iat` not (LEEWAY_S of clock skew), `sub` present, and `nonce` equal to
  the caller's when it sends one.
`oidc_accounts.py` then maps the verified subject to a designer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError
from joserfc.jwk import KeySet

from backend.errors import Unauthorized, Unavailable

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_S = 60
REFETCH_MIN_S = 60.0
MAX_TOKEN_CHARS = 16_384


class InvalidIdToken(Unauthorized):
    """The ID token is not valid."""

    code = "invalid_id_token"


@dataclass(frozen=True)
class IdClaims:
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str


def _header(token: str) -> dict[str, Any]:
    try:
        raw = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidIdToken("The ID token cannot be read.", details=_why("malformed")) from exc
    if not isinstance(header, dict):
        raise InvalidIdToken("The ID token cannot be read.", details=_why("malformed"))
    return header


def _why(reason: str) -> list[dict[str, Any]]:
    return [{"field": "id_token", "message": reason}]


class IdTokenVerifier:
    """One per API process (the lifespan makes it when OIDC_ISSUER is set)."""

    def __init__(self, issuer: str, client_id: str, http: httpx.AsyncClient, jwks_ttl_s: float) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._http = http
        self._ttl_s = jwks_ttl_s
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self) -> KeySet:
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            discovery = (await self._http.get(url)).raise_for_status().json()
            if discovery.get("issuer", "").rstrip("/") != self.issuer:
                raise ValueError("the discovery document names another issuer")
            jwks = (await self._http.get(discovery["jwks_uri"])).raise_for_status().json()
            return KeySet.import_key_set(jwks)
        except (httpx.HTTPError, ValueError, KeyError, JoseError) as exc:
            raise Unavailable(
                "The identity provider cannot be reached to check the sign-in; try again shortly.",
                code="identity_provider_unavailable",
                headers={"Retry-After": "5"},
            ) from exc

    async def _key_set(self, kid: str | None) -> KeySet:
        async with self._lock:
            now = time.monotonic()
            stale = self._keys is None or now - self._fetched_at > self._ttl_s
            unknown = self._keys is not None and kid not in {k.kid for k in self._keys.keys}
            if stale or (unknown and now - self._fetched_at > REFETCH_MIN_S):
                self._keys, self._fetched_at = await self._fetch(), now
            assert self._keys is not None
            return self._keys

    async def verify(self, token: str, nonce: str | None = None) -> IdClaims:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise InvalidIdToken("The ID token cannot be read.", details=_why("malformed"))
        header = _header(token)
        if header.get("alg") not in ALGORITHMS:
            raise InvalidIdToken("The ID token's algorithm is not accepted.", details=_why("algorithm"))
        kid = header.get("kid")
        keys = await self._key_set(kid)
        key: Any = keys
        if kid is None and len(keys.keys) == 1:
            key = keys.keys[0]  # a JWKS of one key may leave `kid` out of the header (OIDC Core 10.1)
        elif kid is None or kid not in {k.kid for k in keys.keys}:
            raise InvalidIdToken("The ID token is signed with an unknown key.", details=_why("unknown_key"))
        try:
            claims = jwt.decode(token, key, algorithms=list(ALGORITHMS)).claims
        except JoseError as exc:
            raise InvalidIdToken("The ID token's signature is not valid.", details=_why("signature")) from exc
        self._check_claims(claims, nonce)
        return IdClaims(
            issuer=self.issuer,
            subject=str(claims["sub"]),
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            email_verified=claims.get("email_verified") is True,
            name=str(claims.get("name") or claims.get("preferred_username") or ""),
        )

    def _check_claims(self, claims: dict[str, Any], nonce: str | None) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_S,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise InvalidIdToken("The ID token has expired.", details=_why("expired")) from exc
        except (InvalidClaimError, MissingClaimError) as exc:
            claim = getattr(exc, "claim", "") or str(exc)
            raise InvalidIdToken(
                f"The ID token's claims are not valid ({claim}).", details=_why(claim)
            ) from exc
        except JoseError as exc:
            raise InvalidIdToken("The ID token's claims are not valid.", details=_why("claims")) from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise InvalidIdToken("The ID token was issued to another client.", details=_why("azp"))
        if nonce is not None and claims.get("nonce") != nonce:
            raise InvalidIdToken("The ID token's nonce does not match.", details=_why("nonce"))
