"""The API's one error shape and the handlers that render it.

Every 4xx/5xx body is `{"error": {"code": "...", "message": "...", "details": [...]}}`: `code` is stable
snake_case for programs, `message` a sentence for people. Routes raise an `AppError`; validation
errors and the unexpected (500, traceback logged, nothing internal in the body) get the same shape.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class AppError(Exception):
    """Something went wrong."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details or []
        self.headers = headers or {}
        self.error_code = code or self.code
        super().__init__(self.message)


class NotFound(AppError):
    """Not found."""

    status_code = 404
    code = "not_found"


class Unauthorized(AppError):
    """A valid bearer token is required."""

    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    """This credential may not do that."""

    status_code = 403
    code = "forbidden"


class Conflict(AppError):
    """The request conflicts with the resource's current state."""

    status_code = 409
    code = "conflict"


class InvalidInput(AppError):
    """The request is not valid."""

    status_code = 422
    code = "invalid_input"


class BadRequest(AppError):
    """The request could not be read."""

    status_code = 400
    code = "bad_request"


class TooLarge(AppError):
    """The upload is too large."""

    status_code = 413
    code = "too_large"


class UnsupportedMedia(AppError):
    """The upload is not a supported image."""

    status_code = 415
    code = "unsupported_media_type"


class RateLimited(AppError):
    """Too many requests; try again later."""

    status_code = 429
    code = "rate_limited"


class Unavailable(AppError):
    """The service is temporarily unavailable; try again shortly."""

    status_code = 503
    code = "unavailable"


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


# The tags of a body that is one of several models (POST /api/jobs): not part of a field's path.
UNION_TAGS = ("legacy_body", "template_body")


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", *UNION_TAGS)]
    return ".".join(parts) or "body"


def validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    details = []
    for err in errors:
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        details.append({"field": _field_path(err.get("loc", ())), "message": msg, "type": err.get("type")})
    return details


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.error_code, exc.message, exc.details), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(list(exc.errors()))
        first = details[0] if details else {"field": "body", "message": "invalid"}
        message = f"{first['field']}: {first['message']}"
        if len(details) > 1:
            message += f" (and {len(details) - 1} more)"
        return JSONResponse(error_body("invalid_input", message, details), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return JSONResponse(error_body(code, message), exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database(request: Request, exc: OperationalError | InterfaceError) -> JSONResponse:
        # A locked SQLite file or a lost PostgreSQL connection: the client may retry.
        logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc.orig)
        body = error_body("database_unavailable", "The database is busy or unreachable; retry shortly.")
        return JSONResponse(body, 503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "An unexpected error occurred."), 500)
