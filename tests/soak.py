"""Soak: thousands of jobs through the real processes while faults rain on them; then count what happened.

    python -m tests.soak [--jobs 2000] [--dispatchers 2] [--database sqlite|postgresql] [--seed 1]
    make soak

Starts the emulator (with random execution errors, out-of-memory errors, HTTP 500s and dropped
WebSockets), the API under gunicorn and several dispatcher processes, submits the jobs in bursts, and
meanwhile, at random: SIGKILLs or SIGTERMs a dispatcher and starts a new one, kills ComfyUI and restarts
it, cancels a few jobs. When every job has ended it checks each one through the API and prints:

    accepted, succeeded, failed, cancelled, lost (must be 0), duplicated (must be 0)

`lost` is a job that never ended (or ended without its images); `duplicated` is a job with more than
one final event, or one that ComfyUI executed more often than the backend submitted it. Exit status 1
if either is not 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg

from backend.config import Settings
from backend.migrate import upgrade
from tests.support import invariants
from tests.support.backend import DEMO_TOKEN, ApiProcess, DispatcherProcess, create_designers, make_settings
from tests.support.comfy import EmulatorProcess
from tests.support.net import free_port, wait_until

STYLES = ("indochine", "minimalist", "none")
CHAOS_EVERY_S = 2.0
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


class ExecutionLedger:
    """ComfyUI's executions per prompt summed over every emulator process (each restart starts at 0)."""

    def __init__(self) -> None:
        self.done: Counter[str] = Counter()
        self.current: dict[str, int] = {}
        self.lock = threading.Lock()

    def poll(self, emulator: EmulatorProcess) -> None:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
            stats = emulator.stats()
            with self.lock:
                self.current = dict(stats["executions"])

    def restarted(self) -> None:
        with self.lock:
            self.done.update(self.current)
            self.current = {}

    def totals(self) -> dict[str, int]:
        with self.lock:
            return dict(self.done + Counter(self.current))


def database(kind: str, tmp: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'soak.db'}", None
    name = f"studio_soak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name


