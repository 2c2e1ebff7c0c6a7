"""What the studio adds to a redesign of a room photo (issue 19) beyond its emulated GPU time, per template.

One emulator (STEP_MS a 512x512 step, no model load time), the API under gunicorn and one dispatcher. The
jobs are the three photo templates on the tests' 640x480 room photo (tests/support/redesign.py), each with
its mask painted as in tests/backend/test_redesign.py: `restyle` with a keep mask over the window (depth
and lines ControlNets, img2img at `creativity` 0.55, the window composited back), `stage` with a floor mask
(furniture only there) and `edit` with a region to repaint. One at a time, the templates taking turns after
one warm-up job each: the client POSTs a job and polls it until it sees `succeeded` (the 683x512 render and
its two passes stored by then). The emulated GPU time of a job is the emulator's own start to end of that
prompt (preprocessors, the sampler, the decode, the composite, the three saves); the added latency is the
client's POST to `succeeded` minus it: the queue, the photo and the mask sent to ComfyUI, reading /history
and fetching three PNGs, storing them with thumbnails, and the record reaching the client.
`python -m bench.redesign_job [jobs per template] [sqlite|postgresql]` prints it alone.
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
from tests.support.redesign import painted_mask, room_photo

STEP_MS = 20.0
STEPS = 10  # at 683x512: a third longer than a 512x512 step
ADDED_P50_MAX_S = 1.5  # the product job's bound: a redesign stores less (three 683x512 PNGs)
POLL_S = 0.02
PHOTO_W, PHOTO_H = 640, 480
RENDER = (683, 512)  # the default height 512, the photo's 4:3 aspect
TEMPLATES: dict[str, tuple[str, tuple[int, int, int, int], dict[str, Any]]] = {
    # template: (its mask input, the box painted, its other inputs)
    "restyle": ("keep_mask", (80, 80, 213, 240),
                {"prompt": "japandi living room", "style": "minimalist", "creativity": 0.55}),
    "stage": ("floor_mask", (0, 330, PHOTO_W - 1, PHOTO_H - 1), {"prompt": "scandinavian sofa"}),
    "edit": ("mask", (300, 200, 500, 400), {"prompt": "a green armchair"}),
}  # fmt: skip
TITLES = {
    "restyle": "restyle job (depth + lines, img2img, keep mask back)",
    "stage": "stage job (depth + lines, inpaint the floor, walls back)",
    "edit": "edit job (inpaint ControlNet and mask, the rest back)",
}


async def _inputs(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Each template's inputs: one room photo, and each template's own mask of it."""
    photo = await upload(client, room_photo(PHOTO_W, PHOTO_H), "photo")
    found = {}
    for template, (mask_key, box, others) in TEMPLATES.items():
        mask = await upload(client, painted_mask(PHOTO_W, PHOTO_H, box), "mask")
        found[template] = {"photo": photo, mask_key: mask, "steps": STEPS, **others}
    return found


async def _one(
    client: httpx.AsyncClient, template: str, inputs: dict[str, Any], seed: int
) -> tuple[str, float]:
    job, elapsed = await template_job(client, template, {**inputs, "seed": seed}, POLL_S)
    image = job["images"][0] if job.get("images") else {}
    if job["status"] != "succeeded" or len(job["passes"]) != 2 or (image["width"], image["height"]) != RENDER:
        raise RuntimeError(f"{template} job {job['id']}: {job['status']} {job.get('error')} {image}")
    return str(job["id"]), elapsed


async def _jobs(api_url: str, n: int) -> dict[str, list[tuple[str, float]]]:
    async with api_client(api_url, harness.PRODUCTION_TOKEN) as client:
        inputs = await _inputs(client)
        for template in TEMPLATES:  # warm-up: the lane judged, the first prompt, the workers' caches
            await _one(client, template, inputs[template], 0)
        done: dict[str, list[tuple[str, float]]] = {template: [] for template in TEMPLATES}
        for seed in range(1, n + 1):  # taking turns: a change in the machine's load falls on all three
            for template in TEMPLATES:
                done[template].append(await _one(client, template, inputs[template], seed))
        return done


def measure(workdir: Path, db: str, n: int) -> dict[str, dict[str, Any]]:
    """Per template: the client's POST to `succeeded`, the emulated GPU time and the difference, p50/p99."""
    with fresh_database(db, workdir) as db_url, harness.process_stack(workdir) as s:
        emu = s.emulator(STEP_MS)  # loads the core and node packs' records, as by default
        env = harness.production_env(db_url, workdir, harness.emulator_address(emu))
        s.prestart(env)
        api = s.api(env)
        s.dispatcher(env)
        done = asyncio.run(_jobs(api.url, n))
        runs = {r["prompt_id"]: r for r in emu.stats()["runs"]}
    return {
        template: {"db": db, "template": template, "jobs": n, **added_over_emulated(jobs, runs)}
        for template, jobs in done.items()
    }


def figures(values: dict[str, dict[str, Any]]) -> list[Figure]:
    return [
        added_figure(
            f"redesign_job.{template}",
            f"{TITLES[template]}, 640x480 → 683x512, {v['jobs']} jobs ({v['db']})",
            v,
            ADDED_P50_MAX_S,
        )
        for template, v in values.items()
    ]


def run(workdir: Path, db: str, sizes: Sizes) -> list[Figure]:
    return figures(measure(workdir, db, sizes.redesign_jobs))


def main(argv: list[str]) -> int:
    return run_alone(measure, figures, argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
