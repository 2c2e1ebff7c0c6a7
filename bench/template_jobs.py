"""What a template job adds to `POST /api/jobs`: the same text render as the legacy built-in body
(`kind: text` + params, the baseline), as `{"template": "text", "inputs": {...}}` and as a custom published
template (`{"template": "bench-room", ...}`), through the API under gunicorn on a real database.

No dispatcher runs: the jobs stay queued, so only the request path is measured (value validation by the
version's generated model, the fill, the row written). The legacy body runs the built-in `text` template
too (its params are that template's input values): the figure is what the template body adds to it, the
version lookup and the fill being common to both. The three bodies take turns, in a rotating order,
one request at a time, so each sees the same machine. Target: p50 of each template body at most 5 ms
above the legacy body's. `python -m bench.template_jobs [requests] [sqlite|postgresql]` prints it alone.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.clients import api_client, job_body
from bench.report import Figure, ms, percentile
from bench.sizes import Sizes
from tests.support import harness
from tests.support.db import fresh_database

ROOT = Path(__file__).resolve().parents[1]
ADDED_P50_MAX_S = 0.005
CUSTOM = "bench-room"
WARMUP = 10  # requests of each body first: the workers' caches (token, version, input model) filled


def legacy_body() -> dict[str, Any]:
    return {"kind": "text", **job_body(steps=4)}


def template_body() -> dict[str, Any]:
    return {"template": "text", "inputs": job_body(steps=4)}


def custom_body() -> dict[str, Any]:
    return {"template": CUSTOM, "inputs": {"prompt": "a bright loft, oak floor", "steps": 4}}


def custom_declaration() -> dict[str, Any]:
    """The text graph without its LoRA node: a prompt, steps and a seed."""
    graph = json.loads((ROOT / "contract" / "workflows" / "txt2img.json").read_text())
    del graph["10"]
    for node in graph.values():
        node.pop("_meta", None)
        for key, value in node["inputs"].items():
            if isinstance(value, list) and value and value[0] == "10":
                node["inputs"][key] = ["4", value[1]]
    seed = {"key": "seed", "label": "Seed", "kind": "seed", "targets": [["3", "seed"]]}
    return {
        "name": CUSTOM,
        "title": "Bench room",
        "graph": graph,
        "inputs": [
            {"key": "prompt", "label": "Room", "kind": "long_text", "targets": [["6", "text"]]},
            {"key": "steps", "label": "Steps", "kind": "integer", "targets": [["3", "steps"]],
             "default": 4, "constraints": {"min": 1, "max": 30}},
            seed,
        ],
        "outputs": {"results": ["9"]},
    }  # fmt: skip


async def _publish(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/templates", json=custom_declaration())
    if r.status_code != 201:
        raise RuntimeError(f"the custom template was refused: {r.status_code} {r.text[:500]}")
    r = await client.post(f"/api/templates/{CUSTOM}/publish")
    if r.status_code != 201:
        raise RuntimeError(f"publishing the custom template failed: {r.status_code} {r.text[:500]}")


async def _timed(client: httpx.AsyncClient, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    r = await client.post("/api/jobs", json=body)
    elapsed = time.perf_counter() - start
    if r.status_code != 201:
        raise RuntimeError(f"POST /api/jobs {body}: {r.status_code} {r.text[:500]}")
    return elapsed


BODIES = {"legacy": legacy_body, "template": template_body, "custom": custom_body}


async def _requests(api_url: str, n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in BODIES}
    names = list(BODIES)
    async with api_client(api_url, harness.PRODUCTION_TOKEN) as client:
        await _publish(client)
        for _ in range(WARMUP):
            for make in BODIES.values():
                await _timed(client, make())
        for i in range(n):
            order = names[i % 3 :] + names[: i % 3]  # each body goes first, second and last in turn
            for name in order:
                times[name].append(await _timed(client, BODIES[name]()))
    return times


def measure(workdir: Path, db: str, n: int) -> dict[str, Any]:
    with fresh_database(db, workdir) as db_url, harness.process_stack(workdir) as s:
        emu = s.emulator(1.0)  # the instance a custom template is validated against (it runs nothing)
        env = harness.production_env(
            db_url,
            workdir,
            harness.emulator_address(emu),
            max_active_jobs_per_designer=1_000_000,  # every job stays queued: no dispatcher runs
            api_workers=1,
        )
        s.prestart(env)
        api = s.api(env)
        times = asyncio.run(_requests(api.url, n))
    stats = {
        name: {"p50": percentile(v, 50), "p95": percentile(v, 95), "n": len(v)} for name, v in times.items()
    }
    legacy = stats["legacy"]
    added = {name: {q: stats[name][q] - legacy[q] for q in ("p50", "p95")} for name in ("template", "custom")}
    return {"db": db, "requests_s": stats, "added_s": added, "target_added_p50_s": ADDED_P50_MAX_S}


def _signed(seconds: float) -> str:
    return ("+" if seconds >= 0 else "-") + ms(abs(seconds))


def figures(values: dict[str, Any]) -> list[Figure]:
    stats, added, db = values["requests_s"], values["added_s"], values["db"]
    legacy = stats["legacy"]
    out = []
    for name, what in (("template", '{"template": "text"}'), ("custom", "a custom template")):
        out.append(
            Figure(
                key=f"template_jobs.{name}_added.{db}",
                title=f"POST /api/jobs, {what} vs the legacy text body, {legacy['n']} each ({db})",
                measured=(
                    f"p50 {ms(stats[name]['p50'])} ({_signed(added[name]['p50'])}), "
                    f"p95 {ms(stats[name]['p95'])} ({_signed(added[name]['p95'])})"
                ),
                baseline=f"legacy p50 {ms(legacy['p50'])}, p95 {ms(legacy['p95'])}",
                target=f"p50 <= legacy + {ms(ADDED_P50_MAX_S)}",
                passed=added[name]["p50"] <= ADDED_P50_MAX_S,
                values=values,
            )
        )
    return out


def run(workdir: Path, db: str, sizes: Sizes) -> list[Figure]:
    return figures(measure(workdir, db, sizes.template_job_requests))


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 300
    db = argv[1] if len(argv) > 1 else "sqlite"
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        values = measure(Path(tmp), db, n)
    for figure in figures(values):
        met = "met" if figure.passed else "MISSED"
        sys.stdout.write(f"{figure.title}: {figure.measured}; {figure.baseline}; {figure.target}: {met}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
