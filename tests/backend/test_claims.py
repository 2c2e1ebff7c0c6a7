"""claims on SQLite and PostgreSQL: atomic claims, batches, LoRA affinity without starvation, priority."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from backend.models import Job, JobEvent, JobStatus, utcnow
from tests.support.queue import add_jobs, claim, claim_many


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
    assert (await claim(sm, "w", lanes=("sketch",))).id == sketch[0]
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


async def test_claim_takes_a_higher_priority_first_with_or_without_a_preferred_lora(sm) -> None:
    await add_jobs(sm, 1, lora="indochine.safetensors")
    high = await add_jobs(sm, 2, lora="minimalist.safetensors", priority=5)
    assert (await claim(sm, "w")).id == high[0]
    assert (await claim(sm, "w", preferred="minimalist.safetensors")).id == high[1]
