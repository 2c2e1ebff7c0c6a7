"""The direct executor: one ComfyUI server, one running and `COMFY_PREQUEUE` pre-queued prompts.

A job's id is its ComfyUI `prompt_id`. Progress comes from one long-lived /ws per server (this
dispatcher's `clientId`; ComfyUI sends a prompt's messages only to the client id that submitted it, so
a job adopted from another dispatcher is also listened to under that one's id); completion is
`executing` with `node: null`, then /history and /view. While the socket is down (HTTP is probed to
reconnect as soon as the server answers), or for an adopted job, the job is reconciled by polling:
in /queue → still coming; in /history → finished; in neither → lost (ComfyUI restarted) → resubmitted,
the jobs lost together in the order ComfyUI had them (the running one first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from backend.config import ComfyInstance
from backend.executors.base import Followed, FollowedJobs
from backend.executors.previews import PreviewRelay
from backend.job_context import JobGateway, RenderOutput
from backend.models import Job
from backend.render_request import InputImage, InvalidJob, sampling_steps
from contract.comfy_client import (
    ComfyClient,
    ComfyError,
    ComfyExecutionFailed,
    ComfyRejected,
    ComfyUnreachable,
    Preview,
    execution_failure,
    was_interrupted,
)

logger = logging.getLogger(__name__)

RECONCILE_WITH_WS_S = 5.0  # poll a job's state this often even while the socket is healthy
RECONCILE_WITHOUT_WS_S = 0.5  # ... and this often while it is down, or for adopted jobs
WS_BACKOFF_MIN_S = 0.2
PROBE_INTERVAL_S = 0.5  # while the socket is down, ask HTTP this often whether the server is back
SUBMIT_BACKOFF_S = 2.0
OOM_RETRIES = 1
LOST_AFTER_S = 300.0  # a server unreachable this long: its jobs go back to the queue
JOB_TIMEOUT_S = 1800.0


@dataclass
class Active(Followed):
    """What this executor knows of one job it follows."""

    done: bool = False
    started: bool = False
    started_recorded: bool = False
    progress: tuple[int, int] = (0, 0)
    progress_recorded: tuple[int, int] = (0, 0)
    progress_recorded_at: float = 0.0
    cancel_sent: bool = False
    last_ws_at: float = 0.0
    submitted_mono: float = field(default_factory=time.monotonic)
    oom_retries: int = 0
    steps: dict[str, int] = field(default_factory=dict)  # sampling node → its steps (the graph's literal)
    node_steps: dict[str, int] = field(default_factory=dict)  # sampling node → steps done this attempt

    def __post_init__(self) -> None:
        self.steps = sampling_steps(self.job.graph or {})

    def on_progress(self, node: str, value: int, maximum: int) -> None:
        """A sampling node's step: the job's progress is the steps done across every sampling node of the
        graph, out of their sum (a graph without any: the node's own count)."""
        if self.steps and node not in self.steps:
            return
        if self.steps:
            self.node_steps[node] = max(self.node_steps.get(node, 0), min(value, self.steps[node]))
        self.progress = self.progress_at(node, value, maximum)

    def progress_at(self, node: str, value: int, maximum: int) -> tuple[int, int]:
        """The job's progress once `node` reaches `value` (what on_progress would make it)."""
        if not self.steps:
            return (value, maximum)
        if node not in self.steps:
            return self.progress
        done = {**self.node_steps, node: max(self.node_steps.get(node, 0), min(value, self.steps[node]))}
        return (sum(done.values()), sum(self.steps.values()))


class ComfyExecutor(FollowedJobs[Active]):
    executor_type = "comfy"

    def __init__(self, ctx: JobGateway, instance: ComfyInstance) -> None:
        super().__init__(ctx, 1 + ctx.settings.comfy_prequeue)
        self.instance = instance
        self.name = instance.name
        self.serves = instance.serves
        self.client = ComfyClient(instance.url, f"studio-{ctx.worker_id}", ctx.settings.comfy_timeout_s)
        self.ws_up = False
        self.down_since: float | None = None
        self.last_lora: str | None = None
        self.draining = False
        self._ws_task: asyncio.Task[None] | None = None
        self._resubmitting = asyncio.Lock()  # jobs lost together go back one at a time, in queue order
        self._borrowed: dict[str, asyncio.Task[None]] = {}  # another client id → its socket's task
        self._borrowed_users: dict[str, int] = {}  # another client id → adopted jobs that need it
        self.previews = PreviewRelay(ctx.sessionmaker, self._preview_progress)

    # --- capacity, as the dispatcher sees it ------------------------------------------------------
    @property
    def is_available(self) -> bool:
        return self.ws_up and not self.draining

    def preferred_lora(self) -> str | None:
        return self.last_lora

    # --- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._ws_task = asyncio.create_task(self._ws_loop(), name=f"ws {self.name}")

    async def close(self) -> None:
        for task in [self._ws_task, *self._borrowed.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.previews.close()
        await self.client.close()

    async def drain(self, grace_s: float) -> None:
        """SIGTERM: hand back pre-queued prompts, let the running one finish within `grace_s`."""
        self.draining = True
        with contextlib.suppress(ComfyUnreachable):
            state = await self.client.queue()
            pending = [a for jid, a in self.active.items() if jid in state.pending]
            if pending:
                await self.client.delete_pending([a.job.id for a in pending])
                state = await self.client.queue()
            for a in pending:
                if a.job.id not in state:
                    await self._release(a, "dispatcher stopping", forget=True)
        if self.active:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)

    # --- the socket -----------------------------------------------------------------------------
    async def _ws_loop(self) -> None:
        backoff = WS_BACKOFF_MIN_S
        while True:
            try:
                async for msg in self.client.events():
                    if not self.ws_up:
                        self.ws_up, self.down_since, backoff = True, None, WS_BACKOFF_MIN_S
                        logger.info("ComfyUI %s is up", self.name, extra={"action": "comfy_up"})
                        self._wake_all()
                    self._on_event(msg)
            except ComfyUnreachable as exc:
                logger.debug("socket to %s failed: %s", self.name, exc)
            if self.ws_up or self.down_since is None:
                logger.warning("lost ComfyUI %s", self.name, extra={"action": "comfy_down"})
                self.down_since = time.monotonic()
            self.ws_up = False
            self._wake_all()
            await self._sleep_until_answering(backoff)
            backoff = min(backoff * 2, self.ctx.settings.comfy_retry_max_s)

    async def _sleep_until_answering(self, backoff_s: float) -> None:
        """Sleep out the back-off, but end it as soon as HTTP answers: a restarted ComfyUI gets its
        socket back within PROBE_INTERVAL_S, however long it was down; a down one costs a refused
        connection per probe."""
        deadline = time.monotonic() + backoff_s
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(PROBE_INTERVAL_S, left))
            with contextlib.suppress(ComfyError, httpx.HTTPError):
                await self.client.system_stats()
                return

    def _wake_all(self) -> None:
        for a in self.active.values():
            a.wake.set()

    def _on_event(self, msg: dict[str, Any] | Preview) -> None:
        if isinstance(msg, Preview):
            self.previews.on_preview(msg)
            return
        self.previews.on_message(msg)
        self._on_message(msg)

    def _preview_progress(
        self, job_id: str, node: str | None, value: int | None, maximum: int | None
    ) -> tuple[int, int] | None:
        """A preview's (step, steps): at its node's value when known, else the job's progress."""
        a = self.active.get(job_id)
        if a is None:
            return None
        if node is None or value is None or maximum is None:
            return a.progress
        return a.progress_at(node, value, maximum)

    def _on_message(self, msg: dict[str, Any]) -> None:
        data = msg.get("data") or {}
        a = self.active.get(str(data.get("prompt_id")))
        if a is None:
            return
        a.last_ws_at = time.monotonic()
        kind = msg.get("type")
        if kind == "execution_start":
            a.started = True
        elif kind == "progress":
            a.started = True
            a.on_progress(str(data.get("node")), int(data.get("value", 0)), int(data.get("max", 0)))
        elif kind == "executing" and data.get("node") is None:
            a.done = True
        else:
            return
        a.wake.set()

    # --- jobs ---------------------------------------------------------------------------------------
    async def run_job(self, job: Job) -> None:
        try:
            await self._follow_guarded(Active(job), self._submit_and_follow)
        finally:
            await self.previews.end(job.id)

    async def resume_job(self, job: Job) -> None:
        submitter = str((job.external or {}).get("client_id") or "")
        try:
            if not submitter or submitter == self.client.client_id:
                await self._follow_guarded(Active(job), self._follow)
                return
            self._listen_as(submitter)
            try:
                await self._follow_guarded(Active(job), self._follow)
            finally:
                await self._stop_listening_as(submitter)
        finally:
            await self.previews.end(job.id)

    # --- another dispatcher's socket ----------------------------------------------------------------
    def _listen_as(self, client_id: str) -> None:
        """ComfyUI sends a prompt's progress only to the socket of the client id that submitted it: for
        a job adopted from a dispatcher that stopped heartbeating (its socket went with it), open one
        under that id too, shared by every job it submitted here."""
        self._borrowed_users[client_id] = self._borrowed_users.get(client_id, 0) + 1
        if client_id not in self._borrowed:
            task = asyncio.create_task(self._borrowed_loop(client_id), name=f"ws {self.name} as {client_id}")
            self._borrowed[client_id] = task

    async def _stop_listening_as(self, client_id: str) -> None:
        self._borrowed_users[client_id] -= 1
        if self._borrowed_users[client_id] == 0:
            del self._borrowed_users[client_id]
            task = self._borrowed.pop(client_id)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _borrowed_loop(self, client_id: str) -> None:
        client = ComfyClient(self.instance.url, client_id, self.ctx.settings.comfy_timeout_s)
        try:
            while True:
                with contextlib.suppress(ComfyUnreachable):
                    async for msg in client.events():
                        self._on_event(msg)
                await asyncio.sleep(PROBE_INTERVAL_S)
        finally:
            await client.close()

    async def _submit_and_follow(self, a: Active) -> None:
        if await self._submit(a):
            await self._follow(a)

    async def _upload_image(self, image: InputImage) -> str:
        """Into ComfyUI's input folder under the exact name the graph loads (overwriting: content-named)."""
        return await self.client.upload_image(image.png, image.filename, image.subfolder)

    async def _submit(self, a: Active, resubmit_reason: str | None = None) -> bool:
        """Send the job's graph; False when the job ended or went back to the queue instead."""
        job = a.job
        try:
            request = await self.ctx.render_request(job, self._upload_image)
            await self.client.submit(request.graph, job.id, request.extra_data)
        except InvalidJob as exc:
            await self.ctx.fail(job.id, "invalid_job", str(exc))
            return False
        except ComfyRejected as exc:
            await self.ctx.fail(job.id, "comfy_rejected", str(exc))
            return False
        except ComfyUnreachable as exc:
            if isinstance(exc.__cause__, httpx.ConnectError):
                # Never reached ComfyUI: nothing was queued there, so the job can go anywhere.
                self.ws_up = False
                await self._release(a, f"ComfyUI {self.name} unreachable", delay_s=SUBMIT_BACKOFF_S)
                return False
            logger.warning("job %s: submit outcome unknown (%s); reconciling", job.id, exc)
            return True
        external = {"instance": self.name, "client_id": self.client.client_id}
        held = await self.ctx.submitted(job.id, request.graph, external, resubmit_reason=resubmit_reason)
        if held is None:
            return False
        a.job, a.submitted_mono = held, time.monotonic()
        a.steps = sampling_steps(request.graph)
        self.last_lora = job.lora_name
        logger.info(
            "job %s submitted to %s", job.id, self.name, extra={"action": "job_submitted", "job_id": job.id}
        )
        return True

    async def _release(self, a: Active, reason: str, delay_s: float = 0.0, forget: bool = False) -> None:
        await self.ctx.release(a.job.id, reason, delay_s)
        if forget:
            a.lease_lost = True
            a.wake.set()

    async def _follow(self, a: Active) -> None:
        last_reconcile = 0.0 if a.job.submitted_at is None or not self.ws_up else time.monotonic()
        while not a.lease_lost:
            interval = RECONCILE_WITH_WS_S if self.ws_up and a.last_ws_at else RECONCILE_WITHOUT_WS_S
            timeout = max(0.0, last_reconcile + interval - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(a.wake.wait(), timeout)
            a.wake.clear()
            if a.lease_lost:
                return
            await self._record_progress(a)
            if a.cancel_requested and not a.cancel_sent:
                await self._cancel(a)
            if a.done:
                # The last steps' progress may have arrived while the write above was under way.
                await self._record_progress(a)
                if await self._collect(a):
                    return
                continue
            if time.monotonic() - last_reconcile >= interval:
                last_reconcile = time.monotonic()
                if await self._reconcile(a):
                    return

    async def _record_progress(self, a: Active) -> None:
        if a.started and not a.started_recorded:
            a.started_recorded = True
            await self.ctx.started(a.job.id)
        value, maximum = a.progress
        due = time.monotonic() - a.progress_recorded_at >= self.ctx.settings.progress_min_interval_s
        if maximum and a.progress != a.progress_recorded and (due or value == maximum):
            a.progress_recorded, a.progress_recorded_at = a.progress, time.monotonic()
            if not await self.ctx.progress(a.job.id, value, maximum):
                a.lease_lost = True

    async def _cancel(self, a: Active) -> None:
        """Pending in ComfyUI: delete it; running: interrupt it. The outcome arrives like any other."""
        try:
            state = await self.client.queue()
            if a.job.id in state.pending:
                await self.client.delete_pending([a.job.id])
                state = await self.client.queue()
            if a.job.id in state.running:
                await self.client.interrupt(a.job.id)
            a.cancel_sent = True
            a.wake.set()  # reconcile at once: a deleted prompt produces no event
        except ComfyUnreachable:
            logger.warning("job %s: cannot reach ComfyUI to cancel; will retry", a.job.id)

    async def _reconcile(self, a: Active) -> bool:
        """Poll ComfyUI for the job; True when the job reached its end here."""
        job = a.job
        try:
            state = await self.client.queue()
            if job.id in state:
                if time.monotonic() - a.submitted_mono > JOB_TIMEOUT_S:
                    await self.client.interrupt(job.id)
                return False
            entry = await self.client.history(job.id)
        except ComfyUnreachable:
            if self.down_since is not None and time.monotonic() - self.down_since > LOST_AFTER_S:
                await self._release(
                    a, f"ComfyUI {self.name} unreachable for {LOST_AFTER_S:.0f}s", forget=True
                )
                return True
            return False
        if entry is not None:
            a.done = True
            return await self._collect(a, entry)
        return await self._lost(a, job.attempts)

    async def _lost(self, a: Active, seen_attempts: int) -> bool:
        """In neither queue nor history (or interrupted by someone else) when the job was at attempt
        `seen_attempts`: ComfyUI restarted (or the cancel deleted it). True when the job ended here."""
        async with self._resubmitting:
            if a.job.attempts != seen_attempts or a.lease_lost:
                return a.lease_lost  # resubmitted (or ended) in another job's turn meanwhile
            job = a.job
            if a.cancel_requested:
                await self.ctx.cancelled(job.id)
                return True
            if job.attempts >= self.ctx.settings.max_attempts:
                msg = f"ComfyUI lost the job {job.attempts} times (server restarts); giving up."
                await self.ctx.fail(job.id, "comfy_lost_job", msg)
                return True
            for ahead in self._queued_ahead_of(a):
                await self._resubmit_if_lost(ahead)
            logger.warning(
                "job %s lost by %s; resubmitting", job.id, self.name, extra={"action": "job_resubmitted"}
            )
            return await self._resubmit(a, f"ComfyUI {self.name} restarted and lost the render")

    def _queued_ahead_of(self, a: Active) -> list[Active]:
        """The other jobs ComfyUI had queued before `a` (it runs its queue in submission order)."""
        mine = _queue_order(a)
        ahead = [b for b in self.active.values() if b is not a and _queue_order(b) < mine]
        return sorted(ahead, key=_queue_order)

    async def _resubmit_if_lost(self, a: Active) -> None:
        """Another job queued ahead: resubmit it now if ComfyUI has it in neither queue nor history;
        anything else (finished, cancelled, out of attempts) its own follower decides."""
        if a.done or a.lease_lost or a.cancel_requested or a.job.attempts >= self.ctx.settings.max_attempts:
            return
        try:
            if a.job.id in await self.client.queue() or await self.client.history(a.job.id) is not None:
                return
        except ComfyUnreachable:
            return
        logger.warning(
            "job %s lost by %s; resubmitting it first",
            a.job.id,
            self.name,
            extra={"action": "job_resubmitted"},
        )
        await self._resubmit(a, f"ComfyUI {self.name} restarted and lost the render")

    async def _resubmit(self, a: Active, reason: str) -> bool:
        """Submit the job again; its `started` and the progress already shown stay as they are (the
        queue records the new attempt's steps once they pass them). True when the job ended instead."""
        a.done, a.started, a.progress, a.node_steps = False, False, a.progress_recorded, {}
        # A first submit whose answer was lost (timeout) was never recorded: this is its first attempt.
        if await self._submit(a, resubmit_reason=reason if a.job.attempts else None):
            return False
        a.lease_lost = True  # ended or back in the queue: whichever task follows it stops
        a.wake.set()
        return True

    async def _collect(self, a: Active, entry: dict[str, Any] | None = None) -> bool:
        """The prompt finished: store its images, or fail / cancel / retry the job. True when it ended."""
        job = a.job
        try:
            entry = entry or await self.client.history(job.id)
            if entry is None:
                a.done = False
                return await self._reconcile(a)
            failure = execution_failure(entry)
            if failure is not None:
                return await self._failed(a, failure)
            if was_interrupted(entry) or not entry.get("status", {}).get("completed", False):
                if a.cancel_requested:
                    await self.ctx.cancelled(job.id)
                    return True
                return await self._lost(a, job.attempts)
            outputs = await self._fetch_outputs(job, entry)
        except ComfyUnreachable as exc:
            logger.warning("job %s: fetching results failed (%s); will retry", job.id, exc)
            a.done = True
            await asyncio.sleep(0.2)
            a.wake.set()
            return False
        await self.ctx.complete(job, outputs, time.monotonic() - a.submitted_mono)
        return True

    async def _failed(self, a: Active, failure: ComfyExecutionFailed) -> bool:
        if failure.is_oom and a.oom_retries < OOM_RETRIES and a.job.attempts < self.ctx.settings.max_attempts:
            a.oom_retries += 1
            logger.warning("job %s ran out of GPU memory; retrying once", a.job.id)
            return await self._resubmit(a, "the GPU ran out of memory")
        code = "comfy_out_of_memory" if failure.is_oom else "comfy_execution_error"
        await self.ctx.fail(
            a.job.id, code, str(failure), node_id=failure.node_id, node_type=failure.node_type
        )
        return True

    async def _fetch_outputs(self, job: Job, entry: dict[str, Any]) -> list[RenderOutput]:
        """The images of the SaveImage nodes the job keeps (its version's results and passes)."""
        outputs = []
        for node_id in (await self.ctx.outputs(job)).nodes:
            images = (entry.get("outputs", {}).get(node_id) or {}).get("images", [])
            for index, ref in enumerate(images):
                kind = ref.get("type", "output")
                png = await self.client.view(ref["filename"], ref.get("subfolder", ""), kind)
                outputs.append(RenderOutput(png, index, node_id))
        return outputs


def _queue_order(a: Active) -> tuple[bool, datetime, str]:
    """Where ComfyUI had the job: the one that was running (it showed progress) first, then the queue
    in submission order (never submitted: last)."""
    ran = a.started or a.progress_recorded[1] > 0 or a.job.progress_max > 0
    return (not ran, a.job.submitted_at or datetime.max.replace(tzinfo=UTC), a.job.id)
