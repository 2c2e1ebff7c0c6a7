"""job_queries on SQLite and PostgreSQL: reads that never change a job."""

from __future__ import annotations

from backend import job_queries
from backend.models import Job
from tests.support.queue import add_jobs


async def test_queue_position_counts_jobs_ahead_of_the_same_kind(sm) -> None:
    ids = await add_jobs(sm, 3)
    await add_jobs(sm, 2, kind="sketch")
    async with sm() as s:
        positions = [await job_queries.queue_position(s, await s.get(Job, i)) for i in ids]
    assert positions == [1, 2, 3]
