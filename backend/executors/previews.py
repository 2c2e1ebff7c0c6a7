"""The ComfyUI executor's live previews: which job a preview frame belongs to, and its throttled relay
to the API processes (`backend/previews.py` says how it travels and why).

A frame with metadata (event 4, what ComfyUI sends us since we announce `supports_preview_metadata`)
names its prompt, which is the job's id, and its node: the step it shows is that node's value in the
`progress_state` sent just before it. A frame without (event 1, an older server) is the prompt this
server is executing now. Per job the newest frame wins: the first is written at once, later ones at
most every PREVIEW_MIN_INTERVAL_S; a job's row goes when this executor stops following it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend import previews
from backend.db import SessionMaker
from contract.comfy_client import Preview

logger = logging.getLogger(__name__)

PREVIEW_MIN_INTERVAL_S = 0.25  # at most 4 previews a second per job reach the streams

Progress = Callable[[str, str | None, int | None, int | None], tuple[int, int] | None]


@dataclass
class _Job:
    newest: tuple[Preview, int, int] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class PreviewRelay:
    """One per ComfyUI executor. `progress(job_id, node, value, max)` answers the job's (step, steps)
    at that node value (None: not a job this executor follows)."""

    def __init__(self, sessionmaker: SessionMaker, progress: Progress) -> None:
        self.sessionmaker = sessionmaker
        self.progress = progress
        self.executing: str | None = None  # the prompt ComfyUI runs now (for frames without metadata)
        self._states: dict[str, dict[str, Any]] = {}  # prompt id → its latest progress_state nodes
        self._jobs: dict[str, _Job] = {}

    def on_message(self, msg: dict[str, Any]) -> None:
        """Follow the JSON messages: which prompt is executing, and each node's step."""
        kind, data = msg.get("type"), msg.get("data") or {}
        prompt_id = data.get("prompt_id")
        if prompt_id is None:
            return
        if kind == "progress_state":
            self._states[str(prompt_id)] = data.get("nodes") or {}
        elif kind in ("execution_start", "progress") or (kind == "executing" and data.get("node")):
            self.executing = str(prompt_id)
        elif kind == "executing" or kind in ("execution_error", "execution_interrupted"):
            self._states.pop(str(prompt_id), None)
            if self.executing == prompt_id:
                self.executing = None

    def on_preview(self, frame: Preview) -> None:
        job_id = frame.prompt_id or self.executing
        if job_id is None:
            return
        state = self._states.get(job_id, {}).get(frame.node_id or "") or {}
        value, maximum = state.get("value"), state.get("max")
        at = self.progress(
            job_id,
            frame.node_id,
            None if value is None else int(value),
            None if maximum is None else int(maximum),
        )
        if at is None:
            return
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = _Job()
            job.task = asyncio.create_task(self._write(job_id, job), name=f"previews {job_id}")
        job.newest = (frame, *at)
        job.wake.set()

    async def end(self, job_id: str) -> None:
        """The job is no longer followed here: stop relaying and delete its preview."""
        self._states.pop(job_id, None)
        job = self._jobs.pop(job_id, None)
        if job is not None and job.task is not None:
            job.ended.set()
            job.wake.set()
            with contextlib.suppress(Exception):
                await job.task
        try:
            await previews.clear(self.sessionmaker, job_id)
        except Exception as exc:  # the dispatcher's sweep deletes it later
            logger.warning("job %s: preview not cleared (%s)", job_id, exc)

    async def close(self) -> None:
        for job_id in list(self._jobs):
            await self.end(job_id)

    async def _write(self, job_id: str, job: _Job) -> None:
        while not job.ended.is_set():
            await job.wake.wait()
            job.wake.clear()
            if job.ended.is_set() or job.newest is None:
                continue
            (frame, step, steps), job.newest = job.newest, None
            try:
                await previews.save(self.sessionmaker, job_id, step, steps, frame.mime, frame.image)
            except Exception as exc:  # a lost preview is only a skipped frame
                logger.warning("job %s: preview not relayed (%s)", job_id, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.ended.wait(), PREVIEW_MIN_INTERVAL_S)
