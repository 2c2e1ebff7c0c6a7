"""Soak: thousands of jobs through the real processes while production's faults rain on them; then count.

    python -m bench.soak [--jobs 2000] [--dispatchers 2] [--database sqlite|postgresql]
                         [--storage local|s3] [--fault-rate 0.03] [--every-fault] [--seed 1]
    make soak

Starts the emulator (random execution errors, out-of-memory errors, HTTP 500s), the API under gunicorn,
several dispatcher processes and the storage, submits the jobs in bursts (each POST retried with its
Idempotency-Key until it is answered, as a client should), and meanwhile, every couple of seconds, one
fault drawn from a shuffled deck of every kind (`--every-fault`: until each has happened once): a
dispatcher SIGKILLed or SIGTERMed and replaced, ComfyUI killed and restarted, a few jobs cancelled, the
API restarted (SIGTERM, as systemd does) or SIGKILLed and started again, and:
- on PostgreSQL, the server itself restarted (a clean shutdown or a crash), on a cluster of the soak's
  own (`tests/support/pg_cluster.py`; the shared server is never touched);
- on S3 (moto behind `tests/support/s3_faults.py`), 500 InternalError, 503 SlowDown and slow answers
  all along, and outages of a few seconds where every request fails;
- on local storage (a size-limited tmpfs, `tests/support/disk.py`), the disk full for a few seconds.
A fault this machine cannot produce is listed under `unavailable` with the reason. When every job has
ended (faults off) it checks each one through the API and prints:

    accepted, succeeded, failed, cancelled, lost (must be 0), duplicated (must be 0)

`lost` is a job that never ended (or ended without its images); `duplicated` is a job with more than
one final event, or one that ComfyUI executed more often than the backend submitted it. Exit status 1
if either is not 0, or if a fault could not be produced (`fault_errors`).
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

from bench.soak_rig import Rig, rig
from tests.support import invariants
from tests.support.backend import DEMO_TOKEN
from tests.support.net import wait_until

STYLES = ("indochine", "minimalist", "none")
CHAOS_EVERY_S = 2.0
RETRY_FOR_S = 180.0  # a client's patience: an API SIGKILLed waits for its orphaned workers to exit
SUMMARY = ("accepted", "succeeded", "failed", "cancelled", "lost", "duplicated", "seconds")


class ExecutionLedger:
    """ComfyUI's executions per prompt summed over every emulator process (each restart starts at 0)."""

    def __init__(self) -> None:
        self.done: Counter[str] = Counter()
        self.current: dict[str, int] = {}
        self.lock = threading.Lock()

    def poll(self, rig: Rig) -> None:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
            stats = rig.emulator.stats()
            with self.lock:
                self.current = dict(stats["executions"])

    def restarted(self) -> None:
        with self.lock:
            self.done.update(self.current)
            self.current = {}

    def totals(self) -> dict[str, int]:
        with self.lock:
            return dict(self.done + Counter(self.current))


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


