"""Live previews from ComfyUI's binary frames to the job's event stream, on SQLite and PostgreSQL: relayed
by a dispatcher process through `job_previews` and a notification, newest only and throttled, never
stored with the results, gone when the job ends."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import event, func, select

from backend import previews
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.executors.previews import PreviewRelay
from backend.models import JobEvent, JobPreview
from contract.comfy_client import Preview
from tests.factories import job_body
from tests.support.api import job_status
from tests.support.backend import Stack, start_stack
from tests.support.comfy import NEEDS_EMULATOR, REAL_COMFYUI, EmulatorProcess, start_emulator

STEPS = 12
QUIET_POLL_S = 30.0  # streams and dispatchers poll this rarely: previews must come by notification


@pytest.fixture
def previewing(tmp_path: Path) -> Iterator[EmulatorProcess]:
    if REAL_COMFYUI:
        pytest.skip(NEEDS_EMULATOR)
    # two 256² images at 100 ms a 512² step: 50 ms a step, 12 steps
    emu = start_emulator(tmp_path / "comfyui", step_ms=100, extra_args=["--preview-method", "auto"])
    try:
        yield emu
    finally:
        emu.kill()


@pytest.fixture
def quiet_stack(db_url: str, tmp_path: Path, previewing: EmulatorProcess) -> Iterator[Stack]:
    with start_stack(db_url, tmp_path, previewing.url, event_poll_s=QUIET_POLL_S) as stack:
        yield stack


def read_stream(stack: Stack, job_id: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    messages = []
    with stack.client() as c, c.stream("GET", f"/api/jobs/{job_id}/events", timeout=timeout_s) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                messages.append({**json.loads(line[6:]), "received_at": time.monotonic()})
    return messages


def decode(data_url: str) -> Image.Image:
    head, _, body = data_url.partition(",")
    assert head == "data:image/jpeg;base64"
    img = Image.open(io.BytesIO(base64.b64decode(body)))
    img.load()
    return img


async def _stored(settings: Settings, job_id: str) -> tuple[int, int]:
    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as s:
            rows = await s.scalar(select(func.count()).select_from(JobPreview))
            kinds = await s.scalar(
                select(func.count()).where(JobEvent.job_id == job_id, JobEvent.type == "preview")
            )
            return int(rows or 0), int(kinds or 0)
    finally:
        await engine.dispose()


def test_previews_reach_the_stream_newest_only_and_leave_with_the_job(quiet_stack: Stack) -> None:
    dispatcher = quiet_stack.dispatcher_process(dispatcher_poll_s=0.05).start()
    try:
        with quiet_stack.client() as c:
            body = job_body(width=256, height=256, steps=STEPS, num_images=2)
            job = c.post("/api/jobs", json=body).json()
        messages = read_stream(quiet_stack, job["id"])
    finally:
        dispatcher.terminate()
    types = [m["type"] for m in messages]
    assert types[-1] == "succeeded", (types, dispatcher.log())
    shown = [m for m in messages if m["type"] == "preview"]
    assert len(shown) >= 2, types
    assert all("id" not in m for m in shown)  # not stored events: no id, never replayed
    steps = [m["data"]["step"] for m in shown]
    assert steps == sorted(steps) and {m["data"]["steps"] for m in shown} == {STEPS}
    images = [decode(m["data"]["image"]) for m in shown]
    assert all(img.format == "JPEG" and max(img.size) == 512 for img in images)
    assert len({img.tobytes() for img in images}) == len(images)  # the picture changes as it samples
    assert len(shown) < STEPS  # throttled (12 steps of 50 ms: not all pass); the rate: the relay's test
    assert types.index("preview") < types.index("succeeded")
    with quiet_stack.client() as c:
        done = job_status(c, job["id"])
    assert len(done["images"]) == 2 and all(i["url"] for i in done["images"])
    rows, stored = asyncio.run(_stored(quiet_stack.settings, job["id"]))
    assert (rows, stored) == (0, 0)  # nothing of the previews is kept
    replay = read_stream(quiet_stack, job["id"])  # a late reader gets the stored story, no preview
    assert "preview" not in [m["type"] for m in replay]


async def _relay_case(settings: Settings, job_id: str) -> list[float]:
    """Frames offered every 10 ms for 1.2 s: the moments the relay writes the job's preview row."""
    engine = make_engine(settings)
    writes: list[float] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO JOB_PREVIEWS"):
            writes.append(time.monotonic())

    relay = PreviewRelay(make_sessionmaker(engine), lambda job, node, value, maximum: (value or 0, 100))
    try:
        started = time.monotonic()
        step = 0
        while time.monotonic() - started < 1.2:
            step += 1
            nodes = {"3": {"value": step, "max": 100}}
            relay.on_message({"type": "progress_state", "data": {"prompt_id": job_id, "nodes": nodes}})
            relay.on_preview(Preview(b"\xff\xd8frame", "image/jpeg", job_id, "3"))
            await asyncio.sleep(0.01)
        await relay.end(job_id)
        return writes
    finally:
        await engine.dispose()


def test_the_relay_writes_a_jobs_preview_at_most_every_quarter_second(
    api_stack: Stack,
) -> None:
    with api_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()  # no ComfyUI: it stays queued
    writes = asyncio.run(_relay_case(api_stack.settings, job["id"]))
    assert len(writes) >= 2, writes
    gaps = [b - a for a, b in itertools.pairwise(writes)]
    assert min(gaps) >= 0.25, gaps  # measured where the throttle is: never faster, however loaded
    assert len(writes) <= 1.2 / 0.25 + 1  # about 120 frames offered: at most 4 a second


async def _sweep_case(settings: Settings, job_id: str) -> tuple[int, int]:
    engine = make_engine(settings)
    try:
        sm = make_sessionmaker(engine)
        await previews.save(sm, job_id, 1, 4, "image/jpeg", b"\xff\xd8first")
        await previews.save(sm, job_id, 2, 4, "image/jpeg", b"\xff\xd8second")
        async with sm() as s:
            row = await s.get(JobPreview, job_id)
            assert row is not None and (row.seq, row.step, row.image) == (2, 2, b"\xff\xd8second")
        newest = await previews.latest(sm, [job_id], {job_id: 1})
        assert [(p.seq, p.step) for p in newest] == [(2, 2)]
        assert await previews.latest(sm, [job_id], {job_id: 2}) == []
        return await previews.sweep(sm), len(await previews.latest(sm, [job_id], {}))
    finally:
        await engine.dispose()


def test_one_row_per_job_overwritten_and_swept_once_the_job_is_not_running(api_stack: Stack) -> None:
    with api_stack.client() as c:
        job = c.post("/api/jobs", json=job_body()).json()  # no ComfyUI: it stays queued
    swept, left = asyncio.run(_sweep_case(api_stack.settings, job["id"]))
    assert (swept, left) == (1, 0)
