"""Figures 1 and 6: the latency the backend adds to one render, and how soon a client sees progress.

One emulator (55 ms a step, no model load time: loading is not what is measured), the API under
gunicorn and one dispatcher. Jobs run one at a time, alternating between a designer's client of the
API (POST, Server-Sent Events, image) and a minimal ComfyUI client sending the same graph (POST /prompt,
/ws, /history, /view), so both see the same machine at the same moment. The added latency of pair i is
API time i minus direct time i. The JSON also splits each path into its steps (p50 of each), from the
events' stored times, the times the client saw them and the emulator's own start and end of each prompt.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from bench.clients import DirectComfy, GraphMaker, Timing, api_client, api_render, job_body
from bench.report import Figure, ms, p50_p99
from bench.sizes import Sizes
from tests.support import harness
from tests.support.db import fresh_database

STEP_MS = 55.0
ADDED_P50_MAX_S, ADDED_P99_MAX_S = 0.040, 0.150
FIRST_PROGRESS_EXTRA_S = 0.050  # on top of the model's first step


async def _pairs(api_url: str, comfy_url: str, jobs: int, steps: int) -> list[tuple[Timing, Timing]]:
    maker = GraphMaker()
    body = job_body(steps=steps)
    pairs: list[tuple[Timing, Timing]] = []
    async with api_client(api_url, harness.PRODUCTION_TOKEN) as client, DirectComfy(comfy_url) as direct:

        async def straight() -> Timing:
            prompt_id = str(uuid.uuid4())
            return await direct.render(maker.graph(body, prompt_id), prompt_id)

        await api_render(client, body)  # warm-up: first request of each worker, first prompt
        await straight()
        for i in range(jobs):
            if i % 2:  # alternate which goes first, so neither always follows the other
                api = await api_render(client, body)
                raw = await straight()
            else:
                raw = await straight()
                api = await api_render(client, body)
            pairs.append((api, raw))
    return pairs


# Each path's steps: (name, from mark, to mark); `comfy:start` / `comfy:end` are the emulator's own times.
API_STEPS = (
    ("POST → job stored", "post", "event:queued"),
    ("stored → claimed", "event:queued", "event:claimed"),
    ("claimed → ComfyUI starts", "event:claimed", "comfy:start"),
    ("ComfyUI starts → progress stored", "comfy:start", "event:progress"),
    ("progress stored → client sees it", "event:progress", "seen:progress"),
    ("ComfyUI ends → succeeded stored", "comfy:end", "event:succeeded"),
    ("succeeded stored → client sees it", "event:succeeded", "seen:succeeded"),
    ("image fetched", "seen:succeeded", "done"),
)
DIRECT_STEPS = (
    ("POST /prompt → ComfyUI starts", "post", "comfy:start"),
    ("ComfyUI starts → progress seen", "comfy:start", "seen:progress"),
    ("ComfyUI ends → client sees it", "comfy:end", "seen:end"),
    ("/history + /view", "seen:end", "done"),
)


def steps_ms(timings: list[Timing], runs: dict[str, dict[str, Any]], steps: Any) -> dict[str, float]:
    """p50 of each step, in ms, over the timings whose prompt the emulator ran."""
    out: dict[str, float] = {}
    for name, start, end in steps:
        values = []
        for t in timings:
            run = runs.get(t.prompt_id)
            if run is None:
                continue
            marks = {**t.marks, "comfy:start": run["started_at"], "comfy:end": run["ended_at"]}
            values.append(marks[end] - marks[start])
        out[name] = round(p50_p99(values)["p50"] * 1000, 2) if values else float("nan")
    return out


def measure(workdir: Path, db: str, sizes: Sizes) -> tuple[list[tuple[Timing, Timing]], dict[str, Any]]:
    with fresh_database(db, workdir) as db_url, harness.process_stack(workdir) as s:
        emu = s.emulator(STEP_MS)
        env = harness.production_env(db_url, workdir, harness.emulator_address(emu))
        s.prestart(env)
        api = s.api(env)
        s.dispatcher(env)
        pairs = asyncio.run(_pairs(api.url, emu.url, sizes.latency_jobs, sizes.latency_steps))
        runs = {r["prompt_id"]: r for r in emu.stats()["runs"]}
        return pairs, runs


def figures(pairs: list[tuple[Timing, Timing]], runs: dict[str, Any], db: str, steps: int) -> list[Figure]:
    added = p50_p99([a.total_s - d.total_s for a, d in pairs])
    api_total = p50_p99([a.total_s for a, _ in pairs])
    direct_total = p50_p99([d.total_s for _, d in pairs])
    first_api = p50_p99([a.first_progress_s for a, _ in pairs])
    first_direct = p50_p99([d.first_progress_s for _, d in pairs])
    first_step_s = STEP_MS / 1000  # 512x512, batch 1
    first_target_s = FIRST_PROGRESS_EXTRA_S + first_step_s
    n = len(pairs)
    breakdown = {
        "api_steps_p50_ms": steps_ms([a for a, _ in pairs], runs, API_STEPS),
        "direct_steps_p50_ms": steps_ms([d for _, d in pairs], runs, DIRECT_STEPS),
    }
    return [
        Figure(
            key="latency.added",
            title=f"1. added latency, {n} jobs x {steps} steps ({db})",
            measured=f"p50 {ms(added['p50'])}, p99 {ms(added['p99'])}",
            baseline=f"direct p50 {ms(direct_total['p50'])}, p99 {ms(direct_total['p99'])}",
            target=f"p50 <= {ms(ADDED_P50_MAX_S)}, p99 <= {ms(ADDED_P99_MAX_S)}",
            passed=added["p50"] <= ADDED_P50_MAX_S and added["p99"] <= ADDED_P99_MAX_S,
            values={
                "added_s": added,
                "api_total_s": api_total,
                "direct_total_s": direct_total,
                "db": db,
                **breakdown,
            },
        ),
        Figure(
            key="latency.first_progress",
            title=f"6. POST to first progress, {n} jobs ({db})",
            measured=f"p50 {ms(first_api['p50'])}, p99 {ms(first_api['p99'])}",
            baseline=f"direct p50 {ms(first_direct['p50'])}, p99 {ms(first_direct['p99'])}",
            target=f"p50 <= {ms(FIRST_PROGRESS_EXTRA_S)} + first step {ms(first_step_s)}",
            passed=first_api["p50"] <= first_target_s,
            values={
                "api_s": first_api,
                "direct_s": first_direct,
                "target_s": first_target_s,
                "db": db,
                **breakdown,
            },
        ),
    ]


def run(workdir: Path, db: str, sizes: Sizes) -> list[Figure]:
    pairs, runs = measure(workdir, db, sizes)
    return figures(pairs, runs, db, sizes.latency_steps)
