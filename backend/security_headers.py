"""Security headers on every API response: a pure ASGI middleware (it never buffers a body, so the
event streams pass through as they are).

- `X-Content-Type-Options: nosniff`: a browser never guesses a type other than the one declared.
- `X-Frame-Options: DENY` and `Content-Security-Policy: frame-ancestors 'none'`: no site frames the API
  or its docs pages (the studio page's own header is the load balancer's; see cloudformation/).
- `Cache-Control: no-store` on `/api` answers that set no caching of their own: they are a designer's
  data, read with a token. Images keep their `private, max-age` and event streams their `no-cache`.
- `Strict-Transport-Security` when the request came over TLS: directly, or through a proxy the server
  trusts (`FORWARDED_TRUSTED_IPS`, gunicorn's and uvicorn's `forwarded_allow_ips`: they set the
  request's scheme from that proxy's `X-Forwarded-Proto`, and ignore the header from anyone else).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS_MAX_AGE_S = 365 * 24 * 3600
ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)
HSTS = (b"strict-transport-security", f"max-age={HSTS_MAX_AGE_S}; includeSubDomains".encode())
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def extra_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
        return [*ALWAYS, HSTS] if scope.get("scheme") == "https" else list(ALWAYS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.extra_headers(scope)
        private = scope["path"].startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {key.lower() for key, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                if private and NO_STORE[0] not in present:
                    headers.append(NO_STORE)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
