"""Figure 2: how long the GPU idles between two prompts while a backlog waits, as the emulator saw it.

A backlog of jobs is posted to the API, then one dispatcher feeds one emulator (55 ms a step). The gap
is the next prompt's start minus the previous prompt's end, from the emulator's own run log. Baseline:
the same number of graphs queued straight into a second emulator at once (ComfyUI's own gap). Shown
beside them, without a target: the dispatcher with `COMFY_PREQUEUE=0`, what the pre-queued prompt saves.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.clients import GraphMaker, api_client, job_body, post_job
from bench.report import Figure, ms, p50_p99
from bench.sizes import Sizes
from tests.support import harness
from tests.support.comfy import EmulatorProcess
from tests.support.db import fresh_database

STEP_MS = 55.0
P50_MAX_S, P99_MAX_S = 0.015, 0.050
POLL_S = 1.0


def gaps(runs: list[dict[str, Any]]) -> list[float]:
    ordered = sorted(runs, key=lambda r: r["started_at"])
    return [b["started_at"] - a["ended_at"] for a, b in itertools.pairwise(ordered)]


def wait_runs(emu: EmulatorProcess, n: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        harness.emulator_alive(emu)
        runs: list[dict[str, Any]] = emu.stats()["runs"]
        if len(runs) >= n:
            return runs
        time.sleep(POLL_S)
    raise TimeoutError(f"the emulator ran fewer than {n} prompts in {timeout_s:.0f}s")


async def _post_backlog(url: str, n: int, steps: int) -> None:
    async with api_client(url, harness.PRODUCTION_TOKEN) as client:
        for _ in range(n):
            await post_job(client, job_body(steps=steps))


def through_dispatcher(workdir: Path, db: str, sizes: Sizes, prequeue: int) -> list[float]:
    n = sizes.idle_backlog
    with fresh_database(db, workdir) as db_url, harness.process_stack(workdir) as s:
        emu = s.emulator(STEP_MS)
        env = harness.production_env(
            db_url,
            workdir,
            harness.emulator_address(emu),
            comfy_prequeue=prequeue,
            max_active_jobs_per_designer=n + 10,
        )
        s.prestart(env)
        api = s.api(env)
        asyncio.run(_post_backlog(api.url, n, sizes.idle_steps))
        s.dispatcher(env)
        return gaps(wait_runs(emu, n, timeout_s=60 + n * 2.0))


def straight_to_comfy(workdir: Path, sizes: Sizes) -> list[float]:
    n, maker = sizes.idle_backlog, GraphMaker()
    body = job_body(steps=sizes.idle_steps)
    with harness.process_stack(workdir) as s:
        emu = s.emulator(STEP_MS)
        s.wait_emulators()
        with httpx.Client(base_url=emu.url, timeout=30) as http:
            for _ in range(n):
                prompt_id = str(uuid.uuid4())
                payload = {"prompt": maker.graph(body, prompt_id), "prompt_id": prompt_id}
                http.post("/prompt", json=payload).raise_for_status()
        return gaps(wait_runs(emu, n, timeout_s=60 + n * 2.0))


def run(workdir: Path, db: str, sizes: Sizes) -> list[Figure]:
    direct = p50_p99(straight_to_comfy(workdir / "direct", sizes))
    dispatched = p50_p99(through_dispatcher(workdir / "prequeue", db, sizes, prequeue=1))
    baseline = f"queued in ComfyUI p50 {ms(direct['p50'])}, p99 {ms(direct['p99'])}"
    n = sizes.idle_backlog
    figures = [
        Figure(
            key="idle_gap.prequeue",
            title=f"2. GPU idle gap, backlog {n} ({db})",
            measured=f"p50 {ms(dispatched['p50'])}, p99 {ms(dispatched['p99'])}",
            baseline=baseline,
            target=f"p50 <= {ms(P50_MAX_S)}, p99 <= {ms(P99_MAX_S)}",
            passed=dispatched["p50"] <= P50_MAX_S and dispatched["p99"] <= P99_MAX_S,
            values={"gap_s": dispatched, "direct_gap_s": direct, "db": db, "comfy_prequeue": 1},
        )
    ]
    if not sizes.idle_no_prequeue:
        return figures
    no_prequeue = p50_p99(through_dispatcher(workdir / "no-prequeue", db, sizes, prequeue=0))
    figures.append(
        Figure(
            key="idle_gap.no_prequeue",
            title=f"2. GPU idle gap, COMFY_PREQUEUE=0 ({db})",
            measured=f"p50 {ms(no_prequeue['p50'])}, p99 {ms(no_prequeue['p99'])}",
            baseline=baseline,
            target="(informative)",
            passed=None,
            values={"gap_s": no_prequeue, "direct_gap_s": direct, "db": db, "comfy_prequeue": 0},
        )
    )
    return figures
