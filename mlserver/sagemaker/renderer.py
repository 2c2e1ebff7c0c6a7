"""One job through the local ComfyUI: upload its images, submit under the job's id, follow it, collect the
SaveImage outputs. Reuses `contract.comfy_client` for the ComfyUI protocol.

Idempotent by `prompt_id` = job id: a job whose history entry already says success is answered from it
(no second run); one still queued or running in ComfyUI is followed, not resubmitted. Completion is the
`executing {node: null}` marker of /ws, with /history + /queue polled as the fallback (a prompt submitted
by an earlier adapter process sends its events to a socket that no longer exists).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from contract.comfy_client import (
    ComfyClient,
    ComfyRejected,
    ComfyUnreachable,
    execution_failure,
    was_interrupted,
)
from mlserver.sagemaker.errors import (
    ComfyUnavailable,
    Draining,
    ExecutionFailed,
    GraphRejected,
    Interrupted,
    InvocationTimeout,
    NoImages,
    OutOfMemory,
)
from mlserver.sagemaker.payload import InputImage, InvocationRequest, encode_png

logger = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 30.0  # one ComfyUI request; /view of a large PNG included
POLL_INTERVAL_S = 0.5  # /history + /queue checks while no final /ws message came
WS_READY_TIMEOUT_S = 3.0  # the socket's first frame, before submitting
INTERRUPT_SETTLE_S = 10.0  # after an interrupt, how long to wait for the prompt to leave ComfyUI's queue
INTERRUPT_POLL_S = 0.1

Events = asyncio.Queue[dict[str, Any]]


class PromptLost(Exception):
    """The prompt is neither in ComfyUI's queue nor in its history (deleted, or ComfyUI restarted)."""


def is_final(message: dict[str, Any], prompt_id: str) -> bool:
    data = message.get("data") or {}
    if data.get("prompt_id") != prompt_id:
        return False
    kind = message.get("type")
    return (kind == "executing" and data.get("node") is None) or kind in (
        "execution_error",
        "execution_interrupted",
    )


