"""The only module that calls the backend: httpx for requests; error JSON becomes ApiError."""

from __future__ import annotations

from typing import Any

import httpx

from frontend.config import FrontendSettings


class ApiError(Exception):
    """The backend answered with its error shape (or could not be reached)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ApiClient:
    def __init__(self, settings: FrontendSettings, token: str) -> None:
        self.http = httpx.Client(
            base_url=settings.backend_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=settings.backend_timeout_s,
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, "backend_unreachable", f"The studio server cannot be reached ({exc}).") from exc
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ApiError(r.status_code, err["code"], err["message"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "http_error", f"The server answered {r.status_code}.") from None
        return r

    def me(self) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", "/api/me").json()
        return data

    def styles(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._call("GET", "/api/styles").json()
        return data

    def submit_job(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        r = self._call("POST", "/api/jobs", json=body, headers={"Idempotency-Key": idempotency_key})
        data: dict[str, Any] = r.json()
        return data

    def job(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", f"/api/jobs/{job_id}").json()
        return data

    def cancel(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call("POST", f"/api/jobs/{job_id}/cancel").json()
        return data

    def image(self, url: str) -> bytes:
        return self._call("GET", url, follow_redirects=False).content
