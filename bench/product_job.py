"""What the studio adds to a product render (issue 17) beyond its emulated GPU time.

One emulator (STEP_MS a 512x512 step, no model load time), the API under gunicorn and one dispatcher. Each
job is the built-in `product` template with all three images (a cut-out product, a composition sketch, a
style photo), one at a time: the client POSTs it and follows it until it sees `succeeded` (the 2048x2048
result and the three passes stored by then). The emulated GPU time of a job is the emulator's own start to
end of that prompt (three samplers, the x4 upscale, the saves); the added latency is the client's POST to
`succeeded` minus it: the queue, the three uploads sent to ComfyUI, reading /history and fetching four PNGs
(one of 2048x2048), storing them with thumbnails, and the event reaching the client.
`python -m bench.product_job [jobs] [sqlite|postgresql]` prints it alone.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx

from bench.clients import api_client, template_job, upload
from bench.report import Figure, added_figure, added_over_emulated, run_alone
from bench.sizes import Sizes
from tests.support import harness
from tests.support.db import fresh_database
from tests.support.product import composition_png, product_png, style_photo_png

STEP_MS = 20.0
STEPS = 10  # of the draft; the refines run 20 steps each (the template's graph)
ADDED_P50_MAX_S = 1.5
POLL_S = 0.02


async def _inputs(client: httpx.AsyncClient) -> dict[str, Any]:
    return {
        "product": await upload(client, product_png(), "product"),
        "composition": await upload(client, composition_png(), "composition"),
        "style_photo": await upload(client, style_photo_png(), "style_photo"),
        "prompt": "a sunlit living room, white oak floor",
        "style": "none",
        "steps": STEPS,
    }


async def _one(client: httpx.AsyncClient, inputs: dict[str, Any], seed: int) -> tuple[str, float]:
    job, elapsed = await template_job(client, "product", {**inputs, "seed": seed}, POLL_S)
    if job["status"] != "succeeded" or len(job["passes"]) != 3 or job["images"][0]["width"] != 2048:
        raise RuntimeError(f"product job {job['id']}: {job['status']} {job.get('error')}")
    return str(job["id"]), elapsed


async def _jobs(api_url: str, n: int) -> list[tuple[str, float]]:
    async with api_client(api_url, harness.PRODUCTION_TOKEN) as client:
        inputs = await _inputs(client)
        await _one(client, inputs, 0)  # warm-up: the lane judged, the first prompt, the workers' caches
        return [await _one(client, inputs, seed) for seed in range(1, n + 1)]


def measure(workdir: Path, db: str, n: int) -> dict[str, Any]:
    with fresh_database(db, workdir) as db_url, harness.process_stack(workdir) as s:
        emu = s.emulator(STEP_MS)  # loads the core and node packs' records, as by default
        env = harness.production_env(db_url, workdir, harness.emulator_address(emu))
        s.prestart(env)
        api = s.api(env)
        s.dispatcher(env)
        done = asyncio.run(_jobs(api.url, n))
        runs = {r["prompt_id"]: r for r in emu.stats()["runs"]}
    return {"db": db, "jobs": n, **added_over_emulated(done, runs)}


def figures(values: dict[str, Any]) -> list[Figure]:
    title = f"product job (3 images, 3 passes, x4 to 2048²), {values['jobs']} jobs ({values['db']})"
    return [added_figure("product_job.added", title, values, ADDED_P50_MAX_S)]


def run(workdir: Path, db: str, sizes: Sizes) -> list[Figure]:
    return figures(measure(workdir, db, sizes.product_jobs))


def main(argv: list[str]) -> int:
    return run_alone(measure, figures, argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
