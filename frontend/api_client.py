"""The frontend's one way to the backend: a thin adapter over `studio_client`, the typed client that
integrations use too, so every frontend test exercises it.

The views keep working on plain dicts (they annotate and redraw a job as its events arrive): each
typed answer is handed over as its JSON form. Every failure is a studio_client.StudioError (ApiError
here) carrying the backend's own `code` and `message`, or a sentence saying the backend could not be
reached, so views show a message, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from frontend.config import FrontendSettings
from studio_client import FINAL_STATUSES, EventStreamLost, RetryPolicy, StudioClient, StudioError

__all__ = ["FINAL_STATUSES", "ApiClient", "ApiError", "EventStreamLost"]

ApiError = StudioError
# A page waits on these calls: a backend that is down is said after a couple of quick tries.
RETRY = RetryPolicy(attempts=3, backoff_s=0.2, max_backoff_s=1.0)


def _plain(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


class ApiClient:
    def __init__(self, settings: FrontendSettings, token: str) -> None:
        self.studio = StudioClient(
            settings.backend_url, token, timeout_s=settings.backend_timeout_s, retry=RETRY
        )
        self.base_url = self.studio.base_url
        self.token = token

    def close(self) -> None:
        self.studio.close()

    # --- designer and styles
    def me(self) -> dict[str, Any]:
        return _plain(self.studio.me())

    def styles(self) -> list[dict[str, Any]]:
        return [_plain(s) for s in self.studio.styles()]

    # --- jobs
    def submit_job(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        return _plain(self.studio.create_job(body, idempotency_key=idempotency_key))

    def job(self, job_id: str) -> dict[str, Any]:
        return _plain(self.studio.get_job(job_id))

    def jobs(self, *, limit: int = 12, cursor: str | None = None, **filters: Any) -> dict[str, Any]:
        return _plain(self.studio.list_jobs(limit=limit, cursor=cursor, **filters))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return _plain(self.studio.cancel(job_id))

    def retry(self, job_id: str, *, new_seed: bool = False) -> dict[str, Any]:
        return _plain(self.studio.retry(job_id, new_seed=new_seed))

    def events(self, job_id: str, after: int = 0, tick_s: float = 0.5) -> Iterator[dict[str, Any] | None]:
        """The job's events (replay after `after`, then live), None every `tick_s` without one (so the
        caller can redraw the elapsed time); EventStreamLost if the stream closes before the end."""
        for event in self.studio.stream_events(job_id, after=after, tick_s=tick_s):
            yield None if event is None else _plain(event)

    # --- sketches and images
    def upload_sketch(self, data: bytes, filename: str, content_type: str) -> dict[str, Any]:
        return _plain(self.studio.upload_sketch(data, filename, content_type))

    def upload(self, upload_id: str) -> dict[str, Any]:
        return _plain(self.studio.get_upload(upload_id))

    def binary(self, url: str, **params: Any) -> bytes:
        """Bytes of a backend URL (an image, a preview); follows S3 presigned redirects."""
        return self.studio.image_bytes(url, **params)

    # --- API keys (integrations); the designer's own token manages them
    def api_keys(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.studio.request("GET", "/api/keys", idempotent=True).json()["items"]
        return data

    def create_api_key(self, name: str, scopes: list[str]) -> dict[str, Any]:
        """The new key, with its secret under `key` (shown this once); never repeated once sent."""
        body = {"name": name, "scopes": scopes}
        data: dict[str, Any] = self.studio.request("POST", "/api/keys", idempotent=False, json=body).json()
        return data

    def rotate_api_key(self, key_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.studio.request(
            "POST", f"/api/keys/{key_id}/rotate", idempotent=False
        ).json()
        return data

    def revoke_api_key(self, key_id: str) -> None:
        self.studio.request("DELETE", f"/api/keys/{key_id}", idempotent=True)
