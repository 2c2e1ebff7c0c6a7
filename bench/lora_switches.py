"""Figure 5: LoRA loads per job for a mixed backlog on two ComfyUI instances, with and without affinity.

The backlog (Indochine, Minimalist, none, interleaved) is posted to the API, then one dispatcher feeds
two emulators (55 ms a step, 300 ms a LoRA load, the emulator's default; no checkpoint load time). The
emulators count the LoRA loads. Measured: the production dispatcher, which prefers a job using the LoRA
its instance has loaded (`claims.AFFINITY_WINDOW`). Baseline: the same dispatcher taking the head
of the queue every time (`python -m bench.naive_dispatcher`). A `none` job loads no LoRA and leaves the
loaded one in place, as ComfyUI does.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.clients import api_client, job_body, post_job
from bench.report import Figure
from bench.sizes import Sizes
from tests.support import harness
from tests.support.comfy import EmulatorProcess
from tests.support.db import fresh_database

STEP_MS = 55.0
LORA_LOAD_MS = 300.0
STYLES = ("indochine", "minimalist", "none")
MAX_PER_JOB = 0.25
POLL_S = 0.5


async def _post_backlog(url: str, n: int, steps: int) -> None:
    async with api_client(url, harness.PRODUCTION_TOKEN) as client:
        for i in range(n):
            await post_job(client, job_body(style=STYLES[i % len(STYLES)], steps=steps))


def _wait_all(emulators: list[EmulatorProcess], n: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = [e.stats() for e in emulators]
        if sum(len(s["runs"]) for s in stats) >= n:
            return stats
        for e in emulators:
            harness.emulator_alive(e)
        time.sleep(POLL_S)
    raise TimeoutError(f"{n} jobs did not finish in {timeout_s:.0f}s")


def one_run(workdir: Path, db: str, sizes: Sizes, dispatcher_module: str) -> dict[str, Any]:
    n = sizes.lora_jobs
    with fresh_database(db, workdir) as db_url, harness.process_stack(workdir) as s:
        emulators = [s.emulator(STEP_MS, load_ms=(0, LORA_LOAD_MS, 0)) for _ in range(2)]
        address = ",".join(harness.emulator_address(e) for e in emulators)
        env = harness.production_env(db_url, workdir, address, max_active_jobs_per_designer=n + 10)
        s.prestart(env)
        api = s.api(env)
        asyncio.run(_post_backlog(api.url, n, sizes.lora_steps))
        started = time.monotonic()
        s.dispatcher(env, dispatcher_module)
        stats = _wait_all(emulators, n, timeout_s=60 + n * 2.0)
        wall = time.monotonic() - started
    loads = sum(st["lora_loads"] for st in stats)
    return {
        "jobs": n,
        "lora_loads": loads,
        "per_job": loads / n,
        "per_instance": [len(st["runs"]) for st in stats],
        "wall_s": wall,
    }


def _loads(r: dict[str, Any]) -> str:
    return f"{r['per_job']:.2f} ({r['lora_loads']} loads, {r['wall_s']:.1f} s)"


def run(workdir: Path, db: str, sizes: Sizes) -> list[Figure]:
    affinity = one_run(workdir / "affinity", db, sizes, "backend.dispatcher")
    naive = one_run(workdir / "naive", db, sizes, "bench.naive_dispatcher")
    return [
        Figure(
            key="lora_switches.affinity",
            title=f"5. LoRA loads per job, {sizes.lora_jobs} mixed jobs, 2 instances ({db})",
            measured=_loads(affinity),
            baseline=f"head of queue {_loads(naive)}",
            target=f"<= {MAX_PER_JOB:.2f}",
            passed=affinity["per_job"] <= MAX_PER_JOB,
            values={"affinity": affinity, "naive": naive, "db": db},
        )
    ]
