"""Live previews: the newest sampler image of each running job, from the dispatcher that follows it in
ComfyUI to the API processes that stream the job's events.

The channel is one `job_previews` row per job, overwritten, plus a notification:
- The dispatcher (`save`) UPSERTs the job's row (image, step, a sequence number) in a transaction that
  marks `notify.job_preview`: PostgreSQL sends NOTIFY at commit, SQLite a datagram after it. Only the
  job id travels in the notification: a 512 px JPEG (tens of KB) is far over NOTIFY's 8000-byte payload
  and the datagrams' 512 bytes, and a table read works the same on both databases and on many hosts.
- Each API process's PreviewHub, notified (or, as a fallback, every EVENT_POLL_S while a stream
  follows the job), reads the row once for all its streams of that job and hands each the newest
  preview: a slow stream skips previews, never queues them.
- Previews are never results and never history: they are not `job_events` rows (those are kept with
  the job), and the row goes when the job ends (`clear`, by the executor that followed it; `sweep`,
  by every dispatcher's periodic pass, for a follower that died; the job's deletion cascades).

The relay is throttled by the dispatcher (executors/previews.py): at most one write per job per
PREVIEW_MIN_INTERVAL_S, the first at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from backend import notify
from backend.db import SessionMaker, read_session
from backend.models import Job, JobPreview, JobStatus, utcnow

logger = logging.getLogger(__name__)

STALE_AFTER_S = 600.0  # a row of a running job not updated this long is left by a dead follower


@dataclass(frozen=True)
class Preview:
    job_id: str
    seq: int
    step: int
    steps: int
    mime: str
    image: bytes

    def as_message(self) -> dict[str, object]:
        """The stream's `preview` message: the image inline as a data URL (no id: never stored)."""
        data_url = f"data:{self.mime};base64,{base64.b64encode(self.image).decode()}"
        return {
            "type": "preview",
            "job_id": self.job_id,
            "data": {"step": self.step, "steps": self.steps, "image": data_url},
        }


async def save(
    sessionmaker: SessionMaker, job_id: str, step: int, steps: int, mime: str, image: bytes
) -> None:
    """Overwrite the job's preview and notify its streams (one transaction)."""
    values = {"job_id": job_id, "seq": 1, "step": step, "steps": steps, "mime": mime, "image": image}
    async with sessionmaker() as session, session.begin():
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(JobPreview).values(**values, updated_at=utcnow())
        stmt = stmt.on_conflict_do_update(
            index_elements=[JobPreview.job_id],
            set_={
                "seq": JobPreview.seq + 1,
                "step": stmt.excluded.step,
                "steps": stmt.excluded.steps,
                "mime": stmt.excluded.mime,
                "image": stmt.excluded.image,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        await session.execute(stmt)
        notify.job_preview(session, job_id)


async def latest(sessionmaker: SessionMaker, job_ids: list[str], after: dict[str, int]) -> list[Preview]:
    """The previews of `job_ids` other than those already seen (`after`: job id → sequence number)."""
    session = await read_session(sessionmaker)
    async with session:
        seqs = (
            await session.execute(
                select(JobPreview.job_id, JobPreview.seq).where(JobPreview.job_id.in_(job_ids))
            )
        ).all()
        newer = [job_id for job_id, seq in seqs if seq != after.get(job_id)]
        if not newer:
            return []
        rows = await session.scalars(select(JobPreview).where(JobPreview.job_id.in_(newer)))
        return [Preview(r.job_id, r.seq, r.step, r.steps, r.mime, r.image) for r in rows]


async def clear(sessionmaker: SessionMaker, job_id: str) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(JobPreview).where(JobPreview.job_id == job_id))


async def sweep(sessionmaker: SessionMaker) -> int:
    """Delete the previews of jobs no longer running, or not updated for STALE_AFTER_S; how many."""
    running = select(Job.id).where(Job.status == JobStatus.running)
    stale = utcnow() - timedelta(seconds=STALE_AFTER_S)
    async with sessionmaker() as session, session.begin():
        result = await session.execute(
            delete(JobPreview).where(JobPreview.job_id.not_in(running) | (JobPreview.updated_at < stale))
        )
        return int(getattr(result, "rowcount", 0) or 0)


@dataclass(eq=False)
class Slot:
    """One stream's view of its job's previews: the newest not yet sent, and a wake-up."""

    newest: Preview | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> Preview | None:
        preview, self.newest = self.newest, None
        self.changed.clear()
        return preview


class PreviewHub:
    """One per API process: reads a followed job's preview when notified (or polled) and offers it to
    every stream of that job, newest only."""

    def __init__(self, sessionmaker: SessionMaker, interval_s: float) -> None:
        self.sessionmaker = sessionmaker
        self.interval_s = interval_s
        self._slots: dict[str, set[Slot]] = {}
        self._last: dict[str, Preview] = {}  # per followed job, the newest read
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="preview hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, job_id: str) -> Slot:
        """A slot that holds the job's newest preview (at once, if another stream here already has it)."""
        slot = Slot()
        if job_id in self._last:
            slot.newest = self._last[job_id]
            slot.changed.set()
        self._slots.setdefault(job_id, set()).add(slot)
        self._wake.set()
        return slot

    def unsubscribe(self, job_id: str, slot: Slot) -> None:
        slots = self._slots.get(job_id)
        if slots is not None:
            slots.discard(slot)
            if not slots:
                del self._slots[job_id]
                self._last.pop(job_id, None)

    def on_notified(self, job_id: str) -> None:
        """`backend.notify` listener: job `job_id` has a new preview."""
        if job_id in self._slots:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            if not self._slots:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._wake.clear()
            try:
                await self._poll()
            except Exception:
                logger.exception("preview poll failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def _poll(self) -> None:
        seen = {job_id: p.seq for job_id, p in self._last.items()}
        for preview in await latest(self.sessionmaker, list(self._slots), seen):
            if preview.job_id not in self._slots:
                continue  # its last stream ended during the read
            self._last[preview.job_id] = preview
            for slot in self._slots.get(preview.job_id, ()):
                slot.newest = preview
                slot.changed.set()
