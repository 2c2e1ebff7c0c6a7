"""The executors' only gateway to job state: named verbs, the render request, the storage of results.

An executor (`backend/executors/`) never touches the queue: it tells its `JobGateway` what happened to a
job it holds (submitted, started, progress, failed, cancelled, released, complete) and the gateway runs
the matching `job_queue` transition as this dispatcher, in its own transaction, retried with back-off
when the database connection is lost. A verb that returns None (or False) means the job is no longer
ours (another dispatcher adopted it, or it was cancelled): stop following it.

Every terminal failure is logged here, once, with the job, the node that failed (when ComfyUI named
one) and the reason. The dispatcher uses `transition` and `held` for what it owns itself (claims,
heartbeats, adoption, hand-overs).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from backend import job_queue
from backend.config import Settings
from backend.db import SessionMaker, is_connection_error
from backend.images import ImageRejected, check_render, save_thumbnail
from backend.models import Image, Job, TemplateVersion, Upload, new_id
from backend.render_request import (
    SKETCH_SUBFOLDER,
    ImagePlacer,
    InputImage,
    InvalidJob,
    Outputs,
    RenderRequest,
    extra_data,
    graph_for,
    image_upload_ids,
    render_meta,
    repoint,
    subfolder_in,
)
from backend.storage import Storage, StorageError, content_key
from contract.graphs import GraphError
from contract.styles import Manifest

logger = logging.getLogger(__name__)
T = TypeVar("T")

STORE_ATTEMPTS = 3
STORE_RETRY_S = 0.5
TRANSITION_ATTEMPTS = 6  # about 6 s of back-off in all before a transition gives up
TRANSITION_RETRY_S = 0.2


@dataclass(frozen=True)
class RenderOutput:
    """One image a render saved: `node_id` is its SaveImage node (None: an adapter that does not say,
    taken as a result)."""

    png: bytes
    index: int
    node_id: str | None = None


class JobGateway:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: SessionMaker,
        storage: Storage,
        manifest: Manifest,
        worker_id: str,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.storage = storage
        self.manifest = manifest
        self.worker_id = worker_id
        self._specs: dict[str, dict[str, Any]] = {}  # template version id → its spec (immutable)

    # --- transactions -----------------------------------------------------------------------------
    async def transition(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run one queue function in its own transaction, as this dispatcher.

        A lost database connection (server restart, connection killed, SQLite locked) is retried with
        back-off: each queue function is one conditional statement, so a retry either applies it or
        finds the job already moved on.
        """
        for attempt in range(1, TRANSITION_ATTEMPTS + 1):
            try:
                async with self.sessionmaker() as session, session.begin():
                    return await fn(session, *args, **kwargs)
            except DBAPIError as exc:
                if not is_connection_error(exc) or attempt == TRANSITION_ATTEMPTS:
                    raise
                delay = TRANSITION_RETRY_S * 2 ** (attempt - 1)
                logger.warning("%s: database unavailable (%s), retry in %.1f s", fn.__name__, exc.orig, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def held(self, fn: Callable[..., Awaitable[T]], job_id: str, *args: Any, **kwargs: Any) -> T:
        """A transition on a job this dispatcher holds (`job_queue` checks the hold)."""
        return await self.transition(fn, job_id, self.worker_id, *args, **kwargs)

    # --- the verbs an executor speaks -------------------------------------------------------------
    async def submitted(
        self,
        job_id: str,
        graph: dict[str, Any],
        external: dict[str, Any],
        *,
        resubmit_reason: str | None = None,
    ) -> Job | None:
        """The request went out (one more attempt), with the executor's bookkeeping; `resubmit_reason`
        when an earlier attempt was lost (stored as a `resubmitted` event, for the designer)."""
        return await self.held(
            job_queue.mark_submitted, job_id, graph=graph, external=external, resubmit_reason=resubmit_reason
        )

    async def started(self, job_id: str) -> bool:
        return await self.held(job_queue.mark_started, job_id)

    async def progress(self, job_id: str, value: int, maximum: int) -> bool:
        return await self.held(job_queue.record_progress, job_id, value, maximum)

    async def external(self, job_id: str, external: dict[str, Any]) -> Job | None:
        """Replace the executor's own notes on the job (no event)."""
        return await self.held(job_queue.record_external, job_id, external)

    async def cancelled(self, job_id: str) -> Job | None:
        return await self.held(job_queue.mark_cancelled, job_id)

    async def release(self, job_id: str, reason: str, delay_s: float = 0.0) -> Job | None:
        """Back to the queue (nothing of it runs anywhere), after an optional back-off."""
        return await self.held(job_queue.release, job_id, reason=reason, delay_s=delay_s)

    async def fail(
        self,
        job_id: str,
        code: str,
        message: str,
        *,
        node_id: str | None = None,
        node_type: str | None = None,
    ) -> Job | None:
        """The job failed for good: stored, and logged once, with the node that failed if known."""
        job = await self.held(job_queue.fail, job_id, code, message)
        if job is not None:
            at = f" at node {node_id} ({node_type})" if node_id is not None else ""
            logger.warning(
                "job %s failed%s: %s: %s",
                job_id,
                at,
                code,
                message,
                extra={
                    "action": "job_failed",
                    "job_id": job_id,
                    "error_code": code,
                    "node_id": node_id,
                    "node_type": node_type,
                },
            )
        return job

    async def job_status(self, job_id: str) -> str | None:
        """The job's status as stored now (None: no such job), whoever holds it."""
        async with self.sessionmaker() as session:
            job = await session.get(Job, job_id)
        return None if job is None else job.status

    # --- the render request ---------------------------------------------------------------------
    async def render_request(self, job: Job, place_image: ImagePlacer | None = None) -> RenderRequest:
        """The job's request: its stored graph exactly (a job queued before templates: built as then),
        with every image it loads placed by `place_image` (default: sent inside the request, under its
        content name). InvalidJob when the job cannot be rendered as stored."""
        try:
            spec = await self.spec(job)
            uploads = await self._uploads(image_upload_ids(job, spec))
            stored = copy.deepcopy(job.graph) if job.graph else None
            images = tuple(
                InputImage(
                    f"{u.sha256}.png",
                    data,
                    u.dark_lines,
                    SKETCH_SUBFOLDER if stored is None else subfolder_in(stored, f"{u.sha256}.png"),
                )
                for u, data in uploads
            )
            placed = {i.path: await place_image(i) if place_image is not None else i.path for i in images}
            if stored is None:
                if job.kind == "sketch" and not images:
                    raise LookupError(f"sketch job {job.id} has no upload")
                path, dark = (placed[images[0].path], images[0].dark_lines) if images else (None, True)
                graph = graph_for(job, self.settings, self.manifest, path, dark)
            else:
                graph = stored
                for old, new in placed.items():
                    if old != new:
                        logger.warning("job %s: %s stored as %s by ComfyUI", job.id, old, new)
                        repoint(graph, old, new)
        except (GraphError, LookupError) as exc:
            raise InvalidJob(str(exc)) from exc
        return RenderRequest(job.id, graph, extra_data(job), images, Outputs.of_spec(spec))

    async def spec(self, job: Job) -> dict[str, Any] | None:
        """The spec (graph, inputs, outputs) of the template version the job runs; None before 0006."""
        version_id = job.template_version_id
        if version_id is None:
            return None
        if version_id not in self._specs:
            async with self.sessionmaker() as session:
                version = await session.get(TemplateVersion, version_id)
            if version is None:
                raise LookupError(f"template version {version_id} is gone")
            self._specs[version_id] = dict(version.spec)
        return self._specs[version_id]

    async def outputs(self, job: Job) -> Outputs:
        """Which SaveImage nodes the job keeps (results, labelled passes)."""
        try:
            return Outputs.of_spec(await self.spec(job))
        except LookupError:
            return Outputs()

    async def _uploads(self, upload_ids: list[str]) -> list[tuple[Upload, bytes]]:
        found: list[tuple[Upload, bytes]] = []
        for upload_id in upload_ids:
            async with self.sessionmaker() as session:
                upload = await session.get(Upload, upload_id)
            if upload is None:
                raise LookupError(f"upload {upload_id} is gone")
            found.append((upload, await self.storage.load(upload.storage_key)))
        return found

    # --- results ----------------------------------------------------------------------------------
    async def complete(self, job: Job, outputs: list[RenderOutput], render_s: float) -> bool:
        """Store the renders (the version's results) and its passes, then mark the job succeeded; on a
        storage failure fail it, never half-done."""
        kept = _kept(outputs, await self.outputs(job))
        if not any(label is None for _, label in kept):
            await self.fail(job.id, "no_output", "ComfyUI finished without producing an image.")
            return False
        outputs = [out for out, _ in kept]
        try:
            images = await self._store_outputs(job, kept, render_s)
        except StorageError as exc:
            await self.fail(job.id, "storage_failed", f"The render could not be stored: {exc}")
            return False
        except ImageRejected as exc:
            await self.fail(job.id, exc.code, str(exc))
            return False
        done = await self.held(job_queue.finish, job.id, images)
        if done is None:
            return False
        logger.info("job %s succeeded", job.id, extra={"action": "job_succeeded", "job_id": job.id})
        await self._store_thumbnails(images, outputs)
        return True

    async def _save_with_retry(self, key: str, data: bytes, content_type: str) -> None:
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                await self.storage.save(key, data, content_type)
                return
            except StorageError:
                if attempt == STORE_ATTEMPTS:
                    raise
                logger.warning("storage write failed (attempt %d), retrying: %s", attempt, key)
                await asyncio.sleep(STORE_RETRY_S * attempt)

    async def _store_outputs(
        self, job: Job, kept: list[tuple[RenderOutput, str | None]], render_s: float
    ) -> list[Image]:
        """Check and save every image (a result, or a pass with its label); the Image rows to add when the
        job finishes (thumbnails to come).

        Every file is written at once: on S3 a job's PUTs overlap instead of queuing one behind another."""
        meta = render_meta(job, self.settings, self.manifest)

        async def store(out: RenderOutput, label: str | None) -> Image:
            info = await asyncio.to_thread(check_render, out.png)
            key, digest = content_key("images", out.png, "png")
            await self._save_with_retry(key, out.png, "image/png")
            return Image(
                id=new_id(),
                job_id=job.id,
                designer_id=job.designer_id,
                index=out.index,
                storage_key=key,
                thumb_key=f"thumbs/{digest[:2]}/{digest}.jpg",
                thumb_ready=False,
                sha256=digest,
                width=info.width,
                height=info.height,
                size_bytes=len(out.png),
                seed=job.seed,
                meta=meta,
                render_s=render_s,
                role="result" if label is None else "pass",
                node_id=out.node_id,
                label=label,
            )

        return await _all(*(store(out, label) for out, label in kept))

    async def _store_thumbnails(self, images: list[Image], outputs: list[RenderOutput]) -> None:
        """After the job succeeded: make and save the thumbnails, then mark them ready. A failure leaves
        them to the API, which makes a missing thumbnail on its first request."""
        pngs = {out.index: out.png for out in outputs}
        try:
            await _all(*(save_thumbnail(self.storage, image, pngs[image.index]) for image in images))
            await self.transition(job_queue.thumbnails_ready, [i.id for i in images])
        except Exception as exc:
            logger.warning("thumbnails of job %s left to the API: %s", images[0].job_id, exc)


def _kept(outputs: list[RenderOutput], spec: Outputs) -> list[tuple[RenderOutput, str | None]]:
    """The outputs the job keeps, with a pass's label (None: a result): the results first, then the
    passes, each in the version's node order and batch order, numbered again from 0 (an image without a
    node, from an adapter that does not say, is a result; other nodes' images are not kept)."""
    order = {node_id: n for n, node_id in enumerate(spec.nodes)}
    chosen = [o for o in outputs if o.node_id is None or o.node_id in order]
    chosen.sort(key=lambda o: (o.node_id is not None and spec.label(o.node_id) is not None,
                               order.get(o.node_id or "", -1), o.index))  # fmt: skip
    return [
        (RenderOutput(o.png, n, o.node_id), None if o.node_id is None else spec.label(o.node_id))
        for n, o in enumerate(chosen)
    ]


async def _all(*aws: Awaitable[T]) -> list[T]:
    """Run them together; after each has ended, raise the first failure (none is left running)."""
    done: list[T] = []
    for r in await asyncio.gather(*aws, return_exceptions=True):
        if isinstance(r, BaseException):
            raise r
        done.append(r)
    return done