def saved_images(graph: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The output files of every SaveImage node, in the graph's node order, each in batch order, each
    with its `node_id`."""
    outputs = entry.get("outputs") or {}
    images: list[dict[str, Any]] = []
    for node_id, node in graph.items():
        if isinstance(node, dict) and node.get("class_type") == "SaveImage":
            node_images = (outputs.get(node_id) or {}).get("images") or []
            images.extend(
                {**i, "node_id": str(node_id)} for i in node_images if i.get("type", "output") == "output"
            )
    return images


def timings(entry: dict[str, Any], submitted_at: float | None) -> dict[str, float]:
    """queue_s: our submit → execution_start (0 when this call did not submit); render_s: start → end."""
    stamps: dict[str, float] = {}
    for event, data in (entry.get("status") or {}).get("messages") or []:
        if isinstance(data, dict) and isinstance(data.get("timestamp"), int | float):
            stamps[event] = data["timestamp"] / 1000
    start = stamps.get("execution_start")
    end = next((stamps[e] for e in ("execution_success", "execution_error") if e in stamps), None)
    render_s = max(0.0, end - start) if start is not None and end is not None else 0.0
    queue_s = max(0.0, start - submitted_at) if start is not None and submitted_at is not None else 0.0
    return {"queue_s": round(queue_s, 3), "render_s": round(render_s, 3)}


class Renderer:
    """Runs invocations against the ComfyUI at `comfy_url`, one socket (and client id) per invocation."""

    def __init__(self, comfy_url: str) -> None:
        self.comfy_url = comfy_url.rstrip("/")
        self.client_id = f"sagemaker-{uuid.uuid4().hex}"
        self._sequence = itertools.count(1)
        self.current_prompt_id: str | None = None
        self.interrupt_reason: str | None = None
        self.comfyui_version = ""

    def client(self) -> ComfyClient:
        # A fresh sid per invocation: ComfyUI drops a sid when an older socket of it closes (reference §2.1).
        return ComfyClient(self.comfy_url, f"{self.client_id}-{next(self._sequence)}", HTTP_TIMEOUT_S)

    async def render(
        self, request: InvocationRequest, timeout_s: float, *, require_images: bool = True
    ) -> dict[str, Any]:
        """The success body of the contract, or an AdapterError. `require_images`: off for the warm-up."""
        client = self.client()
        self.current_prompt_id, self.interrupt_reason = request.job_id, None
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                return await self._render(client, request, require_images)
        except TimeoutError:
            if not deadline.expired():
                raise
            self.interrupt_reason = "timeout"
            await self.interrupt(client, request.job_id)
            raise InvocationTimeout(
                f"the render took longer than {timeout_s:g} s; its prompt was interrupted",
                job_id=request.job_id,
            ) from None
        except ComfyUnreachable as exc:
            raise ComfyUnavailable(f"the local ComfyUI did not answer: {exc}") from exc
        finally:
            self.current_prompt_id = None
            await client.close()

    async def _render(
        self, client: ComfyClient, request: InvocationRequest, require_images: bool
    ) -> dict[str, Any]:
        job_id = request.job_id
        entry = await self._rendered(client, job_id)
        if entry is not None:
            return await self._result(client, request, entry, None, require_images)
        submitted_at: float | None = None
        async with event_stream(client) as events:
            if job_id in await client.queue():
                logger.info("job already in ComfyUI", extra={"action": "job_followed", "job_id": job_id})
            elif (entry := await self._rendered(client, job_id)) is not None:
                return await self._result(client, request, entry, None, require_images)  # finished meanwhile
            else:
                graph = await self._upload_images(client, request)
                submitted_at = time.time()
                await self._submit(client, graph, request)
            try:
                entry = await follow(client, job_id, events)
            except PromptLost:
                if self.interrupt_reason == "draining":
                    raise Draining("the container is shutting down; the job was taken off ComfyUI") from None
                raise ComfyUnavailable("ComfyUI lost the prompt (restarted or cleared)") from None
        return await self._result(client, request, entry, submitted_at, require_images)

    async def _rendered(self, client: ComfyClient, job_id: str) -> dict[str, Any] | None:
        """The job's history entry if it succeeded; a failed one is deleted (or following the new run would
        find the old outcome)."""
        entry = await client.history(job_id)
        if entry is None:
            return None
        if (entry.get("status") or {}).get("status_str") == "success":
            logger.info("job already rendered", extra={"action": "job_replayed", "job_id": job_id})
            return entry
        await forget(client, job_id)
        return None

    async def _upload_images(self, client: ComfyClient, request: InvocationRequest) -> dict[str, Any]:
        """The graph to submit: the payload's, with LoadImage re-pointed if ComfyUI stored another name."""
        graph = copy.deepcopy(request.graph)
        for image in request.input_images:
            await self._upload_image(client, image, graph)
        return graph

    async def _upload_image(self, client: ComfyClient, image: InputImage, graph: dict[str, Any]) -> None:
        files = {"image": (image.filename, image.png(), "image/png")}
        try:
            r = await client.http.post(
                "/upload/image",
                files=files,
                data={"subfolder": image.subfolder, "type": "input", "overwrite": "true"},
            )
        except httpx.HTTPError as exc:
            raise ComfyUnreachable(f"/upload/image: {type(exc).__name__}: {exc}") from exc
        if r.status_code != 200:
            raise ComfyUnavailable(f"ComfyUI refused the image upload: HTTP {r.status_code}")
        body = r.json()
        stored = f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else str(body["name"])
        if stored != image.path:
            # Not overwritten (a ComfyUI that ignores `overwrite`): it kept both, "<stem> (n).png".
            logger.info("image stored as %s instead of %s", stored, image.path)
            for node in graph.values():
                if node["class_type"] == "LoadImage" and node.get("inputs", {}).get("image") == image.path:
                    node["inputs"]["image"] = stored

    async def _submit(self, client: ComfyClient, graph: dict[str, Any], request: InvocationRequest) -> None:
        try:
            await client.submit(graph, request.job_id, request.extra_data or None)
        except ComfyRejected as exc:
            raise GraphRejected(
                str(exc), node_errors=exc.body.get("node_errors") or {}, comfy_error=exc.body.get("error")
            ) from None
        logger.info("job submitted", extra={"action": "job_submitted", "job_id": request.job_id})

    async def _result(
        self,
        client: ComfyClient,
        request: InvocationRequest,
        entry: dict[str, Any],
        submitted_at: float | None,
        require_images: bool,
    ) -> dict[str, Any]:
        self._raise_failure(entry)
        queued = entry.get("prompt") or []
        graph = queued[2] if len(queued) > 2 and isinstance(queued[2], dict) else request.graph
        files = saved_images(graph, entry)
        if not files and require_images:
            raise NoImages(job_id=request.job_id)
        images = []
        for index, f in enumerate(files):
            data = await client.view(f["filename"], f.get("subfolder", ""), f.get("type", "output"))
            images.append(
                {
                    "index": index,
                    "node_id": f["node_id"],
                    "filename": f["filename"],
                    "subfolder": f.get("subfolder", ""),
                    "png_base64": encode_png(data),
                }
            )
        if not self.comfyui_version:
            self.comfyui_version = str((await client.system_stats())["system"].get("comfyui_version", ""))
        return {
            "job_id": request.job_id,
            "prompt_id": request.job_id,
            "images": images,
            "timings": timings(entry, submitted_at),
            "comfyui_version": self.comfyui_version,
        }

    def _raise_failure(self, entry: dict[str, Any]) -> None:
        failure = execution_failure(entry)
        if failure is not None:
            error = OutOfMemory if failure.is_oom else ExecutionFailed
            raise error(
                str(failure),
                node_id=failure.node_id,
                node_type=failure.node_type,
                exception_type=failure.exception_type,
                exception_message=failure.exception_message,
            )
        if was_interrupted(entry):
            if self.interrupt_reason == "draining":
                raise Draining("the container is shutting down; the render was interrupted")
            raise Interrupted()
        status = (entry.get("status") or {}).get("status_str")
        if status != "success":
            raise ExecutionFailed(f"ComfyUI finished the prompt with status {status!r}")

    async def interrupt(self, client: ComfyClient, prompt_id: str) -> None:
        """Stop the prompt (running or pending) and wait a little for ComfyUI to let go of it."""
        try:
            await client.interrupt(prompt_id)
            await client.delete_pending([prompt_id])
            for _ in range(int(INTERRUPT_SETTLE_S / INTERRUPT_POLL_S)):
                if prompt_id not in await client.queue():
                    return
                await asyncio.sleep(INTERRUPT_POLL_S)
            logger.warning(
                "%s still in ComfyUI's queue %g s after the interrupt", prompt_id, INTERRUPT_SETTLE_S
            )
        except ComfyUnreachable as exc:
            logger.warning("could not confirm the interrupt of %s: %s", prompt_id, exc)

    async def interrupt_current(self, reason: str) -> None:
        """Interrupt the invocation in progress, if any (the drain on SIGTERM)."""
        prompt_id = self.current_prompt_id
        if prompt_id is None:
            return
        self.interrupt_reason = reason
        client = self.client()
        try:
            await client.interrupt(prompt_id)
            await client.delete_pending([prompt_id])
        except ComfyUnreachable as exc:
            logger.warning("could not interrupt %s: %s", prompt_id, exc)
        finally:
            await client.close()


