"""The only module that calls the backend: httpx for requests, websockets for a job's live events.

Every failure becomes an ApiError carrying the backend's own `code` and `message` (or a sentence saying
the backend could not be reached), so views show a message, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from frontend.config import FrontendSettings

WS_OPEN_TIMEOUT_S = 5.0
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class ApiError(Exception):
    """The backend answered with its error shape (or could not be reached: status 0)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class EventStreamLost(Exception):
    """The event stream closed before the job's final event (the caller reconnects or polls)."""


class ApiClient:
    def __init__(self, settings: FrontendSettings, token: str) -> None:
        self.base_url = settings.backend_url.rstrip("/")
        self.token = token
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=settings.backend_timeout_s,
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(
                0, "backend_unreachable", f"The studio server cannot be reached ({type(exc).__name__})."
            ) from exc
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                message = str(err["message"])
                code = str(err["code"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "http_error", f"The server answered {r.status_code}.") from None
            raise ApiError(r.status_code, code, message)
        return r

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call(method, path, **kwargs).json()

    # --- designer and styles
    def me(self) -> dict[str, Any]:
        data: dict[str, Any] = self._json("GET", "/api/me")
        return data

    def styles(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._json("GET", "/api/styles")
        return data

    # --- jobs
    def submit_job(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        data: dict[str, Any] = self._json(
            "POST", "/api/jobs", json=body, headers={"Idempotency-Key": idempotency_key}
        )
        return data

    def job(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._json("GET", f"/api/jobs/{job_id}")
        return data

    def jobs(self, *, limit: int = 12, cursor: str | None = None, **filters: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, **{k: v for k, v in filters.items() if v}}
        if cursor:
            params["cursor"] = cursor
        data: dict[str, Any] = self._json("GET", "/api/jobs", params=params)
        return data

    def cancel(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._json("POST", f"/api/jobs/{job_id}/cancel")
        return data

    def retry(self, job_id: str, *, new_seed: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = self._json("POST", f"/api/jobs/{job_id}/retry", json={"new_seed": new_seed})
        return data

    def events(self, job_id: str, after: int = 0, tick_s: float = 0.5) -> Iterator[dict[str, Any] | None]:
        """The job's events over the backend's WebSocket: replay after `after`, then live.

        Yields None every `tick_s` without an event (so the caller can redraw the elapsed time); ends
        after the final event; raises EventStreamLost if the stream closes before it.
        """
        ws_base = "ws" + self.base_url.removeprefix("http")
        url = f"{ws_base}/api/jobs/{job_id}/events?{urlencode({'after': after})}"
        try:
            ws = connect(
                url,
                additional_headers={"Authorization": f"Bearer {self.token}"},
                open_timeout=WS_OPEN_TIMEOUT_S,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise EventStreamLost(str(exc)) from exc
        with ws:
            while True:
                try:
                    raw = ws.recv(timeout=tick_s)
                except TimeoutError:
                    yield None
                    continue
                except ConnectionClosed as exc:
                    if exc.rcvd is not None and exc.rcvd.code == 1000:
                        return
                    raise EventStreamLost(str(exc)) from exc
                message: dict[str, Any] = json.loads(raw)
                if "error" in message:
                    err = message["error"]
                    raise ApiError(404, str(err.get("code")), str(err.get("message")))
                yield message
                if message.get("type") in FINAL_STATUSES:
                    return

    # --- sketches and images
    def upload_sketch(self, data: bytes, filename: str, content_type: str) -> dict[str, Any]:
        files = {"file": (filename, data, content_type)}
        result: dict[str, Any] = self._json("POST", "/api/uploads", files=files)
        return result

    def upload(self, upload_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._json("GET", f"/api/uploads/{upload_id}")
        return data

    def binary(self, url: str, **params: Any) -> bytes:
        """Bytes of a backend URL (an image, a preview); follows S3 presigned redirects."""
        if url.startswith(self.base_url):
            url = url[len(self.base_url) :]
        if url.startswith("/"):
            return self._call("GET", url, params=params or None, follow_redirects=True).content
        try:  # an absolute URL elsewhere (a presigned S3 URL): no token to leak there
            r = httpx.get(url, params=params or None, timeout=self.http.timeout, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise ApiError(0, "storage_unreachable", "The image store cannot be reached.") from exc
        if r.status_code >= 400:
            raise ApiError(r.status_code, "image_unavailable", "The image could not be loaded.")
        return r.content

    # --- API keys (integrations); the designer's own token manages them
    def api_keys(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._json("GET", "/api/keys")["items"]
        return data

    def create_api_key(self, name: str, scopes: list[str]) -> dict[str, Any]:
        """The new key, with its secret under `key` (shown this once)."""
        data: dict[str, Any] = self._json("POST", "/api/keys", json={"name": name, "scopes": scopes})
        return data

    def rotate_api_key(self, key_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._json("POST", f"/api/keys/{key_id}/rotate")
        return data

    def revoke_api_key(self, key_id: str) -> None:
        self._call("DELETE", f"/api/keys/{key_id}")
