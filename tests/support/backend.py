"""The backend on loopback for tests: the API served by uvicorn in a thread, dispatchers in threads or as
real processes (`tests/support/harness.py`) that tests can SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.dispatcher import Dispatcher
from backend.main import create_app
from backend.storage import make_storage
from backend.users import ensure_designer
from contract.styles import load_manifest
from tests.support.harness import DispatcherProcess
from tests.support.net import answers, wait_until

DEMO_TOKEN = "test-token-alice"
OTHER_TOKEN = "test-token-bob"


def make_settings(db_url: str, data_dir: Path, comfy_url: str | None, **overrides: Any) -> Settings:
    """Settings for a test stack: fast timings, local storage under `data_dir`, no .env."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "data_dir": data_dir,
        "comfy_ui_address": comfy_url.removeprefix("http://") if comfy_url else "",
        "demo_designer_token": "",
        "dispatcher_poll_s": 0.01,
        "event_poll_s": 0.01,
        "heartbeat_interval_s": 0.5,
        "stall_after_s": 3.0,
        "progress_min_interval_s": 0.0,
        "comfy_retry_max_s": 1.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class ApiServer:
    settings: Settings
    port: int = 0  # 0: the kernel picks one when the server starts, held from that moment on
    app: FastAPI | None = None  # create_app(settings), unless a test adds a route of its own to one
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    failure: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # The socket is bound here and handed to uvicorn: a port picked earlier and closed again could be
        # taken meanwhile (by any outgoing connection on a loaded machine), and uvicorn would then exit
        # in its thread while the test waited for /healthz.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart on the same port
        sock.bind(("127.0.0.1", self.port))
        sock.listen(2048)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app or create_app(self.settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        server = self.server = uvicorn.Server(config)
        self.failure = None

        def serve() -> None:
            try:
                server.run(sockets=[sock])
                if not server.started:
                    self.failure = RuntimeError("uvicorn exited at start-up (see its log above)")
            except BaseException as exc:
                self.failure = exc
                raise
            finally:
                sock.close()

        self.thread = threading.Thread(target=serve, name=f"api:{self.port}", daemon=True)
        self.thread.start()
        wait_until(
            lambda: self.failure is not None or answers(f"{self.url}/healthz"),
            30,
            0.05,
            what=f"{self.url}/healthz",
        )
        if self.failure is not None:
            raise RuntimeError(f"the API on port {self.port} did not start: {self.failure!r}")

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)


class DispatcherThread:
    """A real Dispatcher in a background thread with its own event loop."""

    def __init__(self, settings: Settings, worker_id: str | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.loop = asyncio.new_event_loop()
        self.dispatcher: Dispatcher | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="dispatcher", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._run())
        except BaseException as exc:
            self.error = exc
        finally:
            self.loop.close()

    async def _run(self) -> None:
        engine = make_engine(self.settings)
        try:
            self.dispatcher = Dispatcher(
                self.settings,
                make_sessionmaker(engine),
                make_storage(self.settings),
                load_manifest(self.settings.style_manifest),
                worker_id=self.worker_id,
            )
            await self.dispatcher.run()
        finally:
            await engine.dispose()

    def start(self) -> DispatcherThread:
        self.thread.start()
        wait_until(lambda: self.dispatcher is not None or self.error is not None, 10, what="dispatcher start")
        return self

    def stop(self) -> None:
        if self.dispatcher is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.dispatcher.stop)
        self.thread.join(timeout=40)
        if self.error is not None:
            raise self.error


def drain(settings: Settings, worker_id: str | None = None, timeout_s: float = 60) -> None:
    """Run one dispatcher until nothing is queued or running (arq's burst mode)."""

    async def _run() -> None:
        engine = make_engine(settings)
        try:
            d = Dispatcher(
                settings,
                make_sessionmaker(engine),
                make_storage(settings),
                load_manifest(settings.style_manifest),
                worker_id=worker_id,
            )
            await asyncio.wait_for(d.run(until_idle=True), timeout_s)
        finally:
            await engine.dispose()

    asyncio.run(_run())


async def _designers(settings: Settings) -> None:
    await ensure_designer(settings, "alice", DEMO_TOKEN)
    await ensure_designer(settings, "bob", OTHER_TOKEN)


def create_designers(settings: Settings) -> None:
    asyncio.run(_designers(settings))


@dataclass
class Stack:
    """A backend (API in a thread) on a real database, with two designers, in front of ComfyUI."""

    settings: Settings
    api: ApiServer
    tmp_path: Path

    @property
    def url(self) -> str:
        return self.api.url

    def client(self, token: str = DEMO_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def drain(self, timeout_s: float = 60) -> None:
        drain(self.settings, timeout_s=timeout_s)

    def dispatcher_thread(self, **overrides: Any) -> DispatcherThread:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return DispatcherThread(settings)

    def dispatcher_process(
        self, name: str = "dispatcher", extra_env: dict[str, str] | None = None, **overrides: Any
    ) -> DispatcherProcess:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return DispatcherProcess.of(settings, self.tmp_path / f"{name}.log", extra_env)


@contextlib.contextmanager
def start_stack(db_url: str, tmp_path: Path, comfy_url: str | None, **overrides: Any) -> Iterator[Stack]:
    """The API (in a thread) and two designers on `db_url` until the block ends; `overrides` are settings."""
    data_dir = overrides.pop("data_dir", tmp_path / "data")
    settings = make_settings(db_url, data_dir, comfy_url, **overrides)
    create_designers(settings)
    api = ApiServer(settings)
    api.start()
    try:
        yield Stack(settings, api, tmp_path)
    finally:
        api.stop()


@pytest.fixture
def api_stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    """API + designers on SQLite and PostgreSQL in turn, no ComfyUI (jobs stay queued)."""
    with start_stack(db_url, tmp_path, None) as stack:
        yield stack


@pytest.fixture
def stack(db_url: str, tmp_path: Path, comfyui_url: str) -> Iterator[Stack]:
    """API + designers on SQLite and PostgreSQL in turn, pointed at the session's ComfyUI."""
    with start_stack(db_url, tmp_path, comfyui_url) as stack:
        yield stack
