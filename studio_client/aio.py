"""AsyncStudioClient: StudioClient's asyncio twin, same methods and retries, awaited.

async with AsyncStudioClient("http://studio:8000", token) as studio:
    job = await studio.render_and_wait(prompt="sunlit living room", style="indochine")
    async for event in studio.follow(other_job_id):
        ...
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import date
from typing import Any, Self

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from studio_client import policy
from studio_client.accounts import AsyncAccountCalls
from studio_client.errors import (
    EventStreamLost,
    StudioError,
    from_event_stream,
    from_response,
    unreachable,
)
from studio_client.models import Designer, Job, JobEvent, JobPage, JobRequest, Style, Upload
from studio_client.policy import RetryPolicy
from studio_client.projects import AsyncProjectMethods
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


class AsyncStudioClient(AsyncProjectMethods, AsyncAccountCalls):
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
        self.http = httpx.AsyncClient(
            base_url=self.base_url, headers=policy.auth_headers(token), timeout=timeout_s
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # --- transport
    async def request(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response:
        """The answer to one request, retried as `policy` allows; StudioError for a 4xx/5xx or no answer."""
        for attempt in range(self.retry_policy.attempts):
            last = attempt == self.retry_policy.attempts - 1
            try:
                r = await self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if last or not policy.retries_failure(exc, idempotent):
                    raise unreachable(exc) from exc
                await asyncio.sleep(self.retry_policy.delay_s(attempt))
                continue
            if last or not policy.retries_status(r, idempotent):
                break
            await asyncio.sleep(self.retry_policy.delay_s(attempt, r))
        if r.status_code >= 400:
            raise from_response(r)
        return r

    async def _get(self, path: str, **params: Any) -> Any:
        return (await self.request("GET", path, idempotent=True, params=params or None)).json()

    # --- designer and styles
    async def me(self) -> Designer:
        return Designer.model_validate(await self._get("/api/me"))

    async def styles(self) -> list[Style]:
        return [Style.model_validate(s) for s in await self._get("/api/styles")]

    # --- jobs
    async def create_job(
        self,
        request: JobRequest | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Start a render; every retry sends the same `Idempotency-Key` (see StudioClient.create_job)."""
        body = policy.job_body(request, fields)
        headers = policy.create_headers(idempotency_key)
        r = await self.request("POST", "/api/jobs", idempotent=True, json=body, headers=headers)
        return Job.model_validate(r.json())

    async def render_and_wait(
        self,
        request: JobRequest | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
        **fields: Any,
    ) -> Job:
        job = await self.create_job(request, idempotency_key=idempotency_key, **fields)
        return await self.wait(job.id, timeout_s=timeout_s)

    async def get_job(self, job_id: str) -> Job:
        return Job.model_validate(await self._get(f"/api/jobs/{job_id}"))

    async def list_jobs(
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
        filters: dict[str, Any] = {"status": status, "style": style, "kind": kind}
        filters |= {"created_from": created_from, "created_to": created_to, "project": project}
        filters["favourite"] = "true" if favourite else ("false" if favourite is False else None)
        params = policy.list_params(limit, cursor, filters)
        return JobPage.model_validate(await self._get("/api/jobs", **params))

    async def iter_jobs(self, *, page_size: int = 20, **filters: Any) -> AsyncIterator[Job]:
        cursor: str | None = None
        while True:
            page = await self.list_jobs(limit=page_size, cursor=cursor, **filters)
            for job in page.items:
                yield job
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> Job:
        r = await self.request("POST", f"/api/jobs/{job_id}/cancel", idempotent=True)
        return Job.model_validate(r.json())

    async def retry(self, job_id: str, *, new_seed: bool = False) -> Job:
        path = f"/api/jobs/{job_id}/retry"
        r = await self.request("POST", path, idempotent=False, json={"new_seed": new_seed})
        return Job.model_validate(r.json())

    async def create_template_job(
        self,
        template: str,
        inputs: Mapping[str, Any],
        version: int | None = None,
        *,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> Job:
        """Run a template with values for its declared inputs (see StudioClient.create_template_job)."""
        body = template_job_body(template, inputs, version, webhook_url)
        headers = policy.create_headers(idempotency_key)
        r = await self.request("POST", "/api/jobs", idempotent=True, json=body, headers=headers)
        return Job.model_validate(r.json())

    # --- templates (reading: everyone; writing: leads)
    async def templates(self, *, include_retired: bool = False) -> list[TemplateSummary]:
        params = {"include_retired": "true"} if include_retired else {}
        return template_list(await self._get("/api/templates", **params))

    async def get_template(self, name: str) -> Template:
        return Template.model_validate(await self._get(f"/api/templates/{name}"))

    async def get_template_version(self, name: str, version: int) -> TemplateVersion:
        data = await self._get(f"/api/templates/{name}/versions/{version}")
        return TemplateVersion.model_validate(data)

    async def validate_template(self, declaration: Mapping[str, Any]) -> ValidationReport:
        """The validation report (see StudioClient.validate_template)."""
        path = "/api/templates/validate"
        try:
            r = await self.request("POST", path, idempotent=True, json=dict(declaration))
        except StudioError as err:
            if err.code != "template_invalid":
                raise
            return report_of_problems(err.details)
        return report_from(r.json())

    async def create_template(self, declaration: Mapping[str, Any]) -> Draft:
        """Store a new template's draft (see StudioClient.create_template)."""
        r = await self.request("POST", "/api/templates", idempotent=False, json=dict(declaration))
        return Draft.model_validate(r.json())

    async def update_draft(self, name: str, declaration: Mapping[str, Any]) -> Draft:
        path = f"/api/templates/{name}/draft"
        r = await self.request("PUT", path, idempotent=True, json=dict(declaration))
        return Draft.model_validate(r.json())

    async def publish_template(self, name: str) -> Publication:
        return Publication.model_validate(await self._post(f"/api/templates/{name}/publish"))

    async def rollback_template(self, name: str, version: int) -> TemplateSummary:
        data = await self._post(f"/api/templates/{name}/rollback", json={"version": version})
        return TemplateSummary.model_validate(data)

    async def retire_template(self, name: str) -> TemplateSummary:
        return TemplateSummary.model_validate(await self._post(f"/api/templates/{name}/retire"))

    async def restore_template(self, name: str) -> TemplateSummary:
        return TemplateSummary.model_validate(await self._post(f"/api/templates/{name}/restore"))

    async def _post(self, path: str, **kwargs: Any) -> Any:
        return (await self.request("POST", path, idempotent=True, **kwargs)).json()

    # --- sketches and images
    async def upload_sketch(
        self, data: bytes, filename: str = "sketch.png", content_type: str = "image/png"
    ) -> Upload:
        files = {"file": (filename, data, content_type)}
        r = await self.request("POST", "/api/uploads", idempotent=True, files=files)
        return Upload.model_validate(r.json())

    async def get_upload(self, upload_id: str) -> Upload:
        return Upload.model_validate(await self._get(f"/api/uploads/{upload_id}"))

    async def image_bytes(self, url: str, **params: Any) -> bytes:
        path = policy.relative(self.base_url, url)
        if path is not None:
            kwargs = {"params": params or None, "follow_redirects": True}
            return (await self.request("GET", path, idempotent=True, **kwargs)).content
        try:  # an absolute URL elsewhere (presigned): no token to leak there
            async with httpx.AsyncClient(timeout=self.http.timeout, follow_redirects=True) as plain:
                r = await plain.get(url, params=params or None)
        except httpx.HTTPError as exc:
            raise policy.storage_error(exc) from exc
        if r.status_code >= 400:
            raise policy.storage_error(None, r.status_code)
        return r.content

    # --- progress
    async def _open_events(self, job_id: str, after: int) -> ClientConnection:
        url = policy.events_url(self.base_url, job_id, after)
        headers = policy.auth_headers(self.token)
        try:
            return await connect(url, additional_headers=headers, open_timeout=WS_OPEN_TIMEOUT_S)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise EventStreamLost(str(exc)) from exc

    async def stream_events(
        self, job_id: str, *, after: int = 0, tick_s: float | None = None
    ) -> AsyncIterator[JobEvent | None]:
        """One connection to the job's events (see StudioClient.stream_events)."""
        async with await self._open_events(job_id, after) as ws:
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), tick_s)
                except TimeoutError:
                    yield None
                    continue
                except ConnectionClosed as exc:
                    if exc.rcvd is not None and exc.rcvd.code == 1000:
                        return
                    raise EventStreamLost(str(exc)) from exc
                message = policy.parse_frame(raw)
                if "error" in message:
                    raise from_event_stream(message, await _close_code(ws))
                event = JobEvent.model_validate(message)
                yield event
                if event.is_final:
                    return

    async def follow(
        self, job_id: str, *, after: int = 0, timeout_s: float | None = None
    ) -> AsyncIterator[JobEvent]:
        """The job's events until its final one, resumed across lost streams, else polled."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last_id, failures = after, 0
        while failures < self.retry_policy.attempts:
            try:
                async for event in self.stream_events(job_id, after=last_id, tick_s=self.poll_s):
                    _check(deadline, job_id)
                    if event is not None:
                        last_id, failures = max(last_id, event.id or 0), 0
                        yield event
                return
            except EventStreamLost:
                failures += 1
                await asyncio.sleep(self.retry_policy.delay_s(failures - 1))
        async for event in self._poll(job_id, deadline):
            yield event

    async def _poll(self, job_id: str, deadline: float | None) -> AsyncIterator[JobEvent]:
        previous: Job | None = None
        while True:
            job = await self.get_job(job_id)
            for event in policy.polled_events(previous, job):
                yield event
            if job.is_final:
                return
            previous = job
            _check(deadline, job_id)
            await asyncio.sleep(self.poll_s)

    async def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        async for _event in self.follow(job_id, timeout_s=timeout_s):
            pass
        return await self.get_job(job_id)


def _check(deadline: float | None, job_id: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"job {job_id} has not ended in time")


async def _close_code(ws: ClientConnection) -> int | None:
    """After an error frame the server closes with 4000 + status: wait briefly for that close."""
    try:
        await asyncio.wait_for(ws.recv(), 1.0)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None
    except TimeoutError:
        return None
    return None
