"""The queue's test helpers: jobs added through `job_queue.enqueue`, claims as a dispatcher makes them."""

from __future__ import annotations

from backend import claims, job_queue
from backend.models import Job


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


async def claim(sm, worker: str, preferred: str | None = None, lanes=("text",)) -> Job | None:
    async with sm() as s, s.begin():
        return await claims.claim_next(
            s, worker_id=worker, lanes=lanes, executor="comfy", instance="i1", preferred_lora=preferred
        )


async def claim_many(sm, worker: str, limit: int, preferred: str | None = None, lanes=("text",)) -> list[Job]:
    async with sm() as s, s.begin():
        return await claims.claim_batch(
            s,
            worker_id=worker,
            lanes=lanes,
            executor="comfy",
            instance="i1",
            limit=limit,
            preferred_lora=preferred,
        )
