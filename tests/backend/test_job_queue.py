"""job_queue on SQLite and PostgreSQL: only the holder moves a job, once; adoption; cancel; the active cap."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from backend import claims, job_queries, job_queue
from backend.models import Job, JobEvent, JobStatus, utcnow
from tests.support.queue import add_jobs, claim


async def test_backoff_keeps_a_released_job_out_of_reach(sm) -> None:
    (job_id,) = await add_jobs(sm, 1)
    assert (await claim(sm, "w")).id == job_id
    async with sm() as s, s.begin():
        assert await job_queue.release(s, job_id, "w", reason="comfy down", delay_s=30) is not None
    assert await claim(sm, "w") is None
    async with sm() as s:
        assert not await claims.has_claimable(s, ["text"])


async def test_only_the_holder_can_finish_and_only_once(sm) -> None:
    (job_id,) = await add_jobs(sm, 1)
    await claim(sm, "w1")
    async with sm() as s, s.begin():
        assert await job_queue.finish(s, job_id, "w2", []) is None
    async with sm() as s, s.begin():
        assert await job_queue.finish(s, job_id, "w1", []) is not None
    async with sm() as s, s.begin():
        assert await job_queue.fail(s, job_id, "w1", "x", "late") is None
        job = await s.get(Job, job_id)
        assert job.status == JobStatus.succeeded
        types = (
            await s.scalars(select(JobEvent.type).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        ).all()
    assert list(types) == ["queued", "claimed", "succeeded"]


async def test_stalled_jobs_are_adopted_once(sm) -> None:
    ids = await add_jobs(sm, 2)
    await claim(sm, "dead")
    await claim(sm, "alive")
    async with sm() as s, s.begin():
        await s.execute(
            update(Job).where(Job.claimed_by == "dead").values(heartbeat_at=utcnow() - timedelta(seconds=60))
        )
        held = await job_queue.heartbeat(s, "alive", [ids[1]])
    assert set(held) == {ids[1]}

    async def adopt(worker: str) -> list[str]:
        async with sm() as s, s.begin():
            return [j.id for j in await job_queue.adopt_stalled(s, worker, stall_after_s=10)]

    results = await asyncio.gather(adopt("n1"), adopt("n2"), adopt("n3"))
    assert sorted(j for r in results for j in r) == [ids[0]]
    async with sm() as s:
        assert (await s.get(Job, ids[1])).claimed_by == "alive"


async def test_cancel_queued_is_final_and_running_is_flagged(sm) -> None:
    queued, running = await add_jobs(sm, 2)
    await claim(sm, "w")  # claims `queued` (the oldest)... use the other as the queued one
    async with sm() as s, s.begin():
        job = await s.get(Job, running)
        assert (await job_queue.request_cancel(s, job)).status == JobStatus.cancelled
    async with sm() as s, s.begin():
        job = await s.get(Job, queued)
        flagged = await job_queue.request_cancel(s, job)
        assert flagged.status == JobStatus.running and flagged.cancel_requested
    async with sm() as s, s.begin():
        assert await job_queries.cancel_flags(s, [queued, running]) == {queued, running}
        assert await job_queue.mark_cancelled(s, queued, "w") is not None


async def test_enqueue_keeps_nothing_past_the_active_cap(sm) -> None:
    await add_jobs(sm, 2)
    async with sm() as s, s.begin():
        job = Job(designer_id="d1", kind="text", style="x", params={}, params_hash="h", seed=9)
        assert await job_queue.enqueue(s, job, max_active=3) is job
    async with sm() as s:
        over = Job(designer_id="d1", kind="text", style="x", params={}, params_hash="h", seed=10)
        async with s.begin():
            assert await job_queue.enqueue(s, over, max_active=3) is None
            await s.rollback()
        assert await job_queries.active_jobs(s, "d1") == 3
        assert await s.get(Job, over.id) is None


async def test_a_resubmission_is_its_own_event_and_progress_never_goes_back(sm) -> None:
    (job_id,) = await add_jobs(sm, 1)
    await claim(sm, "w")

    async def step(fn, *args, **kwargs):
        async with sm() as s, s.begin():
            return await fn(s, job_id, "w", *args, **kwargs)

    await step(job_queue.mark_submitted, graph={}, external={})
    assert await step(job_queue.mark_started)
    assert await step(job_queue.record_progress, 30, 60)
    await step(job_queue.mark_submitted, graph={}, external={}, resubmit_reason="ComfyUI restarted")
    assert await step(job_queue.mark_started)
    assert await step(job_queue.record_progress, 0, 0)  # held, but nothing stored
    assert await step(job_queue.record_progress, 12, 60)
    assert await step(job_queue.record_progress, 31, 60)
    async with sm() as s, s.begin():
        assert not await job_queue.record_progress(s, job_id, "other", 40, 60)  # not its holder
    async with sm() as s:
        rows = (
            await s.execute(
                select(JobEvent.type, JobEvent.data).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
            )
        ).all()
        job = await s.get(Job, job_id)
    assert [t for t, _ in rows] == [
        "queued",
        "claimed",
        "submitted",
        "started",
        "progress",
        "resubmitted",
        "progress",
    ]
    assert rows[5][1] == {"status": "running", "attempt": 2, "reason": "ComfyUI restarted"}
    assert [d for t, d in rows if t == "progress"] == [{"value": 30, "max": 60}, {"value": 31, "max": 60}]
    assert (job.progress_value, job.progress_max) == (31, 60)
