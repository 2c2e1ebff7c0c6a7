"""What every executor shares: the Executor interface and the JobContext it works through.

An executor runs jobs somewhere (a ComfyUI server, SageMaker async inference). The dispatcher hands it
claimed jobs; the executor submits, follows and ends them through `JobContext`, which owns the database
transitions (`job_queue`), the graph building and the storage of results. A transition that returns
None means the job is no longer ours (another dispatcher adopted it, or it was cancelled): stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError

from backend import job_queue
from backend.config import Settings
from backend.db import SessionMaker, is_connection_error
from backend.images import ImageRejected, check_render, save_thumbnail
from backend.models import Image, Job, Upload, new_id
from backend.storage import Storage, StorageError, content_key
from contract.graphs import GraphInputs, build_graph
from contract.styles import Manifest

logger = logging.getLogger(__name__)
T = TypeVar("T")

STORE_ATTEMPTS = 3
STORE_RETRY_S = 0.5
TRANSITION_ATTEMPTS = 6  # about 6 s of back-off in all before a transition gives up
TRANSITION_RETRY_S = 0.2


class Executor(Protocol):
    name: str
    kind_name: str
    kinds: frozenset[str]

    @property
    def is_available(self) -> bool: ...

    def free_slots(self) -> int: ...

    def preferred_lora(self) -> str | None: ...

    def active_ids(self) -> list[str]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def run_job(self, job: Job) -> None:
        """Submit a freshly claimed job and follow it to its end."""

    async def resume_job(self, job: Job) -> None:
        """Reconcile an adopted job with the executor, then follow it."""

    def on_cancel_requested(self, job_id: str) -> None: ...

    def on_lease_lost(self, job_id: str) -> None: ...

    async def drain(self, grace_s: float) -> None:
        """Stop taking work; finish or hand back what is running within `grace_s`."""


@dataclass
class Followed:
    """What an executor keeps of one job it follows; each executor's subclass adds its own fields."""

    job: Job
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: bool = False
    lease_lost: bool = False


F = TypeVar("F", bound=Followed)


class FollowedJobs(Generic[F]):
    """The jobs one executor follows, as the dispatcher sees them: slots, ids, cancel and lease relays.

    `_follow_guarded` registers a job before its first await (the dispatcher counts on it to reserve the
    slot) and turns an unexpected error into a failed job, never into a dead dispatcher task.
    """

    def __init__(self, ctx: JobContext, slots: int) -> None:
        self.ctx = ctx
        self.slots = slots
        self.active: dict[str, F] = {}
        self._idle = asyncio.Event()  # set whenever the last followed job ends
        self._idle.set()

    def free_slots(self) -> int:
        return max(0, self.slots - len(self.active))

    def active_ids(self) -> list[str]:
        return list(self.active)

    def on_cancel_requested(self, job_id: str) -> None:
        a = self.active.get(job_id)
        if a is not None and not a.cancel_requested:
            a.cancel_requested = True
            a.wake.set()

    def on_lease_lost(self, job_id: str) -> None:
        a = self.active.get(job_id)
        if a is not None:
            a.lease_lost = True
            a.wake.set()

    async def _follow_guarded(self, a: F, work: Callable[[F], Awaitable[object]]) -> None:
        job_id = a.job.id
        self.active[job_id] = a
        self._idle.clear()
        try:
            await work(a)
        except Exception:
            logger.exception("job %s: unexpected error", job_id)
            await self.ctx.held(
                job_queue.fail, job_id, "internal_error", "The dispatcher hit an unexpected error."
            )
        finally:
            self.active.pop(job_id, None)
            if not self.active:
                self._idle.set()


@dataclass(frozen=True)
class RenderOutput:
    png: bytes
    index: int


class JobContext:
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

    async def transition(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run one job_queue function in its own transaction, as this dispatcher.

        A lost database connection (server restart, connection killed, SQLite locked) is retried with
        back-off: each job_queue function is one conditional statement, so a retry either applies it or
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

    async def load_upload(self, upload_id: str) -> tuple[Upload, bytes]:
        async with self.sessionmaker() as session:
            upload = await session.get(Upload, upload_id)
        if upload is None:
            raise LookupError(f"upload {upload_id} is gone")
        return upload, await self.storage.load(upload.storage_key)

    def graph_for(self, job: Job, sketch_name: str | None = None, dark_lines: bool = True) -> dict[str, Any]:
        inputs = GraphInputs(job.kind, dict(job.params), job.seed, job.id, sketch_name, dark_lines)
        return build_graph(
            inputs,
            self.manifest,
            self.settings.workflows_dir,
            checkpoint=self.settings.checkpoint_name,
            controlnet=self.settings.controlnet_name,
        )

    def render_meta(self, job: Job) -> dict[str, Any]:
        """Everything needed to redo a render exactly: settings, seed, models with their hashes."""
        style = self.manifest.styles.get(job.style)
        return {
            "job_id": job.id,
            "kind": job.kind,
            "params": dict(job.params),
            "seed": job.seed,
            "style": job.style,
            "checkpoint": self.settings.checkpoint_name,
            "controlnet": self.settings.controlnet_name if job.kind == "sketch" else None,
            "lora": (
                {"file": style.lora_file, "sha256": style.sha256, "version": style.version}
                if style is not None and style.has_lora
                else None
            ),
            "upload_id": job.upload_id,
        }

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

    async def store_outputs(self, job: Job, outputs: list[RenderOutput], render_s: float) -> list[Image]:
        """Check and save every render; the Image rows to add when the job finishes (thumbnails to come).

        Every file is written at once: on S3 a job's PUTs overlap instead of queuing one behind another."""
        meta = self.render_meta(job)

        async def store(out: RenderOutput) -> Image:
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
            )

        return await _all(*(store(out) for out in outputs))

    async def store_thumbnails(self, images: list[Image], outputs: list[RenderOutput]) -> None:
        """After the job succeeded: make and save the thumbnails, then mark them ready. A failure leaves
        them to the API, which makes a missing thumbnail on its first request."""
        pngs = {out.index: out.png for out in outputs}
        try:
            await _all(*(save_thumbnail(self.storage, image, pngs[image.index]) for image in images))
            await self.transition(job_queue.thumbnails_ready, [i.id for i in images])
        except Exception as exc:
            logger.warning("thumbnails of job %s left to the API: %s", images[0].job_id, exc)

    async def complete(self, job: Job, outputs: list[RenderOutput], render_s: float) -> bool:
        """Store the renders, then mark the job succeeded; on a storage failure fail it, never half-done."""
        if not outputs:
            await self.held(
                job_queue.fail, job.id, "no_output", "ComfyUI finished without producing an image."
            )
            return False
        try:
            images = await self.store_outputs(job, outputs, render_s)
        except StorageError as exc:
            logger.error(
                "job %s: storage failed: %s", job.id, exc, extra={"action": "job_failed", "job_id": job.id}
            )
            await self.held(
                job_queue.fail, job.id, "storage_failed", f"The render could not be stored: {exc}"
            )
            return False
        except ImageRejected as exc:
            await self.held(job_queue.fail, job.id, exc.code, str(exc))
            return False
        done = await self.held(job_queue.finish, job.id, images)
        if done is None:
            return False
        logger.info("job %s succeeded", job.id, extra={"action": "job_succeeded", "job_id": job.id})
        await self.store_thumbnails(images, outputs)
        return True


async def _all(*aws: Awaitable[T]) -> list[T]:
    """Run them together; after each has ended, raise the first failure (none is left running)."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]
