"""StudioClient: the render API over httpx, blocking (AsyncStudioClient in `aio` is its asyncio twin).

    with StudioClient("http://studio:8000", token) as studio:
        job = studio.render_and_wait(prompt="sunlit living room, rattan chairs", style="indochine")
        png = studio.image_bytes(job.images[0].url)

Progress comes from the job's WebSocket (replay after the last id seen, then live); when the stream
cannot be (re)opened the client polls the job instead, so a proxy without WebSockets only slows it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any, Self

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from studio_client import policy
from studio_client.accounts import AccountCalls
from studio_client.errors import (
    EventStreamLost,
    StudioError,
    from_event_stream,
    from_response,
    unreachable,
)
from studio_client.models import (
    Designer,
    Job,
    JobEvent,
    JobPage,
    JobRequest,
    Style,
    Upload,
)
from studio_client.policy import RetryPolicy
from studio_client.projects import ProjectMethods
from studio_client.templates import (
    Draft,
    Publication,
    Template,
    TemplateSummary,
    TemplateVersion,
    ValidationReport,
    report_from,
    report_of_problems,
    template_job_body,
    template_list,
)

WS_OPEN_TIMEOUT_S = 5.0
POLL_S = 1.0


class StudioClient(ProjectMethods, AccountCalls):
    """One designer's (or integration's) session with the API; every failure raises StudioError."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retry_policy = retry or RetryPolicy()
        self.poll_s = poll_s
        self.http = httpx.Client(
            base_url=self.base_url, headers=policy.auth_headers(token), timeout=timeout_s
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- transport
    def request(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response:
        """The answer to one request, retried as `policy` allows; StudioError for a 4xx/5xx or no answer."""
        for attempt in range(self.retry_policy.attempts):
            last = attempt == self.retry_policy.attempts - 1
            try:
                r = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if last or not policy.retries_failure(exc, idempotent):
                    raise unreachable(exc) from exc
                time.sleep(self.retry_policy.delay_s(attempt))
                continue
            if last or not policy.retries_status(r, idempotent):
                break
            time.sleep(self.retry_policy.delay_s(attempt, r))
        if r.status_code >= 400:
            raise from_response(r)
        return r

    def _get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, idempotent=True, params=params or None).json()

    # --- designer and styles
    def me(self) -> Designer:
        return Designer.model_validate(self._get("/api/me"))

    def styles(self) -> list[Style]:
        return [Style.model_validate(s) for s in self._get("/api/styles")]

    # --- jobs
    def create_job(
        self,
        request: JobRequest | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Start a render: a JobRequest, a body as a mapping, or its fields as keywords. Every retry of
        this call sends the same `Idempotency-Key` (one is made when none is given): one job at most."""
        body = policy.job_body(request, fields)
        headers = policy.create_headers(idempotency_key)
        r = self.request("POST", "/api/jobs", idempotent=True, json=body, headers=headers)
        return Job.model_validate(r.json())

    def render_and_wait(
        self,
        request: JobRequest | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
        **fields: Any,
    ) -> Job:
        """Start a render and return the job once it has ended (succeeded, failed or cancelled)."""
        job = self.create_job(request, idempotency_key=idempotency_key, **fields)
        return self.wait(job.id, timeout_s=timeout_s)

    def get_job(self, job_id: str) -> Job:
        return Job.model_validate(self._get(f"/api/jobs/{job_id}"))

    def list_jobs(
        self,
        *,
        limit: int = 20,
        cursor: str | None = None,
        status: list[str] | None = None,
        style: str | None = None,
        kind: str | list[str] | None = None,
        created_from: date | str | None = None,
        created_to: date | str | None = None,
        project: str | None = None,
        favourite: bool | None = None,
    ) -> JobPage:
        """One page of the gallery, newest first; pass its `next_cursor` back for the next one.
        `project`: only the renders filed in it; `favourite=True`: only favourites."""
        filters: dict[str, Any] = {"status": status, "style": style, "kind": kind}
        filters |= {"created_from": created_from, "created_to": created_to, "project": project}
        filters["favourite"] = "true" if favourite else ("false" if favourite is False else None)
        params = policy.list_params(limit, cursor, filters)
        return JobPage.model_validate(self._get("/api/jobs", **params))

    def iter_jobs(self, *, page_size: int = 20, **filters: Any) -> Iterator[Job]:
        """Every job matching `filters` (as list_jobs takes them), newest first, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(limit=page_size, cursor=cursor, **filters)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        r = self.request("POST", f"/api/jobs/{job_id}/cancel", idempotent=True)
        return Job.model_validate(r.json())

    def retry(self, job_id: str, *, new_seed: bool = False) -> Job:
        """A new job with the job's settings (not retried once sent: the server has no key to match)."""
        path = f"/api/jobs/{job_id}/retry"
        r = self.request("POST", path, idempotent=False, json={"new_seed": new_seed})
        return Job.model_validate(r.json())

    def create_template_job(
        self,
        template: str,
        inputs: Mapping[str, Any],
        version: int | None = None,
        *,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> Job:
        """Run a template (its current version unless `version`) with values for its declared inputs; a
        value the template refuses comes back as a 422 naming `inputs.<key>` (StudioError.fields())."""
        body = template_job_body(template, inputs, version, webhook_url)
        headers = policy.create_headers(idempotency_key)
        r = self.request("POST", "/api/jobs", idempotent=True, json=body, headers=headers)
        return Job.model_validate(r.json())

    # --- templates (reading: everyone; writing: leads)
    def templates(self, *, include_retired: bool = False) -> list[TemplateSummary]:
        """Published templates (and a lead's own drafts); retired ones too when asked."""
        params = {"include_retired": "true"} if include_retired else {}
        return template_list(self._get("/api/templates", **params))

    def get_template(self, name: str) -> Template:
        return Template.model_validate(self._get(f"/api/templates/{name}"))

    def get_template_version(self, name: str, version: int) -> TemplateVersion:
        return TemplateVersion.model_validate(self._get(f"/api/templates/{name}/versions/{version}"))

    def validate_template(self, declaration: Mapping[str, Any]) -> ValidationReport:
        """The validation report of a declaration; nothing is stored. An invalid one is a report with
        `ok` false (not an exception); StudioError for anything else (403 for a designer)."""
        try:
            r = self.request("POST", "/api/templates/validate", idempotent=True, json=dict(declaration))
        except StudioError as err:
            if err.code != "template_invalid":
                raise
            return report_of_problems(err.details)
        return report_from(r.json())

    def create_template(self, declaration: Mapping[str, Any]) -> Draft:
        """Store a new template's draft, validated (201 with the report). An invalid one is stored too
        and raises StudioError 422 `template_invalid`, its details the problems."""
        r = self.request("POST", "/api/templates", idempotent=False, json=dict(declaration))
        return Draft.model_validate(r.json())

    def update_draft(self, name: str, declaration: Mapping[str, Any]) -> Draft:
        """Replace a template's draft (same validation as create_template)."""
        r = self.request("PUT", f"/api/templates/{name}/draft", idempotent=True, json=dict(declaration))
        return Draft.model_validate(r.json())

    def publish_template(self, name: str) -> Publication:
        """The draft, re-validated against the instances now, becomes the next version (the same content
        as an existing version makes that one current: `created` false)."""
        return Publication.model_validate(self._post(f"/api/templates/{name}/publish"))

    def rollback_template(self, name: str, version: int) -> TemplateSummary:
        path = f"/api/templates/{name}/rollback"
        return TemplateSummary.model_validate(self._post(path, json={"version": version}))

    def retire_template(self, name: str) -> TemplateSummary:
        """No new job may start from it; its jobs stay readable."""
        return TemplateSummary.model_validate(self._post(f"/api/templates/{name}/retire"))

    def restore_template(self, name: str) -> TemplateSummary:
        return TemplateSummary.model_validate(self._post(f"/api/templates/{name}/restore"))

    def _post(self, path: str, **kwargs: Any) -> Any:
        # publish, rollback, retire and restore end in the same state when repeated: safe to retry
        return self.request("POST", path, idempotent=True, **kwargs).json()

    # --- models: the inventory (every designer) and adding one (leads; a pickle only for admins)
    def models(self) -> dict[str, Any]:
        """Per ComfyUI models folder, each file with the instances that have it, its pin and its users."""
        data: dict[str, Any] = self._get("/api/models")
        return data

    def add_model(
        self, folder: str, file: str, s3_key: str, licence: str, *, allow_pickle: bool = False
    ) -> dict[str, Any]:
        """Pin a model already in the models bucket (checked where it is; the same file again is a no-op)."""
        body: dict[str, Any] = {"folder": folder, "file": file, "s3_key": s3_key, "licence": licence}
        if allow_pickle:
            body["allow_pickle"] = True
        data: dict[str, Any] = self.request("POST", "/api/models", idempotent=True, json=body).json()
        return data

    def upload_model(
        self, data: bytes, folder: str, file: str, licence: str, *, allow_pickle: bool = False
    ) -> dict[str, Any]:
        """Upload and pin a model file (the request body is the file, streamed to the models bucket)."""
        params = {"folder": folder, "file": file, "licence": licence, "allow_pickle": allow_pickle}
        headers = {"content-type": "application/octet-stream"}
        r = self.request(
            "POST", "/api/models/upload", idempotent=True, params=params, content=data, headers=headers
        )
        added: dict[str, Any] = r.json()
        return added

    # --- sketches and images
    def upload_sketch(
        self, data: bytes, filename: str = "sketch.png", content_type: str = "image/png"
    ) -> Upload:
        files = {"file": (filename, data, content_type)}
        r = self.request("POST", "/api/uploads", idempotent=True, files=files)
        return Upload.model_validate(r.json())

    def get_upload(self, upload_id: str) -> Upload:
        return Upload.model_validate(self._get(f"/api/uploads/{upload_id}"))

    def image_bytes(self, url: str, **params: Any) -> bytes:
        """The bytes behind an API URL (an image, a thumbnail, a preview), through S3 redirects too."""
        path = policy.relative(self.base_url, url)
        if path is not None:
            kwargs = {"params": params or None, "follow_redirects": True}
            return self.request("GET", path, idempotent=True, **kwargs).content
        try:  # an absolute URL elsewhere (presigned): no token to leak there
            r = httpx.get(url, params=params or None, timeout=self.http.timeout, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise policy.storage_error(exc) from exc
        if r.status_code >= 400:
            raise policy.storage_error(None, r.status_code)
        return r.content

    # --- progress
    def _open_events(self, job_id: str, after: int) -> ClientConnection:
        url = policy.events_url(self.base_url, job_id, after)
        headers = policy.auth_headers(self.token)
        try:
            return connect(url, additional_headers=headers, open_timeout=WS_OPEN_TIMEOUT_S)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise EventStreamLost(str(exc)) from exc

    def stream_events(
        self, job_id: str, *, after: int = 0, tick_s: float | None = None
    ) -> Iterator[JobEvent | None]:
        """One connection to the job's events: those after `after`, then live; ends after the final one.

        With `tick_s`, None comes every `tick_s` without an event (to redraw a clock). EventStreamLost
        if the stream closes before the final event; StudioError if the server refuses it (404, 401).
        """
        with self._open_events(job_id, after) as ws:
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
                message = policy.parse_frame(raw)
                if "error" in message:
                    raise from_event_stream(message, _close_code(ws))
                event = JobEvent.model_validate(message)
                yield event
                if event.is_final:
                    return

    def follow(self, job_id: str, *, after: int = 0, timeout_s: float | None = None) -> Iterator[JobEvent]:
        """The job's events until its final one, across lost streams (resumed after the last id seen);
        when the stream cannot be reopened, the job is polled and its changes come as events."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last_id, failures = after, 0
        while failures < self.retry_policy.attempts:
            try:
                for event in self.stream_events(job_id, after=last_id, tick_s=self.poll_s):
                    _check(deadline, job_id)
                    if event is not None:
                        last_id, failures = max(last_id, event.id or 0), 0
                        yield event
                return
            except EventStreamLost:
                failures += 1
                time.sleep(self.retry_policy.delay_s(failures - 1))
        yield from self._poll(job_id, deadline)

    def _poll(self, job_id: str, deadline: float | None) -> Iterator[JobEvent]:
        previous: Job | None = None
        while True:
            job = self.get_job(job_id)
            yield from policy.polled_events(previous, job)
            if job.is_final:
                return
            previous = job
            _check(deadline, job_id)
            time.sleep(self.poll_s)

    def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        """The job once it has ended; TimeoutError past `timeout_s`."""
        for _event in self.follow(job_id, timeout_s=timeout_s):
            pass
        return self.get_job(job_id)


def _check(deadline: float | None, job_id: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"job {job_id} has not ended in time")


def _close_code(ws: ClientConnection) -> int | None:
    """After an error frame the server closes with 4000 + status: wait briefly for that close."""
    try:
        ws.recv(timeout=1.0)
    except (ConnectionClosed, TimeoutError) as exc:
        rcvd = getattr(exc, "rcvd", None)
        return rcvd.code if rcvd is not None else None
    return None
