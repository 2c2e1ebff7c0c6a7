"""Figure 7: resident memory of the API workers and the dispatcher after many jobs, against a bound.

A feeder keeps a small backlog posted (enough that the dispatcher never waits for work) until every
job is done; every `FOLLOW_EVERY`-th job is also followed to its end over Server-Sent Events and its
image fetched, as a designer's client does. One dispatcher feeds two emulators. Memory, not time, is
what is measured, so the emulators run 1 ms steps (1 step, 256x256) and load nothing. The reading
after `memory_mark` jobs is the baseline; the bound is on the growth from there to the end: a leak of
2.5 KiB a job would exceed it over 10,000 jobs.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from bench.clients import api_client, follow, job_body, post_job
from bench.report import Figure
from bench.sizes import Sizes
from tests.support import harness
from tests.support.db import fresh_database

STEP_MS = 1.0
INSTANCES = 4
BACKLOG = 24  # jobs queued or running at once: more than the dispatcher holds (2 per instance)
FOLLOW_EVERY = 10
WATCH_S = 0.1
MAX_GROWTH_MIB = 20.0


def rss(api: harness.ApiProcess, dispatcher: harness.DispatcherProcess) -> dict[str, float]:
    workers = [harness.rss_mib(pid) for pid in api.worker_pids()]
    return {
        "api_worker_max": max(workers),
        "api_workers_sum": sum(workers),
        "dispatcher": harness.rss_mib(dispatcher.pid),
    }


async def _active(client: httpx.AsyncClient) -> int:
    r = await client.get("/api/jobs", params=[("status", "queued"), ("status", "running"), ("limit", 100)])
    r.raise_for_status()
    return len(r.json()["items"])


async def _follow_one(client: httpx.AsyncClient, job_id: str) -> None:
    final = await follow(client, job_id)
    if final["type"] != "succeeded":
        raise RuntimeError(f"job {job_id} ended {final['type']}: {final['data']}")
    (await client.get(f"/api/images/{final['data']['images'][0]['id']}")).raise_for_status()


async def _drive(
    api: harness.ApiProcess, dispatcher: harness.DispatcherProcess, jobs: int, mark: int
) -> dict[str, Any]:
    readings: dict[str, Any] = {}
    body = job_body(steps=1, side=256)
    followers: list[asyncio.Task[None]] = []
    posted = 0
    started = time.monotonic()
    async with api_client(api.url, harness.PRODUCTION_TOKEN) as client:
        while True:
            active = await _active(client)
            done = posted - active
            if "mark" not in readings and done >= mark:
                readings["mark"] = await asyncio.to_thread(rss, api, dispatcher)
            if done >= jobs:
                break
            dispatcher.check_alive()
            for _ in range(min(BACKLOG - active, jobs - posted)):
                job_id = await post_job(client, body)
                posted += 1
                if posted % FOLLOW_EVERY == 0:
                    followers.append(asyncio.create_task(_follow_one(client, job_id)))
            await asyncio.sleep(WATCH_S)
        await asyncio.gather(*followers)  # and raise if a followed job did not succeed
    readings["end"] = await asyncio.to_thread(rss, api, dispatcher)
    readings["wall_s"] = time.monotonic() - started
    readings["jobs_per_s"] = jobs / readings["wall_s"]
    return readings


def measure(workdir: Path, db: str, sizes: Sizes) -> dict[str, Any]:
    with fresh_database(db, workdir) as db_url, harness.process_stack(workdir) as s:
        emulators = [s.emulator(STEP_MS) for _ in range(INSTANCES)]
        address = ",".join(harness.emulator_address(e) for e in emulators)
        env = harness.production_env(db_url, workdir, address, max_active_jobs_per_designer=BACKLOG * 2)
        s.prestart(env)
        api = s.api(env)
        dispatcher = s.dispatcher(env)
        return asyncio.run(_drive(api, dispatcher, sizes.memory_jobs, sizes.memory_mark))


def run(workdir: Path, db: str, sizes: Sizes) -> list[Figure]:
    r = measure(workdir, db, sizes)
    mark, end = r["mark"], r["end"]
    figures = []
    for key, name in (("api_worker_max", "API worker (largest)"), ("dispatcher", "dispatcher")):
        growth = end[key] - mark[key]
        figures.append(
            Figure(
                key=f"memory.{key}",
                title=f"7. RSS {name} after {sizes.memory_jobs:,} jobs ({db})",
                measured=f"{end[key]:.1f} MiB ({growth:+.1f} MiB)",
                baseline=f"{mark[key]:.1f} MiB after {sizes.memory_mark:,} jobs",
                target=f"growth <= {MAX_GROWTH_MIB:.0f} MiB",
                passed=growth <= MAX_GROWTH_MIB,
                values={**r, "db": db, "jobs": sizes.memory_jobs, "mark_jobs": sizes.memory_mark},
            )
        )
    return figures
