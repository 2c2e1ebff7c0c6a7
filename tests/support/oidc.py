"""A stand-in identity provider on loopback for ID-token tests: its discovery document and JWKS served
over real HTTP from keys the test generates, and ID tokens signed (or forged) as a test asks; and a real
provider (oidc-provider-mock) for the browser's full authorization-code flow."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

CLIENT_ID = "studio-client"


class Issuer:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.published: list[RSAKey] = [self.key]
        self.jwks_requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    issuer.jwks_requests += 1
                    body = KeySet(issuer.published).as_dict(private=False)  # type: ignore[arg-type]
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.url, "aud": CLIENT_ID, "sub": "user-1", "iat": now, "exp": now + 300,
                  "email": "ana@studio.test", "email_verified": True, "name": "Ana"}  # fmt: skip
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: RSAKey | None = None, alg: str = "RS256", **claims: Any) -> str:
        key = key or self.key
        return jwt.encode({"alg": alg, "kid": key.kid}, self.claims(**claims), key)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    server = Issuer()
    yield server
    server.stop()


# --- a real OpenID provider (PyPI oidc-provider-mock) for the browser's authorization-code flow ----------
@dataclass
class Provider:
    """oidc-provider-mock on loopback with the studio registered as a client (its secret is real)."""

    url: str
    client_id: str
    client_secret: str


@contextmanager
def mock_provider(redirect_uri: str, users: dict[str, dict[str, Any]]) -> Iterator[Provider]:
    """The provider at http://127.0.0.1:<port>; `users`: sub -> claims (email, email_verified, name),
    offered as buttons on its sign-in form. Plain http is allowed on loopback only (Authlib's
    AUTHLIB_INSECURE_TRANSPORT, set by the caller for the UI process too)."""
    import oidc_provider_mock
    import werkzeug.serving

    app = oidc_provider_mock.app(
        require_client_registration=True,
        require_nonce=True,
        user_claims=[oidc_provider_mock.User(sub=sub, claims=claims) for sub, claims in users.items()],
    )
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        r = httpx.post(f"{url}/oauth2/clients", json={"redirect_uris": [redirect_uri]}, timeout=10)
        r.raise_for_status()
        client = r.json()
        yield Provider(url, client["client_id"], client["client_secret"])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