def job_body(rng: random.Random) -> dict[str, Any]:
    return {
        "prompt": f"soak room {rng.randrange(10**6)}",
        "style": rng.choice(STYLES),
        "steps": rng.randint(4, 12),
        "width": 512,
        "height": 512,
        "num_images": rng.choice((1, 1, 1, 2)),
        "seed": rng.randrange(2**32),
    }


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.rng = random.Random(args.seed)
        self.db_url, self.pg_name = database(args.database, tmp)
        comfy_port = free_port()
        self.emulator = EmulatorProcess(
            tmp / "comfyui",
            comfy_port,
            [
                "--step-ms", "2", "--checkpoint-load-ms", "0", "--lora-load-ms", "20",
                "--fail-rate", str(args.fault_rate), "--oom-rate", str(args.fault_rate),
                "--http-500-rate", str(args.fault_rate / 2), "--fault-seed", str(args.seed),
            ],
        )  # fmt: skip
        self.settings: Settings = make_settings(
            self.db_url,
            tmp / "data",
            f"http://127.0.0.1:{comfy_port}",
            stall_after_s=3.0,
            heartbeat_interval_s=0.5,
            max_active_jobs_per_designer=args.jobs + 1,
        )
        self.api = ApiProcess(self.settings, free_port(), tmp, workers=2)
        self.dispatchers: list[DispatcherProcess] = []
        self.ledger = ExecutionLedger()
        self.events: Counter[str] = Counter()
        self.job_ids: list[str] = []
        self.stop = threading.Event()

    def start(self) -> None:
        upgrade(self.settings)
        create_designers(self.settings)
        self.emulator.start()
        self.api.start()
        for _ in range(self.args.dispatchers):
            self._new_dispatcher()

    def _new_dispatcher(self) -> None:
        d = DispatcherProcess(self.settings, self.tmp / f"dispatcher-{len(self.events)}-{time.time_ns()}.log")
        self.dispatchers.append(d.start())

    def chaos(self) -> None:
        """One random fault every CHAOS_EVERY_S until the jobs are all in."""
        while not self.stop.wait(CHAOS_EVERY_S):
            self.ledger.poll(self.emulator)
            fault = self.rng.choice(("kill_dispatcher", "term_dispatcher", "kill_comfyui", "cancel", "none"))
            self.events[fault] += 1
            if fault in ("kill_dispatcher", "term_dispatcher"):
                victim = self.dispatchers.pop(self.rng.randrange(len(self.dispatchers)))
                victim.kill() if fault == "kill_dispatcher" else victim.terminate()
                self._new_dispatcher()
            elif fault == "kill_comfyui":
                self.ledger.poll(self.emulator)
                self.emulator.kill()
                self.ledger.restarted()
                time.sleep(self.rng.uniform(0.2, 1.5))
                self.emulator.start()
            elif fault == "cancel" and self.job_ids:
                with httpx.Client(base_url=self.api.url, headers=self._auth(), timeout=10) as c:
                    for job_id in self.rng.sample(self.job_ids, min(5, len(self.job_ids))):
                        with contextlib.suppress(httpx.HTTPError):
                            c.post(f"/api/jobs/{job_id}/cancel")

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {DEMO_TOKEN}"}

    def submit(self) -> None:
        with httpx.Client(base_url=self.api.url, headers=self._auth(), timeout=30) as c:
            while len(self.job_ids) < self.args.jobs:
                burst = min(self.rng.randint(10, 100), self.args.jobs - len(self.job_ids))
                for _ in range(burst):
                    r = c.post(
                        "/api/jobs", json=job_body(self.rng), headers={"Idempotency-Key": uuid.uuid4().hex}
                    )
                    if r.status_code == 201:
                        self.job_ids.append(r.json()["id"])
                time.sleep(self.rng.uniform(0, 0.5))

    def wait_all(self, timeout_s: float) -> None:
        with httpx.Client(base_url=self.api.url, headers=self._auth(), timeout=30) as c:

            def ended() -> bool:
                self.ledger.poll(self.emulator)
                active = c.get("/api/jobs", params={"status": ["queued", "running"], "limit": 1}).json()
                return not active["items"]

            with contextlib.suppress(AssertionError):
                wait_until(ended, timeout_s, 1.0, "every soak job to end")

    def report(self) -> dict[str, Any]:
        self.ledger.poll(self.emulator)
        with httpx.Client(base_url=self.api.url, headers=self._auth(), timeout=30) as c:
            outcome = invariants.check(c, self.job_ids, self.ledger.totals())
        lost = [p for p in outcome.problems if "lost" in p or "images" in p or "unreadable" in p]
        duplicated = [p for p in outcome.problems if "final events" in p or "ComfyUI ran it" in p]
        return {
            "accepted": len(self.job_ids),
            "succeeded": outcome.count("succeeded"),
            "failed": outcome.count("failed"),
            "cancelled": outcome.count("cancelled"),
            "lost": len(lost),
            "duplicated": len(duplicated),
            "faults": dict(self.events),
            "problems": outcome.problems[:20],
        }

    def close(self) -> None:
        self.stop.set()
        for d in self.dispatchers:
            d.terminate()
        self.api.stop()
        self.emulator.stop()
        if self.pg_name:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="studio-soak-") as tmp:
        soak = Soak(args, Path(tmp))
        try:
            soak.start()
            chaos = threading.Thread(target=soak.chaos, name="chaos", daemon=True)
            chaos.start()
            started = time.monotonic()
            soak.submit()
            soak.wait_all(args.timeout_s)
            soak.stop.set()
            chaos.join()
            soak.wait_all(60)  # the last fault's jobs
            result = soak.report()
            result["seconds"] = round(time.monotonic() - started, 1)
            return result
        finally:
            soak.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--dispatchers", type=int, default=2)
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--fault-rate", type=float, default=0.03, help="per-run execution error and OOM rates")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout-s", type=float, default=1800)
    args = p.parse_args(argv)
    result = run(args)
    width = max(len(k) for k in result)
    for key in ("accepted", "succeeded", "failed", "cancelled", "lost", "duplicated", "seconds"):
        sys.stdout.write(f"{key:<{width}}  {result[key]}\n")
    sys.stdout.write(f"{'faults':<{width}}  {json.dumps(result['faults'])}\n")
    for problem in result["problems"]:
        sys.stdout.write(f"  problem: {problem}\n")
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
