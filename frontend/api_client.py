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
    def __init__(self, settings: FrontendSettings, token: str | None) -> None:
        """`token` None: an anonymous client, for the sign-in routes only."""
        self.studio = StudioClient(
            settings.backend_url, token, timeout_s=settings.backend_timeout_s, retry=RETRY
        )
        self.base_url = self.studio.base_url
        self.token: str = token or ""

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

    def submit_template_job(
        self, template: str, inputs: dict[str, Any], idempotency_key: str, version: int | None = None
    ) -> dict[str, Any]:
        job = self.studio.create_template_job(template, inputs, version, idempotency_key=idempotency_key)
        return _plain(job)

    # --- templates
    def templates(self, *, include_retired: bool = False) -> list[dict[str, Any]]:
        return [_plain(t) for t in self.studio.templates(include_retired=include_retired)]

    def template(self, name: str) -> dict[str, Any]:
        return _plain(self.studio.get_template(name))

    def template_version(self, name: str, version: int) -> dict[str, Any]:
        return _plain(self.studio.get_template_version(name, version))

    def validate_template(self, declaration: dict[str, Any]) -> dict[str, Any]:
        return _plain(self.studio.validate_template(declaration))

    def save_template(self, declaration: dict[str, Any], *, exists: bool) -> dict[str, Any]:
        """Store the declaration as the template's draft (a new template, or its draft replaced)."""
        if exists:
            return _plain(self.studio.update_draft(str(declaration.get("name")), declaration))
        return _plain(self.studio.create_template(declaration))

    def publish_template(self, name: str) -> dict[str, Any]:
        return _plain(self.studio.publish_template(name))

    def rollback_template(self, name: str, version: int) -> dict[str, Any]:
        return _plain(self.studio.rollback_template(name, version))

    def retire_template(self, name: str) -> dict[str, Any]:
        return _plain(self.studio.retire_template(name))

    def restore_template(self, name: str) -> dict[str, Any]:
        return _plain(self.studio.restore_template(name))

    def can_publish(self) -> bool:
        """Whether this designer may publish templates: their role, or (a server whose /api/me does not
        say it) whether the leads-only validate call is refused with 403 (an empty body stores nothing)."""
        role = self.studio.me().role
        if role is not None:
            return role in ("lead", "admin")
        try:
            self.studio.request("POST", "/api/templates/validate", idempotent=True, json={})
        except ApiError as err:
            return err.status in (400, 422)  # refused for what it says, not for who asks
        return True

    # --- sketches and images
    def upload_sketch(self, data: bytes, filename: str, content_type: str) -> dict[str, Any]:
        return _plain(self.studio.upload_sketch(data, filename, content_type))

    def upload_as(self, role: str, data: bytes, filename: str, content_type: str) -> dict[str, Any]:
        """An upload in `role` (photo, mask, ...): its UploadOut as JSON."""
        files = {"file": (filename, data, content_type)}
        r = self.studio.request("POST", "/api/uploads", idempotent=True, files=files, data={"role": role})
        found: dict[str, Any] = r.json()
        return found

    def image_as_photo(self, image_id: str) -> dict[str, Any]:
        """One of the designer's renders as a photo upload (Edit a region from the gallery)."""
        found: dict[str, Any] = self.studio.request(
            "POST", f"/api/images/{image_id}/photo", idempotent=True
        ).json()
        return found

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

    # --- models: the inventory matrix and adding one (leads)
    def models(self) -> dict[str, Any]:
        return self.studio.models()

    def add_model(
        self, folder: str, file: str, s3_key: str, licence: str, allow_pickle: bool
    ) -> dict[str, Any]:
        return self.studio.add_model(folder, file, s3_key, licence, allow_pickle=allow_pickle)

    def upload_model(
        self, data: bytes, folder: str, file: str, licence: str, allow_pickle: bool
    ) -> dict[str, Any]:
        return self.studio.upload_model(data, folder, file, licence, allow_pickle=allow_pickle)

    # --- projects, favourites, share links, ZIP downloads
    def projects(self) -> list[dict[str, Any]]:
        return [_plain(p) for p in self.studio.projects()]

    def create_project(self, name: str, client: str, room: str) -> dict[str, Any]:
        return _plain(self.studio.create_project(name, client=client, room=room))

    def delete_project(self, project_id: str) -> None:
        self.studio.delete_project(project_id)

    def file_job(self, project_id: str, job_id: str, *, filed: bool = True) -> None:
        self.studio.file_job(project_id, job_id, filed=filed)

    def set_favourite(self, job_id: str, favourite: bool) -> None:
        self.studio.set_favourite(job_id, favourite)

    def share_links(self, project_id: str) -> list[dict[str, Any]]:
        return [_plain(x) for x in self.studio.share_links(project_id)]

    def create_share_link(
        self, project_id: str, image_ids: list[str] | None, title: str | None, days: int
    ) -> dict[str, Any]:
        """The project's link, or a selection of its renders (`image_ids`); `url` is in this answer only."""
        link = self.studio.create_share_link(
            project_id=project_id, image_ids=image_ids or None, title=title or None, expires_in_days=days
        )
        return _plain(link)

    def revoke_share_link(self, link_id: str) -> dict[str, Any]:
        return _plain(self.studio.revoke_share_link(link_id))

    def download_zip(self, project_id: str, image_ids: list[str] | None) -> bytes:
        if image_ids:
            return self.studio.download_zip(image_ids=image_ids)
        return self.studio.download_zip(project_id=project_id)

    # --- signing in and out (an anonymous client signs in; the session's client signs out)
    def sign_in(self, email: str, password: str) -> dict[str, Any]:
        """{"token", "expires_at", "designer": {id, name, email, role}}: a backend session."""
        return _plain(self.studio.sign_in(email, password))

    def oidc_sign_in(self, id_token: str) -> dict[str, Any]:
        return _plain(self.studio.oidc_sign_in(id_token))

    def set_password(self, link_token: str, password: str) -> None:
        self.studio.set_password(link_token, password)

    def sign_out(self) -> None:
        self.studio.sign_out()

    # --- admin: accounts, every API key, sign-ins, the audit log
    def users(self) -> list[dict[str, Any]]:
        return [_plain(u) for u in self.studio.users()]

    def invite_user(self, name: str, email: str, role: str) -> dict[str, Any]:
        return _plain(self.studio.invite_user(name, email, role))  # type: ignore[arg-type]

    def update_user(self, user_id: str, *, role: str | None = None, is_active: bool | None = None) -> None:
        self.studio.update_user(user_id, role=role, is_active=is_active)  # type: ignore[arg-type]

    def set_quotas(self, user_id: str, max_active_jobs: int | None, max_uploads_per_hour: int | None) -> None:
        self.studio.set_quotas(user_id, max_active_jobs, max_uploads_per_hour)

    def password_link(self, user_id: str) -> dict[str, Any]:
        return _plain(self.studio.password_link(user_id))

    def all_api_keys(self) -> list[dict[str, Any]]:
        return [_plain(k) for k in self.studio.all_api_keys()]

    def revoke_any_api_key(self, key_id: str) -> None:
        self.studio.revoke_any_api_key(key_id)

    def sign_ins(self, *, outcome: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return [_plain(e) for e in self.studio.sign_ins(outcome=outcome, limit=limit).items]

    def audit(self, *, cursor: str | None = None, limit: int = 50, **filters: Any) -> dict[str, Any]:
        return _plain(self.studio.audit(cursor=cursor, limit=limit, **filters))

    def audit_actions(self) -> list[str]:
        return self.studio.audit_actions()

    def audit_export(self, **filters: Any) -> bytes:
        return self.studio.audit_export(**filters)
