"""The SageMaker adapter app: `GET /ping` and `POST /invocations` in front of one local ComfyUI.

/ping is 200 only when ComfyUI answers, the warm-up render (1 step, 64x64, the checkpoint loaded) has
finished and no SIGTERM came; otherwise 503 with the reason. /invocations runs one job at a time (a lock,
although SageMaker async sends one per instance) through `renderer.Renderer`; every failure is a non-2xx
with the error shape of `errors.py`. `drain()` is what SIGTERM triggers (see `server.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contract import graphs
from contract.comfy_client import ComfyClient, ComfyError
from mlserver.sagemaker.errors import AdapterError, Draining
from mlserver.sagemaker.payload import InvocationRequest, parse_request
from mlserver.sagemaker.renderer import Renderer
from mlserver.sagemaker.settings import AdapterSettings

logger = logging.getLogger(__name__)

PING_TIMEOUT_S = 1.0  # /system_stats of the local ComfyUI, per idle /ping (SageMaker allows 2 s in all)
WARMUP_RETRY_S = 2.0  # between warm-up attempts while ComfyUI is not up (or refuses)
WARMUP_TIMEOUT_S = 600.0  # the first checkpoint load from a cold volume
WARMUP_SIZE_PX = 64
INTERRUPT_RESERVE_S = 5.0  # of the drain grace, kept for interrupting a job that would not finish


def warmup_graph(checkpoint: str = "") -> graphs.Graph:
    """The contract's warm-up graph at this adapter's size (empty `checkpoint`: txt2img.json's)."""
    return graphs.warmup_graph(graphs.WORKFLOWS_DIR, checkpoint=checkpoint, size_px=WARMUP_SIZE_PX)


class Adapter:
    """The state behind the routes: readiness, the one-job lock, the renderer, the drain."""

    def __init__(self, settings: AdapterSettings) -> None:
        self.settings = settings
        self.renderer = Renderer(settings.comfy_url)
        self.lock = asyncio.Lock()
        self.idle = asyncio.Event()
        self.idle.set()
        self.is_warm = False
        self.is_draining = False
        self.warmup_problem = ""
        self._probe: ComfyClient | None = None
        self._warmup_task: asyncio.Task[None] | None = None

    @property
    def probe(self) -> ComfyClient:
        if self._probe is None:
            self._probe = ComfyClient(
                self.settings.comfy_url, f"{self.renderer.client_id}-probe", PING_TIMEOUT_S
            )
        return self._probe

    async def start(self) -> None:
        self._warmup_task = asyncio.create_task(self.warm_up(), name="warm-up")

    async def stop(self) -> None:
        if self._warmup_task is not None:
            self._warmup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmup_task
        if self._probe is not None:
            await self._probe.close()

    async def comfy_version(self) -> str | None:
        """ComfyUI's version if it answers now, else None."""
        try:
            stats = await self.probe.system_stats()
        except (ComfyError, httpx.HTTPError, ValueError, KeyError) as exc:
            logger.debug("ComfyUI not up: %s", exc)
            return None
        return str(stats.get("system", {}).get("comfyui_version", ""))

    async def warm_up(self) -> None:
        """Retry until ComfyUI answers and (with WARMUP on) a tiny render has loaded the checkpoint."""
        while True:
            version = await self.comfy_version()
            if version is not None:
                self.renderer.comfyui_version = version
                if not self.settings.warmup:
                    break
                try:
                    await self._warmup_render()
                    break
                except AdapterError as exc:
                    self.warmup_problem = exc.message
                    logger.warning("warm-up failed, retrying: %s", exc.message)
                except Exception as exc:
                    self.warmup_problem = f"{type(exc).__name__}: {exc}"
                    logger.exception("warm-up failed unexpectedly, retrying")
            await asyncio.sleep(WARMUP_RETRY_S)
        self.is_warm, self.warmup_problem = True, ""
        logger.info(
            "ready", extra={"action": "adapter_ready", "comfyui_version": self.renderer.comfyui_version}
        )

    async def _warmup_render(self) -> None:
        request = InvocationRequest(
            job_id=f"warmup-{uuid.uuid4().hex}", graph=warmup_graph(self.settings.warmup_checkpoint)
        )
        started = time.monotonic()
        async with self._job():
            await self.renderer.render(request, WARMUP_TIMEOUT_S, require_images=False)
        logger.info("warm-up render took %.1f s", time.monotonic() - started)

    async def ping(self) -> tuple[int, dict[str, Any]]:
        if self.is_draining:
            return 503, {"status": "unavailable", "reason": "draining"}
        if self.is_warm and not self.idle.is_set():
            # A job is running: its own requests watch ComfyUI, and a busy ComfyUI may answer slowly.
            return 200, {"status": "ok", "comfyui_version": self.renderer.comfyui_version, "busy": True}
        version = await self.comfy_version()
        if version is None:
            return 503, {"status": "unavailable", "reason": "ComfyUI not up"}
        if not self.is_warm:
            body = {"status": "unavailable", "reason": "warming up"}
            return 503, {**body, "detail": self.warmup_problem} if self.warmup_problem else body
        return 200, {"status": "ok", "comfyui_version": version}

    async def invoke(self, body: bytes) -> dict[str, Any]:
        if self.is_draining:
            raise Draining()
        request = parse_request(body)
        async with self._job():
            if self.is_draining:
                raise Draining()
            started = time.monotonic()
            result = await self.renderer.render(request, self.settings.invocation_timeout_s)
        logger.info(
            "job rendered in %.1f s",
            time.monotonic() - started,
            extra={"action": "job_rendered", "job_id": request.job_id, "images": len(result["images"])},
        )
        return result

    @contextlib.asynccontextmanager
    async def _job(self) -> AsyncIterator[None]:
        """One render at a time; `idle` is set whenever none is running."""
        async with self.lock:
            self.idle.clear()
            try:
                yield
            finally:
                self.idle.set()

    async def _wait_idle(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.idle.wait()
        return self.idle.is_set()

    async def drain(self) -> None:
        """Take no more work; let the current job finish, interrupting it if the grace would run out."""
        grace_s = self.settings.drain_grace_s
        self.is_draining = True
        logger.info("draining", extra={"action": "adapter_draining", "grace_s": grace_s})
        if self._warmup_task is not None and not self._warmup_task.done():
            self._warmup_task.cancel()  # a warm-up is nobody's job
        reserve_s = min(INTERRUPT_RESERVE_S, grace_s / 2)
        if not await self._wait_idle(grace_s - reserve_s):
            logger.warning("the job did not finish within the grace; interrupting it")
            await self.renderer.interrupt_current("draining")
            await self._wait_idle(reserve_s)
        logger.info("drained", extra={"action": "adapter_drained"})


def create_app(settings: AdapterSettings, adapter: Adapter | None = None) -> FastAPI:
    adapter = adapter or Adapter(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await adapter.start()
        try:
            yield
        finally:
            await adapter.stop()

    app = FastAPI(title="Interior Studio SageMaker adapter", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.adapter = adapter

    @app.get("/ping")
    async def ping() -> JSONResponse:
        status, body = await adapter.ping()
        return JSONResponse(body, status_code=status)

    @app.post("/invocations")
    async def invocations(request: Request) -> JSONResponse:
        try:
            result = await adapter.invoke(await request.body())
        except AdapterError as exc:
            logger.warning("invocation failed: %s: %s", exc.code, exc.message, extra={"action": "job_failed"})
            return exc.response()
        except Exception:
            logger.exception("invocation failed unexpectedly")
            return AdapterError("the adapter failed unexpectedly").response()
        return JSONResponse(result)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code
        )

    return app
