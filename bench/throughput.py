"""Figure 3: requests per second of POST /api/jobs and GET /api/jobs/{id} under gunicorn with the
configured workers (API_WORKERS, default 2), on SQLite and on PostgreSQL.

The load comes from wrk (Debian's package; `bench/wrk/jobs.lua`), or from locust when wrk is missing.
Baseline: GET /healthz on the same server, which touches no database (the server's own ceiling). No
dispatcher runs, so posted jobs stay queued; the per-designer cap on active jobs is lifted, or every
POST after the 20th would be a 429. Only 2xx answers count.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.report import Figure, ms
from bench.sizes import Sizes
from tests.support import harness
from tests.support.db import fresh_database

LUA = Path(__file__).resolve().parent / "wrk" / "jobs.lua"
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
LOCUST_MIN_S = 6  # locust spends its first seconds importing and starting users (longer on a loaded machine)
WARM_UP_S = 2
POST_MIN = {"sqlite": 1000.0, "postgresql": 800.0}
GET_MIN = 3000.0
GET_IDS = 1000
WRK_THREADS = 2


@dataclass(frozen=True)
class Load:
    ok_per_s: float  # 2xx answers per second
    requests: int
    failed: int  # non-2xx answers and socket errors
    p50_s: float
    p99_s: float
    tool: str


def load_tool() -> str:
    forced = os.environ.get("BENCH_LOADGEN", "")
    if forced:
        return forced
    return "wrk" if shutil.which("wrk") else "locust"


def wrk(url: str, mode: str, seconds: int, connections: int, ids_file: Path | None = None) -> Load:
    argv = ["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{seconds}s", "-T", "10s"]
    argv += ["-s", str(LUA), url, "--", mode, harness.PRODUCTION_TOKEN]
    argv += [str(ids_file)] if ids_file else []
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    r = json.loads(line.removeprefix("BENCH_JSON "))
    failed = r["non_2xx"] + r["socket_errors"]
    return Load(
        ok_per_s=(r["requests"] - r["non_2xx"]) / (r["duration_us"] / 1e6),
        requests=r["requests"],
        failed=failed,
        p50_s=r["latency_p50_us"] / 1e6,
        p99_s=r["latency_p99_us"] / 1e6,
        tool="wrk",
    )


def locust(
    url: str, mode: str, seconds: int, users: int, workdir: Path, ids_file: Path | None = None
) -> Load:
    prefix = workdir / f"locust-{mode}"
    env = {**os.environ, "BENCH_MODE": mode, "BENCH_TOKEN": harness.PRODUCTION_TOKEN}
    env |= {"BENCH_IDS": str(ids_file)} if ids_file else {}
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    seconds = max(seconds, LOCUST_MIN_S)
    argv += ["-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", url, "--csv", str(prefix)]
    subprocess.run(argv, env=env, capture_output=True, check=False)  # exits 1 when any request failed
    with Path(f"{prefix}_stats.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    count, failures = int(row["Request Count"]), int(row["Failure Count"])
    if not count:
        raise RuntimeError(f"locust sent no request to {url} in {seconds}s")
    return Load(
        ok_per_s=float(row["Requests/s"]) * (count - failures) / count,
        requests=count,
        failed=failures,
        p50_s=float(row["50%"]) / 1000,
        p99_s=float(row["99%"]) / 1000,
        tool="locust",
    )


def generate(url: str, mode: str, sizes: Sizes, workdir: Path, ids_file: Path | None = None) -> Load:
    seconds, connections = sizes.throughput_s, sizes.throughput_connections
    if load_tool() == "wrk":
        return wrk(url, mode, seconds, connections, ids_file)
    return locust(url, mode, seconds, connections, workdir, ids_file)


def job_ids(url: str, limit: int) -> list[str]:
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {harness.PRODUCTION_TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        cursor: str | None = None
        while len(ids) < limit:
            params: dict[str, str | int] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/jobs", params=params).raise_for_status().json()
            ids += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    if not ids:
        raise RuntimeError("no job was created: POST /api/jobs failed throughout")
    return ids[:limit]


def measure(workdir: Path, db: str, sizes: Sizes) -> dict[str, Load]:
    with fresh_database(db, workdir) as db_url, harness.process_stack(workdir) as s:
        env = harness.production_env(db_url, workdir, "", max_active_jobs_per_designer=10**9)
        s.prestart(env)
        api = s.api(env)
        warm_up = dataclasses.replace(sizes, throughput_s=min(WARM_UP_S, sizes.throughput_s))
        generate(api.url, "healthz", warm_up, workdir)  # first requests of each worker
        loads = {"healthz": generate(api.url, "healthz", sizes, workdir)}
        loads["post"] = generate(api.url, "post", sizes, workdir)
        ids_file = workdir / "job-ids.txt"
        ids_file.write_text("\n".join(job_ids(api.url, GET_IDS)) + "\n")
        loads["get"] = generate(api.url, "get", sizes, workdir, ids_file)
        return loads


def _rate(load: Load) -> str:
    failed = f", {load.failed:,} failed" if load.failed else ""
    return f"{load.ok_per_s:,.0f}/s (p50 {ms(load.p50_s)}, p99 {ms(load.p99_s)}){failed}"


def figures(loads: dict[str, Load], db: str, workers: int) -> list[Figure]:
    base = loads["healthz"]
    baseline = f"/healthz {base.ok_per_s:,.0f}/s"
    values = {name: load.__dict__ for name, load in loads.items()} | {"db": db, "api_workers": workers}
    return [
        Figure(
            key=f"throughput.post.{db}",
            title=f"3. POST /api/jobs, {workers} workers ({db})",
            measured=_rate(loads["post"]),
            baseline=baseline,
            target=f">= {POST_MIN[db]:,.0f}/s",
            passed=loads["post"].ok_per_s >= POST_MIN[db],
            values=values,
        ),
        Figure(
            key=f"throughput.get.{db}",
            title=f"3. GET /api/jobs/{{id}}, {workers} workers ({db})",
            measured=_rate(loads["get"]),
            baseline=baseline,
            target=f">= {GET_MIN:,.0f}/s",
            passed=loads["get"].ok_per_s >= GET_MIN,
            values=values,
        ),
    ]


def run(workdir: Path, db: str, sizes: Sizes) -> list[Figure]:
    return figures(measure(workdir, db, sizes), db, harness.API_WORKERS)
