"""The client's one exception: every failure, the server's error shape or no answer at all."""

from __future__ import annotations

from typing import Any

import httpx

from studio_client.models import ErrorDetail

UNREACHABLE = 0  # `status` when no HTTP answer came back


class StudioError(Exception):
    """The API answered `{"error": {"code", "message", "details"}}` (or could not be reached: status 0)."""

    def __init__(
        self, status: int, code: str, message: str, details: list[ErrorDetail] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []

    def __repr__(self) -> str:
        return f"StudioError({self.status}, {self.code!r}, {self.message!r})"

    def fields(self) -> dict[str, str]:
        """field -> message, from the details (a 422 names each invalid field)."""
        return {d.field: d.message for d in self.details}


class EventStreamLost(Exception):
    """The event stream closed before the job's final event (reconnect with the last id, or poll)."""


def unreachable(exc: Exception) -> StudioError:
    return StudioError(
        UNREACHABLE, "backend_unreachable", f"The studio server cannot be reached ({type(exc).__name__})."
    )


def from_response(r: httpx.Response) -> StudioError:
    """The error an answer of 400 or more carries; a body without the error shape keeps its status."""
    try:
        err: dict[str, Any] = r.json()["error"]
        details = [ErrorDetail.model_validate(d) for d in err.get("details") or []]
        return StudioError(r.status_code, str(err["code"]), str(err["message"]), details)
    except (ValueError, KeyError, TypeError):
        return StudioError(r.status_code, "http_error", f"The server answered {r.status_code}.")


def from_event_stream(message: dict[str, Any], close_code: int | None) -> StudioError:
    """The error a WebSocket sends before it closes with 4000 + the HTTP status."""
    err = message.get("error") or {}
    status = close_code - 4000 if close_code and 4000 <= close_code < 5000 else 404
    return StudioError(status, str(err.get("code")), str(err.get("message")))
