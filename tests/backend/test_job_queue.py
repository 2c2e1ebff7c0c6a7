"""job_queue on SQLite and PostgreSQL: atomic claims, LoRA affinity without starvation, holds, adoption."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from backend import job_queue
from backend.auth import hash_token
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.models import Designer, Job, JobEvent, JobStatus, utcnow


@pytest.fixture
async def sm(db_url: str):
    engine = make_engine(Settings(_env_file=None, database_url=db_url))  # type: ignore[call-arg]
    maker = make_sessionmaker(engine)
    async with maker() as s, s.begin():
        s.add(Designer(id="d1", name="alice", token_hash=hash_token("t")))
    yield maker
    await engine.dispose()


async def add_jobs(sm, n: int, lora: str = "", kind: str = "text", **extra) -> list[str]:
    ids = []
    async with sm() as s, s.begin():
        for i in range(n):
            job = Job(
                designer_id="d1",
                kind=kind,
                style="x",
                lora_name=lora,
                params={"i": i},
                params_hash="h",
                seed=i,
                **extra,
            )
            await job_queue.enqueue(s, job)
            ids.append(job.id)
    return ids


async def claim(sm, worker: str, preferred: str | None = None, kinds=("text",)) -> Job | None:
    async with sm() as s, s.begin():
        return await job_queue.claim_next(
            s, worker_id=worker, kinds=kinds, executor="comfy", instance="i1", preferred_lora=preferred
        )


async def test_concurrent_claims_never_hand_out_a_job_twice(sm) -> None:
    ids = await add_jobs(sm, 60)

    async def worker(name: str) -> list[str]:
        got = []
        while (job := await claim(sm, name)) is not None:
            got.append(job.id)
        return got

    results = await asyncio.gather(*(worker(f"w{i}") for i in range(6)))
    claimed = [j for r in results for j in r]
    assert sorted(claimed) == sorted(ids)
    assert len(set(claimed)) == len(claimed)


async def test_claim_is_fifo_and_by_kind(sm) -> None:
    text = await add_jobs(sm, 2)
    sketch = await add_jobs(sm, 1, kind="sketch")
    assert (await claim(sm, "w", kinds=("sketch",))).id == sketch[0]
    assert (await claim(sm, "w")).id == text[0]
    assert (await claim(sm, "w")).id == text[1]
    assert await claim(sm, "w") is None


async def test_affinity_prefers_the_loaded_lora_but_not_forever(sm) -> None:
    a = await add_jobs(sm, 1, lora="indochine.safetensors")
    b = await add_jobs(sm, 1, lora="minimalist.safetensors")
    job = await claim(sm, "w", preferred="minimalist.safetensors")
    assert job.id == b[0]  # jumped the queue: same LoRA as loaded
    async with sm() as s, s.begin():  # the head has waited too long: it goes first whatever is loaded
        await s.execute(update(Job).values(created_at=utcnow() - timedelta(seconds=60)))
    c = await add_jobs(sm, 1, lora="minimalist.safetensors")
    assert (await claim(sm, "w", preferred="minimalist.safetensors")).id == a[0]
    assert (await claim(sm, "w", preferred="minimalist.safetensors")).id == c[0]


async def claim_many(sm, worker: str, limit: int, preferred: str | None = None, kinds=("text",)) -> list[Job]:
    async with sm() as s, s.begin():
        return await job_queue.claim_batch(
            s,
            worker_id=worker,
            kinds=kinds,
            executor="comfy",
            instance="i1",
            limit=limit,
            preferred_lora=preferred,
        )


async def test_a_batch_claim_takes_the_head_in_order_with_one_event_each(sm) -> None:
    ids = await add_jobs(sm, 5)
    sketch = await add_jobs(sm, 1, kind="sketch")
    first = await claim_many(sm, "w", 3)
    assert [j.id for j in first] == ids[:3]
    assert all(j.status == JobStatus.running and j.claimed_by == "w" for j in first)
    assert [j.id for j in await claim_many(sm, "w", 8)] == ids[3:]  # only what is left, of its kind
    assert await claim_many(sm, "w", 8) == []
    async with sm() as s:
        claimed = (await s.scalars(select(JobEvent.job_id).where(JobEvent.type == "claimed"))).all()
        assert sorted(claimed) == sorted(ids)
        assert (await s.get(Job, sketch[0])).status == JobStatus.queued


async def test_a_batch_claim_prefers_the_loaded_lora_but_never_passes_an_overdue_job(sm) -> None:
    a = await add_jobs(sm, 2, lora="indochine.safetensors")
    b = await add_jobs(sm, 2, lora="minimalist.safetensors")
    got = await claim_many(sm, "w", 3, preferred="minimalist.safetensors")
    assert [j.id for j in got] == [*b, a[0]]
    async with sm() as s, s.begin():  # a[1] has waited too long: it goes before any preferred job
        await s.execute(update(Job).values(created_at=utcnow() - timedelta(seconds=60)))
    c = await add_jobs(sm, 1, lora="minimalist.safetensors")
    got = await claim_many(sm, "w", 2, preferred="minimalist.safetensors")
    assert [j.id for j in got] == [a[1], c[0]]


async def test_concurrent_batch_claims_never_hand_out_a_job_twice(sm) -> None:
    ids = await add_jobs(sm, 90, lora="indochine.safetensors")
    ids += await add_jobs(sm, 30, lora="minimalist.safetensors")

    async def worker(name: str, preferred: str | None) -> list[str]:
        got = []
        while jobs := await claim_many(sm, name, 7, preferred=preferred):
            got += [j.id for j in jobs]
        return got

    loras = [None, "indochine.safetensors", "minimalist.safetensors"]
    results = await asyncio.gather(*(worker(f"w{i}", loras[i % 3]) for i in range(6)))
    claimed = [j for r in results for j in r]
    assert sorted(claimed) == sorted(ids)
    assert len(set(claimed)) == len(claimed)
    async with sm() as s:
        events = (await s.scalars(select(JobEvent.job_id).where(JobEvent.type == "claimed"))).all()
    assert sorted(events) == sorted(ids)


async def test_backoff_keeps_a_released_job_out_of_reach(sm) -> None:
    (job_id,) = await add_jobs(sm, 1)
    assert (await claim(sm, "w")).id == job_id
    async with sm() as s, s.begin():
        assert await job_queue.release(s, job_id, "w", reason="comfy down", delay_s=30) is not None
    assert await claim(sm, "w") is None
    async with sm() as s:
        assert not await job_queue.has_claimable(s, ["text"])


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
        assert await job_queue.cancel_flags(s, [queued, running]) == {queued, running}
        assert await job_queue.mark_cancelled(s, queued, "w") is not None


async def test_queue_position_counts_jobs_ahead_of_the_same_kind(sm) -> None:
    ids = await add_jobs(sm, 3)
    await add_jobs(sm, 2, kind="sketch")
    async with sm() as s:
        positions = [await job_queue.queue_position(s, await s.get(Job, i)) for i in ids]
    assert positions == [1, 2, 3]


async def test_claim_takes_a_higher_priority_first_with_or_without_a_preferred_lora(sm) -> None:
    await add_jobs(sm, 1, lora="indochine.safetensors")
    high = await add_jobs(sm, 2, lora="minimalist.safetensors", priority=5)
    assert (await claim(sm, "w")).id == high[0]
    assert (await claim(sm, "w", preferred="minimalist.safetensors")).id == high[1]


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
        assert await job_queue.active_jobs(s, "d1") == 3
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