async def forget(client: ComfyClient, prompt_id: str) -> None:
    """Delete the prompt's history entry (POST /history answers 200 with an empty body)."""
    try:
        r = await client.http.post("/history", json={"delete": [prompt_id]})
    except httpx.HTTPError as exc:
        raise ComfyUnreachable(f"POST /history: {type(exc).__name__}: {exc}") from exc
    if r.status_code != 200:
        raise ComfyUnreachable(f"POST /history: HTTP {r.status_code}")


@contextlib.asynccontextmanager
async def event_stream(client: ComfyClient) -> AsyncIterator[Events]:
    """The client's /ws messages in a queue; returns once the socket is registered (its first frame)."""
    events: Events = asyncio.Queue()
    ready = asyncio.Event()

    async def pump() -> None:
        try:
            async for message in client.messages():
                events.put_nowait(message)
                ready.set()
        except ComfyUnreachable as exc:
            logger.warning("no /ws events, polling instead: %s", exc)
        finally:
            ready.set()

    task = asyncio.create_task(pump())
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WS_READY_TIMEOUT_S):
                await ready.wait()
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def follow(client: ComfyClient, prompt_id: str, events: Events) -> dict[str, Any]:
    """The prompt's history entry once it has finished; PromptLost if ComfyUI no longer knows it."""
    next_poll = time.monotonic() + POLL_INTERVAL_S
    while True:
        message: dict[str, Any] | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_INTERVAL_S):
                message = await events.get()
        if message is not None and not is_final(message, prompt_id) and time.monotonic() < next_poll:
            if message.get("type") == "progress":
                logger.debug("progress %s", message.get("data"))
            continue
        next_poll = time.monotonic() + POLL_INTERVAL_S
        entry = await client.history(prompt_id)
        if entry is not None:
            return entry
        if prompt_id not in await client.queue():
            entry = await client.history(prompt_id)  # it may have finished between the two requests
            if entry is not None:
                return entry
            raise PromptLost(prompt_id)
