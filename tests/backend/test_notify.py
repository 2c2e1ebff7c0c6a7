"""Wake-ups between processes (backend.notify) on SQLite and PostgreSQL: sent at commit only, to every
listener of the database, and enough on their own to run a job end to end with the polls all but off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend import claims, job_queue, notify
from backend.auth import hash_token
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.models import Designer, Job
from backend.notify import Notifier
from tests.factories import job_body
from tests.support.backend import Stack, start_stack
from tests.support.comfy import SubmittedPrompts, Workload
from tests.support.net import wait_until


class Heard:
    """What one Notifier's listeners received, per channel."""

    def __init__(self, notifier: Notifier) -> None:
        self.items: list[tuple[str, str]] = []
        self.arrived = asyncio.Event()
        for channel in (notify.JOBS, notify.EVENTS):
            notifier.add_listener(channel, lambda payload, c=channel: self._add(c, payload))

    def _add(self, channel: str, payload: str) -> None:
        self.items.append((channel, payload))
        self.arrived.set()

    async def wait_for(self, expected: set[tuple[str, str]], timeout_s: float = 5) -> None:
        async with asyncio.timeout(timeout_s):
            while not expected <= set(self.items):
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def two_processes(db_url: str) -> AsyncIterator[tuple[object, Heard, Heard]]:
    """Two engines, each with its Notifier, as two processes of one deployment have."""
    settings = Settings(_env_file=None, database_url=db_url)  # type: ignore[call-arg]
    writer_engine, other_engine = make_engine(settings), make_engine(settings)
    writer, other = Notifier(writer_engine), Notifier(other_engine)
    heard = Heard(writer), Heard(other)
    await writer.start()
    await other.start()
    await asyncio.wait_for(asyncio.gather(writer.connected.wait(), other.connected.wait()), 10)
    maker = make_sessionmaker(writer_engine)
    async with maker() as s, s.begin():
        s.add(Designer(id="d1", name="alice", token_hash=hash_token("t")))
    yield maker, *heard
    await writer.close()
    await other.close()
    await writer_engine.dispose()
    await other_engine.dispose()


def new_job(kind: str = "sketch") -> Job:
    return Job(designer_id="d1", kind=kind, style="x", lora_name="", params={}, params_hash="h", seed=1)


async def test_a_committed_job_wakes_every_listener_and_a_rolled_back_one_wakes_none(two_processes) -> None:
    maker, own, other = two_processes
    async with maker() as s:
        async with s.begin():
            job = await job_queue.enqueue(s, new_job())
            assert job is not None
            await asyncio.sleep(0.2)
            assert own.items == other.items == []  # nothing before the commit
        job_id = job.id
        expected = {(notify.JOBS, "sketch"), (notify.EVENTS, job_id)}
        await own.wait_for(expected)  # the writer's own process, directly
        await other.wait_for(expected)  # another process: NOTIFY or a datagram
        own.items.clear()
        other.items.clear()
        doomed = new_job("text")
        with contextlib.suppress(LookupError):
            async with s.begin():
                assert await job_queue.enqueue(s, doomed) is not None
                raise LookupError("roll it back")
        async with s.begin():  # the next commit carries nothing of the rolled-back one
            job_queue.add_event(s, job_id, "note")
        await other.wait_for({(notify.EVENTS, job_id)})
        await asyncio.sleep(0.2)
        # (PostgreSQL echoes a process's own NOTIFYs back to its listener, late: the first commit's may come.)
        assert set(own.items + other.items) <= expected


async def test_claims_and_requeues_are_heard(two_processes) -> None:
    maker, _, other = two_processes
    async with maker() as s, s.begin():
        job = await job_queue.enqueue(s, new_job("text"))
    assert job is not None
    async with maker() as s, s.begin():
        claimed = await claims.claim_next(s, worker_id="w", lanes=["text"], executor="comfyui", instance="a")
    assert claimed is not None and claimed.id == job.id
    other.items.clear()
    async with maker() as s, s.begin():
        assert await job_queue.release(s, job.id, "w", reason="test") is not None
    await other.wait_for({(notify.JOBS, "text"), (notify.EVENTS, job.id)})


async def test_a_killed_listener_s_socket_is_dropped_by_the_next_sender(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path}/n.db")  # type: ignore[call-arg]
    engine = make_engine(settings)
    writer = Notifier(engine)
    await writer.start()
    try:
        assert writer._folder is not None and writer._socket_path is not None
        ghost = writer._folder / "999999-dead"  # a socket file whose process is gone
        ghost_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ghost_socket.bind(str(ghost))
        ghost_socket.close()
        writer.committed({(notify.EVENTS, "j1")})
        assert not ghost.exists() and writer._socket_path.exists()
    finally:
        await writer.close()
        await engine.dispose()
    assert not writer._socket_path.exists()


def bound_s(workload: Workload) -> float:
    """How long the job may take from POST to its final event: 30 s, or a render on a slow ComfyUI."""
    return max(30.0, workload.render_s)


@pytest.fixture
def quiet_stack(db_url: str, tmp_path: Path, comfyui_url: str, workload: Workload):
    """A stack whose dispatcher and event streams poll twice as rarely as the job may take (a minute
    on a fast ComfyUI): only notifications move a job within the bound."""
    poll_s = 2 * bound_s(workload)
    with start_stack(db_url, tmp_path, comfyui_url, dispatcher_poll_s=poll_s, event_poll_s=poll_s) as stack:
        yield stack


@pytest.mark.comfyui
def test_notifications_alone_carry_a_job_from_post_to_its_final_event(
    quiet_stack: Stack, workload: Workload, submitted_prompts: SubmittedPrompts
) -> None:
    bound = bound_s(workload)
    dispatcher = quiet_stack.dispatcher_process().start()
    try:
        with quiet_stack.client() as c:
            wait_until(lambda: "started with" in dispatcher.log(), 30, what="the dispatcher to start")
            time.sleep(0.5)  # its first look found nothing; its next poll is two bounds away
            started = time.monotonic()
            job = c.post("/api/jobs", json=job_body(**workload.job())).json()
            submitted_prompts.add(job["id"])  # a job's id is its prompt id
            types = []
            with c.stream("GET", f"/api/jobs/{job['id']}/events", timeout=bound) as r:
                for line in r.iter_lines():
                    if time.monotonic() - started > bound:
                        break
                    if line.startswith("data: "):
                        types.append(json.loads(line[6:])["type"])
            elapsed = time.monotonic() - started
    finally:
        dispatcher.terminate()
    assert types[0] == "queued" and types[-1] == "succeeded", types
    assert {"claimed", "started", "progress"} <= set(types)
    # A poll (twice the bound) would have shown: the claim and every live event came by notification.
    assert elapsed < bound, (elapsed, dispatcher.log())


def test_sqlite_sockets_live_beside_the_database_unless_the_path_is_too_long(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="n-"))  # systemd units' /tmp is private: beside the file it is
    try:
        engine = make_engine(Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{short}/s.db"))  # type: ignore[call-arg]
        assert notify._sqlite_folder(engine) == short.resolve() / ".s.db.notify"
        deep = tmp_path / ("x" * 90) / "studio.db"
        engine = make_engine(Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{deep}"))  # type: ignore[call-arg]
        folder = notify._sqlite_folder(engine)
        assert folder is not None and folder.parent == Path(tempfile.gettempdir())
        memory = make_engine(Settings(_env_file=None, database_url="sqlite+aiosqlite://"))  # type: ignore[call-arg]
        assert notify._sqlite_folder(memory) is None
    finally:
        shutil.rmtree(short)