def patient(c: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request, retried while the API is restarting or its database is down (503)."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            r = c.request(method, path, **kwargs)
            if r.status_code not in (502, 503) or time.monotonic() > deadline:
                return r
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


class Soak:
    def __init__(self, args: argparse.Namespace, rig: Rig) -> None:
        self.args, self.rig = args, rig
        self.rng = random.Random(args.seed)
        self.ledger = ExecutionLedger()
        self.events: Counter[str] = Counter()
        self.job_ids: list[str] = []
        self.stop = threading.Event()
        self.dealt_all = threading.Event()  # every kind of fault has happened at least once
        self.deck: list[str] = []
        self.decks = 0
        self.fault_errors: list[str] = []

    def client(self) -> httpx.Client:
        auth = {"Authorization": f"Bearer {DEMO_TOKEN}"}
        return httpx.Client(base_url=self.rig.api.url, headers=auth, timeout=30)

    def faults(self) -> tuple[str, ...]:
        return ("kill_dispatcher", "term_dispatcher", "kill_comfyui", "cancel", "restart_api", "kill_api",
                "none", *self.rig.extra_faults())  # fmt: skip

    def chaos(self) -> None:
        """One fault every CHAOS_EVERY_S until the jobs are all in; exited dispatchers replaced. A fault
        that could not be produced is recorded (and fails the run), and the next one follows."""
        while not self.stop.wait(CHAOS_EVERY_S):
            self.ledger.poll(self.rig)
            self.events["dispatcher_exited"] += self.rig.replace_exited_dispatchers()
            fault = self.draw()
            self.events[fault] += 1
            try:
                self.inject(fault)
            except Exception as exc:
                self.fault_errors.append(f"{fault}: {exc!r}"[:500])

    def inject(self, fault: str) -> None:
        if fault == "kill_comfyui":
            self.ledger.poll(self.rig)
            self.rig.kill_comfyui(self.rng.uniform(0.2, 1.5), self.ledger.restarted)
        elif fault == "cancel":
            self.cancel_some()
        elif fault != "none":
            self.rig.inject(fault, self.rng)

    def draw(self) -> str:
        """The next fault from a shuffled deck of every kind: a short run still meets each of them."""
        if not self.deck:
            if self.decks:  # the last card of the first deck has been played
                self.dealt_all.set()
            self.decks += 1
            self.deck = self.rng.sample(self.faults(), len(self.faults()))
        return self.deck.pop()

    def cancel_some(self) -> None:
        with self.client() as c:
            for job_id in self.rng.sample(self.job_ids, min(5, len(self.job_ids))):
                with contextlib.suppress(httpx.HTTPError):
                    c.post(f"/api/jobs/{job_id}/cancel")

    def submit(self) -> None:
        with self.client() as c:
            while len(self.job_ids) < self.args.jobs:
                burst = min(self.rng.randint(10, 100), self.args.jobs - len(self.job_ids))
                for _ in range(burst):
                    key = {"Idempotency-Key": uuid.uuid4().hex}
                    r = patient(c, "POST", "/api/jobs", json=job_body(self.rng), headers=key)
                    if r.status_code in (200, 201) and r.json()["id"] not in self.job_ids:
                        self.job_ids.append(r.json()["id"])
                    else:
                        self.events[f"post_{r.status_code}"] += 1
                time.sleep(self.rng.uniform(0, 0.5))

    def wait_all(self, timeout_s: float) -> None:
        with self.client() as c:

            def ended() -> bool:
                self.ledger.poll(self.rig)
                params = {"status": ["queued", "running"], "limit": 1}
                r = patient(c, "GET", "/api/jobs", params=params)
                return r.status_code == 200 and not r.json()["items"]

            with contextlib.suppress(TimeoutError):
                wait_until(ended, timeout_s, 1.0, "every soak job to end")

    def report(self) -> dict[str, Any]:
        self.ledger.poll(self.rig)
        with self.client() as c:
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
            "failed_by_code": dict(outcome.error_codes),
            "faults": dict(self.events),
            "storage_faults": self.rig.storage_faults(),
            "unavailable": self.rig.unavailable,
            "fault_errors": self.fault_errors,
            "problems": outcome.problems[:20],
        }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="studio-soak-") as tmp, rig(args, Path(tmp)) as r:
        soak = Soak(args, r)
        chaos = threading.Thread(target=soak.chaos, name="chaos", daemon=True)
        chaos.start()
        started = time.monotonic()
        try:
            soak.submit()
            soak.wait_all(args.timeout_s)
            if args.every_fault:
                soak.dealt_all.wait(args.timeout_s)
        finally:
            soak.stop.set()
            chaos.join()
        r.calm()
        soak.wait_all(120)  # the last fault's jobs
        result = soak.report()
        result["seconds"] = round(time.monotonic() - started, 1)
        return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--dispatchers", type=int, default=2)
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--storage", choices=("local", "s3"), default="local")
    p.add_argument("--fault-rate", type=float, default=0.03, help="execution error, OOM and S3 error rates")
    p.add_argument("--step-ms", type=float, default=2.0, help="the emulator's time per sampler step")
    p.add_argument("--every-fault", action="store_true", help="go on until each fault has happened once")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout-s", type=float, default=1800)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    width = max(len(k) for k in result)
    for key in SUMMARY:
        sys.stdout.write(f"{key:<{width}}  {result[key]}\n")
    for key in ("failed_by_code", "faults", "storage_faults", "unavailable", "fault_errors"):
        sys.stdout.write(f"{key:<{width}}  {json.dumps(result[key])}\n")
    for problem in result["problems"]:
        sys.stdout.write(f"  problem: {problem}\n")
    return 0 if result["lost"] == result["duplicated"] == 0 and not result["fault_errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
