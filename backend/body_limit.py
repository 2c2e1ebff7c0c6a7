"""Request bodies capped before they are read: a pure ASGI middleware in front of every route.

Without it a 50 MB JSON body is read and parsed whole before a field's length rule refuses it, and a
few such requests at once exhaust a small instance. A declared `Content-Length` over the route's cap is
answered 413 at once, without reading a byte of the body; a streamed (chunked) body is counted as it
arrives and refused at the first chunk past the cap. Uploads get the upload limit plus room for the
multipart envelope; every other route gets the JSON cap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.config import Settings
from backend.errors import error_body

MULTIPART_OVERHEAD_BYTES = 64 * 1024  # boundaries, part headers and a file name, with a wide margin
UPLOAD_ROUTES = frozenset({("POST", "/api/uploads")})
# A template declaration carries a whole ComfyUI graph (up to MAX_GRAPH_BYTES, judged by validation with
# a field path) plus its inputs: its routes take that much, and no more.
TEMPLATE_BODY_MAX_BYTES = 2 * 1024 * 1024 + 256 * 1024  # contract.templates.MAX_GRAPH_BYTES + inputs
TEMPLATE_PREFIX = "/api/templates"
MODEL_UPLOAD_ROUTES = frozenset({("POST", "/api/models/upload")})  # a raw body, streamed to the bucket


class Cap(NamedTuple):
    """A route class's largest body, and the error code a larger one gets (the one its route answers
    itself for a file past the upload limit, so a client sees one code whichever layer refused)."""

    max_bytes: int
    code: str


def route_limits(settings: Settings) -> Callable[[Scope], Cap]:
    """The cap of a request's body, by its route class."""
    upload = Cap(settings.upload_max_bytes + MULTIPART_OVERHEAD_BYTES, "upload_too_large")
    json_body = Cap(settings.request_body_max_bytes, "too_large")
    template = Cap(max(TEMPLATE_BODY_MAX_BYTES, settings.request_body_max_bytes), "too_large")
    model = Cap(settings.model_upload_max_bytes, "model_too_large")

    def limit(scope: Scope) -> Cap:
        route = (scope["method"], scope["path"])
        if route in MODEL_UPLOAD_ROUTES:
            return model
        if route in UPLOAD_ROUTES:
            return upload
        return template if str(scope["path"]).startswith(TEMPLATE_PREFIX) else json_body

    return limit


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _message(cap: Cap) -> str:
    return f"The request body is larger than this route accepts ({cap.max_bytes} bytes)."


class BodyTooLarge(HTTPException):
    """Raised from `receive`: the route's body reader re-raises an HTTPException as it is."""

    def __init__(self, cap: Cap) -> None:
        super().__init__(413, _message(cap), headers={"Connection": "close"})
        self.code = cap.code


async def _refuse(send: Send, cap: Cap) -> None:
    body = json.dumps(error_body(cap.code, _message(cap))).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # The unread rest of the body makes the connection unusable for a next request: close it.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], Cap]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limit_for(scope)
        declared = _declared_length(scope)
        if declared is not None and declared > cap.max_bytes:
            await _refuse(send, cap)
            return
        await self.app(scope, _counting(receive, cap), send)


def _counting(receive: Receive, cap: Cap) -> Receive:
    """`receive`, refusing once the body grows past the cap (the error handler answers 413 in the one
    error shape)."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > cap.max_bytes:
                raise BodyTooLarge(cap)
        return message

    return counted
