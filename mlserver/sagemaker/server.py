"""Uvicorn for the adapter, with SageMaker's shutdown: on SIGTERM (or SIGINT) the adapter drains first —
/ping and new /invocations answer 503 `draining` while the current job finishes or is interrupted within
DRAIN_GRACE_S — and only then does uvicorn stop listening and exit (status 0). A second signal exits now."""

from __future__ import annotations

import asyncio
import logging
import socket
from types import FrameType

import uvicorn

from mlserver.sagemaker.adapter import Adapter, create_app
from mlserver.sagemaker.settings import AdapterSettings

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5.0  # uvicorn's wait for open responses once the drain is over


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, adapter: Adapter) -> None:
        super().__init__(config)
        self.adapter = adapter
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's: it would re-raise the signal after shutdown and the exit status would not be 0.
        if self._drain_requested or self._loop is None:
            logger.warning("second signal %d: exiting without waiting", sig)
            self.should_exit = self.force_exit = True
            return
        self._drain_requested = True
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit(), name="drain")

    async def _drain_then_exit(self) -> None:
        try:
            await self.adapter.drain()
        finally:
            self.should_exit = True


def serve(settings: AdapterSettings) -> None:
    adapter = Adapter(settings)
    config = uvicorn.Config(
        create_app(settings, adapter),
        host=settings.adapter_host,
        port=settings.adapter_port,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
    )
    DrainingServer(config, adapter).run()
